// GPU preprocessing for the TensorRT backend: one kernel does resize + channel order +
// normalize + HWC->CHW, so only the raw u8 frame crosses PCIe. The math lives in
// preprocess_math.hpp, shared with a host reference that a CPU ctest checks against OpenCV.
#include "preprocess.cuh"

#include <cuda_fp16.h>

#include "preprocess_math.hpp"

namespace pvtseg {
namespace detail {
namespace cuda {
namespace {

template <typename T>
__device__ inline T cast_out(float v);
template <>
__device__ inline float cast_out<float>(float v) { return v; }
template <>
__device__ inline __half cast_out<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__global__ void resize_normalize_kernel(const std::uint8_t* __restrict__ src, int src_w, int src_h,
                                        std::size_t src_pitch, T* __restrict__ dst, int dst_w, int dst_h,
                                        pp::Params params) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= dst_w || y >= dst_h) return;
  float v[3];
  pp::preprocess_pixel(src, src_w, src_h, src_pitch, x, y, dst_w, dst_h, params, v);
  const std::size_t plane = static_cast<std::size_t>(dst_w) * dst_h;
  const std::size_t i = static_cast<std::size_t>(y) * dst_w + x;
#pragma unroll
  for (int c = 0; c < 3; ++c) dst[c * plane + i] = cast_out<T>(v[c]);
}

}  // namespace

cudaError_t resize_normalize(const std::uint8_t* src, int src_w, int src_h, std::size_t src_pitch, void* dst,
                             bool dst_half, int dst_w, int dst_h, const float scale[3], const float bias[3],
                             bool to_rgb, cudaStream_t stream) {
  const pp::Params params = pp::make_params(scale, bias, to_rgb);
  const dim3 block(32, 8);
  const dim3 grid((dst_w + block.x - 1) / block.x, (dst_h + block.y - 1) / block.y);
  if (dst_half) {
    resize_normalize_kernel<__half><<<grid, block, 0, stream>>>(src, src_w, src_h, src_pitch,
                                                                static_cast<__half*>(dst), dst_w, dst_h, params);
  } else {
    resize_normalize_kernel<float><<<grid, block, 0, stream>>>(src, src_w, src_h, src_pitch,
                                                               static_cast<float*>(dst), dst_w, dst_h, params);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace detail
}  // namespace pvtseg
