// CUDA kernel of the TensorRT backend (compiled only when TensorRT + nvcc are enabled).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace pvtseg {
namespace detail {
namespace cuda {

// BGR u8 frame (src_w x src_h, row pitch in bytes) -> bilinear resize to dst_w x dst_h
// -> channel order -> x * scale + bias (= (x / 255 - mean) / std) -> planar NCHW float32
// (dst_half = false) or float16. The per-pixel math is preprocess_math.hpp's, the same as
// its host reference pp::preprocess_reference.
cudaError_t resize_normalize(const std::uint8_t* src, int src_w, int src_h, std::size_t src_pitch, void* dst,
                             bool dst_half, int dst_w, int dst_h, const float scale[3], const float bias[3],
                             bool to_rgb, cudaStream_t stream);

}  // namespace cuda
}  // namespace detail
}  // namespace pvtseg
