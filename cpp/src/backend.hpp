// Internal: the one interface every backend implements, plus shared CPU helpers.
// Only segmenter.cpp and the backend_*.cpp files include this; it is not installed.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "pvtseg/segmenter.hpp"

namespace pvtseg {
namespace detail {

class Logger {
 public:
  explicit Logger(LogCallback cb = nullptr) : cb_(std::move(cb)) {}
  void operator()(LogLevel level, const std::string& msg) const {
    if (cb_) cb_(level, msg);
  }
  bool enabled() const { return static_cast<bool>(cb_); }

 private:
  LogCallback cb_;
};

class BackendImpl {
 public:
  virtual ~BackendImpl() = default;
  virtual std::string device_name() const = 0;
  // bgr: CV_8UC3, any size (already checked by the Segmenter). labels: CV_8UC1 class ids
  // at the network's output size (the sidecar's input size for stride-1 outputs); the
  // Segmenter resizes them back to the frame. Adds this stage's time to t.pre_ms,
  // t.infer_ms and t.post_ms. Throws Error.
  virtual void run(const cv::Mat& bgr, cv::Mat& labels, Timings& t) = 0;
};

std::unique_ptr<BackendImpl> make_libtorch_backend(const ModelMeta& meta, const SegmenterOptions& opt,
                                                   const Logger& log);
std::unique_ptr<BackendImpl> make_tensorrt_backend(const ModelMeta& meta, const SegmenterOptions& opt,
                                                   const Logger& log);

// BGR u8 -> resize to the sidecar's (width, height) with INTER_LINEAR -> channel order ->
// (x / 255 - mean) / std -> planar float32 written to dst (3 * height * width floats).
// `resized` is scratch space kept by the caller between frames.
void preprocess_cpu(const cv::Mat& bgr, const InputSpec& in, cv::Mat& resized, float* dst);

// logits (C planes of h*w floats) -> uint8 argmax (first maximum wins, like torch.argmax).
void argmax_planes(const float* logits, int channels, int height, int width, uchar* out);

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace detail
}  // namespace pvtseg
