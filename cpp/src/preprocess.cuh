// CUDA kernels of the TensorRT backend (compiled only when TensorRT + nvcc are enabled).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace pvtseg {
namespace detail {
namespace cuda {

// BGR u8 frame (src_w x src_h, row pitch in bytes) -> bilinear resize to dst_w x dst_h
// (OpenCV INTER_LINEAR: half-pixel centres, edge clamp, rounded to u8) -> channel order
// -> x * scale + bias (= (x / 255 - mean) / std) -> planar NCHW float32 (dst_half = false)
// or float16.
cudaError_t resize_normalize(const std::uint8_t* src, int src_w, int src_h, std::size_t src_pitch, void* dst,
                             bool dst_half, int dst_w, int dst_h, const float scale[3], const float bias[3],
                             bool to_rgb, cudaStream_t stream);

// Logits [C, h, w] (float32 or float16) -> u8 argmax labels [h, w]; first maximum wins.
cudaError_t argmax(const void* logits, bool half, int channels, int height, int width, std::uint8_t* labels,
                   cudaStream_t stream);

}  // namespace cuda
}  // namespace detail
}  // namespace pvtseg
