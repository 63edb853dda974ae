// GPU preprocessing for the TensorRT backend: one kernel does resize + channel order +
// normalize + HWC->CHW, so only the raw u8 frame crosses PCIe; and an argmax kernel for
// logits engines, so only u8 labels come back.
#include "preprocess.cuh"

#include <cuda_fp16.h>

namespace pvtseg {
namespace detail {
namespace cuda {
namespace {

struct Norm {
  float scale[3];
  float bias[3];
  int src_channel[3];  // model channel c reads BGR channel src_channel[c]
};

template <typename T>
__device__ inline T cast_out(float v);
template <>
__device__ inline float cast_out<float>(float v) { return v; }
template <>
__device__ inline __half cast_out<__half>(float v) { return __float2half(v); }

template <typename T>
__global__ void resize_normalize_kernel(const std::uint8_t* __restrict__ src, int src_w, int src_h,
                                        std::size_t src_pitch, T* __restrict__ dst, int dst_w, int dst_h, Norm norm) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= dst_w || y >= dst_h) return;
  // OpenCV INTER_LINEAR coordinate mapping.
  const float scale_x = static_cast<float>(src_w) / dst_w;
  const float scale_y = static_cast<float>(src_h) / dst_h;
  float sx = (x + 0.5f) * scale_x - 0.5f;
  float sy = (y + 0.5f) * scale_y - 0.5f;
  int x0 = static_cast<int>(floorf(sx));
  int y0 = static_cast<int>(floorf(sy));
  float fx = sx - x0, fy = sy - y0;
  if (x0 < 0) { x0 = 0; fx = 0.f; }
  if (y0 < 0) { y0 = 0; fy = 0.f; }
  if (x0 >= src_w - 1) { x0 = src_w - 1; fx = 0.f; }
  if (y0 >= src_h - 1) { y0 = src_h - 1; fy = 0.f; }
  const int x1 = min(x0 + 1, src_w - 1);
  const int y1 = min(y0 + 1, src_h - 1);
  const std::uint8_t* r0 = src + static_cast<std::size_t>(y0) * src_pitch;
  const std::uint8_t* r1 = src + static_cast<std::size_t>(y1) * src_pitch;
  float bgr[3];
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    const float top = r0[x0 * 3 + c] * (1.f - fx) + r0[x1 * 3 + c] * fx;
    const float bot = r1[x0 * 3 + c] * (1.f - fx) + r1[x1 * 3 + c] * fx;
    bgr[c] = fminf(fmaxf(rintf(top * (1.f - fy) + bot * fy), 0.f), 255.f);  // u8 like OpenCV
  }
  const std::size_t plane = static_cast<std::size_t>(dst_w) * dst_h;
  const std::size_t i = static_cast<std::size_t>(y) * dst_w + x;
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    const float v = __fadd_rn(__fmul_rn(bgr[norm.src_channel[c]], norm.scale[c]), norm.bias[c]);
    dst[c * plane + i] = cast_out<T>(v);
  }
}

template <typename T>
__device__ inline float load_f(const T* p, std::size_t i);
template <>
__device__ inline float load_f<float>(const float* p, std::size_t i) { return p[i]; }
template <>
__device__ inline float load_f<__half>(const __half* p, std::size_t i) { return __half2float(p[i]); }

template <typename T>
__global__ void argmax_kernel(const T* __restrict__ logits, int channels, std::size_t plane,
                              std::uint8_t* __restrict__ labels) {
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= plane) return;
  float best = load_f(logits, i);
  int arg = 0;
  for (int c = 1; c < channels; ++c) {
    const float v = load_f(logits, c * plane + i);
    if (v > best) {
      best = v;
      arg = c;
    }
  }
  labels[i] = static_cast<std::uint8_t>(arg);
}

}  // namespace

cudaError_t resize_normalize(const std::uint8_t* src, int src_w, int src_h, std::size_t src_pitch, void* dst,
                             bool dst_half, int dst_w, int dst_h, const float scale[3], const float bias[3],
                             bool to_rgb, cudaStream_t stream) {
  Norm norm{};
  for (int c = 0; c < 3; ++c) {
    norm.scale[c] = scale[c];
    norm.bias[c] = bias[c];
  }
  norm.src_channel[0] = to_rgb ? 2 : 0;
  norm.src_channel[1] = 1;
  norm.src_channel[2] = to_rgb ? 0 : 2;
  const dim3 block(32, 8);
  const dim3 grid((dst_w + block.x - 1) / block.x, (dst_h + block.y - 1) / block.y);
  if (dst_half) {
    resize_normalize_kernel<__half><<<grid, block, 0, stream>>>(src, src_w, src_h, src_pitch,
                                                                static_cast<__half*>(dst), dst_w, dst_h, norm);
  } else {
    resize_normalize_kernel<float><<<grid, block, 0, stream>>>(src, src_w, src_h, src_pitch,
                                                               static_cast<float*>(dst), dst_w, dst_h, norm);
  }
  return cudaGetLastError();
}

cudaError_t argmax(const void* logits, bool half, int channels, int height, int width, std::uint8_t* labels,
                   cudaStream_t stream) {
  const std::size_t plane = static_cast<std::size_t>(height) * width;
  const int block = 256;
  const unsigned grid = static_cast<unsigned>((plane + block - 1) / block);
  if (half) {
    argmax_kernel<__half><<<grid, block, 0, stream>>>(static_cast<const __half*>(logits), channels, plane, labels);
  } else {
    argmax_kernel<float><<<grid, block, 0, stream>>>(static_cast<const float*>(logits), channels, plane, labels);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace detail
}  // namespace pvtseg
