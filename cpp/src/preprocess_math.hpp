// Internal: the per-pixel preprocessing math, shared by the CUDA kernel (preprocess.cu)
// and a host-compiled reference (preprocess_reference below, checked against OpenCV by
// the `preprocess_reference` ctest), so the GPU path is tested on machines without a GPU.
//
// One output pixel (x, y) of the network input:
//   resize the BGR u8 frame the way cv::resize(INTER_LINEAR) does for 8-bit images ->
//   channel order -> x * scale + bias (= (x / 255 - mean) / std) -> NCHW.
// The resize emulates OpenCV's 8-bit path rather than textbook bilinear, so the GPU sees
// the same pixels as the CPU runtimes (Python and C++ both call cv::resize):
//   - source coordinate (float)((d + 0.5) * (src / dst) - 0.5) in double, as OpenCV;
//     x taps clamped to the edge with weight 0, y weights kept and rows clamped;
//   - weights rounded to 11 bits (INTER_RESIZE_COEF_SCALE 2048);
//   - horizontal pass in int: p0 * a0 + p1 * a1;
//   - vertical pass as OpenCV's SIMD code does it: ((S0 >> 4) * b0 >> 16) +
//     ((S1 >> 4) * b1 >> 16), then (t + 2) >> 2 saturated to u8.
// Measured: identical to cv2.resize (opencv-python 5.0) on 50 M values of CamVid frames,
// down and up, odd sizes; the ctest measures it against the C++ build's OpenCV.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define PVTSEG_HD __host__ __device__ __forceinline__
#else
#define PVTSEG_HD inline
#endif

namespace pvtseg {
namespace detail {
namespace pp {

struct Params {
  float scale[3];      // 1 / (255 * std), per model channel
  float bias[3];       // -mean / std, per model channel
  int src_channel[3];  // model channel c reads BGR channel src_channel[c]
};

constexpr int kCoefScale = 2048;  // OpenCV's INTER_RESIZE_COEF_SCALE (11 bits)

// Two source indices and their 11-bit weights: v = (p[i0] * w0 + p[i1] * w1) / 2048.
struct Tap {
  int i0;
  int i1;
  int w0;
  int w1;
};

// Every floating-point operation is rounded on its own (no fused multiply-add), so the
// kernel and the host reference agree bit for bit: device code says so with the _rn
// intrinsics (nvcc contracts a * b + c otherwise; never build it with --use_fast_math);
// host code is compiled with -ffp-contract=off (cpp/CMakeLists.txt), which matters where
// the CPU has FMA (aarch64 Jetsons). x * scale + bias, two roundings, is also how numpy
// computes the Python runtime's normalization.
PVTSEG_HD float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

PVTSEG_HD float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// (float)((d + 0.5) * scale - 0.5) in double, as OpenCV computes the source coordinate.
PVTSEG_HD float source_coord(int d, double scale) {
#if defined(__CUDA_ARCH__)
  return static_cast<float>(__dadd_rn(__dmul_rn(static_cast<double>(d) + 0.5, scale), -0.5));
#else
  return static_cast<float>((d + 0.5) * scale - 0.5);
#endif
}

// saturate_cast<short>(w * 2048): round to nearest, ties to even (cvRound).
PVTSEG_HD int coef(float w) { return static_cast<int>(rintf(mul(w, static_cast<float>(kCoefScale)))); }

PVTSEG_HD int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// clamp_edge: x taps (OpenCV moves a tap that falls off the edge onto it, weight 0);
// otherwise y taps (OpenCV keeps the weights and clamps the row indices).
PVTSEG_HD Tap linear_tap(int d, int src_len, int dst_len, bool clamp_edge) {
  const double scale = 1.0 / (static_cast<double>(dst_len) / static_cast<double>(src_len));
  float f = source_coord(d, scale);
  int s = static_cast<int>(floorf(f));
  f = add(f, -static_cast<float>(s));
  if (clamp_edge && s < 0) {
    s = 0;
    f = 0.f;
  }
  if (clamp_edge && s >= src_len - 1) {
    s = src_len - 1;
    f = 0.f;
  }
  return Tap{clamp_int(s, 0, src_len - 1), clamp_int(s + 1, 0, src_len - 1), coef(add(1.f, -f)), coef(f)};
}

// OpenCV's vertical pass for u8 (its SIMD formula): rows already weighted horizontally.
PVTSEG_HD int vertical_u8(int s0, int s1, int b0, int b1) {
  const int t = (((s0 >> 4) * b0) >> 16) + (((s1 >> 4) * b1) >> 16);
  return clamp_int((t + 2) >> 2, 0, 255);
}

// The three normalized model-channel values of output pixel (x, y).
PVTSEG_HD void preprocess_pixel(const std::uint8_t* src, int src_w, int src_h, std::size_t src_pitch, int x, int y,
                                int dst_w, int dst_h, const Params& p, float out[3]) {
  const Tap tx = linear_tap(x, src_w, dst_w, true);
  const Tap ty = linear_tap(y, src_h, dst_h, false);
  const std::uint8_t* r0 = src + static_cast<std::size_t>(ty.i0) * src_pitch;
  const std::uint8_t* r1 = src + static_cast<std::size_t>(ty.i1) * src_pitch;
  float bgr[3];
  for (int c = 0; c < 3; ++c) {
    const int h0 = r0[tx.i0 * 3 + c] * tx.w0 + r0[tx.i1 * 3 + c] * tx.w1;
    const int h1 = r1[tx.i0 * 3 + c] * tx.w0 + r1[tx.i1 * 3 + c] * tx.w1;
    bgr[c] = static_cast<float>(vertical_u8(h0, h1, ty.w0, ty.w1));
  }
  for (int c = 0; c < 3; ++c) out[c] = add(mul(bgr[p.src_channel[c]], p.scale[c]), p.bias[c]);
}

PVTSEG_HD Params make_params(const float scale[3], const float bias[3], bool to_rgb) {
  Params p{};
  for (int c = 0; c < 3; ++c) {
    p.scale[c] = scale[c];
    p.bias[c] = bias[c];
  }
  p.src_channel[0] = to_rgb ? 2 : 0;
  p.src_channel[1] = 1;
  p.src_channel[2] = to_rgb ? 0 : 2;
  return p;
}

// Host reference of the kernel: the whole NCHW float32 input (3 * dst_h * dst_w floats).
inline void preprocess_reference(const std::uint8_t* src, int src_w, int src_h, std::size_t src_pitch, float* dst,
                                 int dst_w, int dst_h, const Params& p) {
  const std::size_t plane = static_cast<std::size_t>(dst_w) * dst_h;
  for (int y = 0; y < dst_h; ++y) {
    for (int x = 0; x < dst_w; ++x) {
      float v[3];
      preprocess_pixel(src, src_w, src_h, src_pitch, x, y, dst_w, dst_h, p, v);
      const std::size_t i = static_cast<std::size_t>(y) * dst_w + x;
      for (int c = 0; c < 3; ++c) dst[c * plane + i] = v[c];
    }
  }
}

}  // namespace pp
}  // namespace detail
}  // namespace pvtseg
