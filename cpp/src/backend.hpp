// Internal: the one interface every backend implements, plus the CPU image stages that
// every backend shares (preprocess, and the output contract's postprocess).
// Only the library's own sources (and the ctest driver) include this; it is not installed.
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

// What a backend hands back for one frame: the network's raw output, at the network's
// output size. The Segmenter applies the output contract (postprocess below).
struct NetOutput {
  bool is_logits = false;
  cv::Mat labels;     // labels kind: CV_8UC1, h x w class ids
  cv::Mat logits;     // logits kind: CV_32FC1, (channels * h) x w: one h x w plane per class
  int channels = 0;   // logits kind: the class count
  int height = 0, width = 0;
};

class BackendImpl {
 public:
  virtual ~BackendImpl() = default;
  virtual std::string device_name() const = 0;
  // bgr: CV_8UC3, any size (already checked by the Segmenter). Fills out with the network
  // output (already checked against the sidecar at load). Adds this stage's time to
  // t.pre_ms, t.infer_ms and t.post_ms. Throws Error.
  virtual void run(const cv::Mat& bgr, NetOutput& out, Timings& t) = 0;
};

std::unique_ptr<BackendImpl> make_libtorch_backend(const ModelMeta& meta, const SegmenterOptions& opt,
                                                   const Logger& log);
std::unique_ptr<BackendImpl> make_tensorrt_backend(const ModelMeta& meta, const SegmenterOptions& opt,
                                                   const Logger& log);

// BGR u8 -> resize to the sidecar's (width, height) with INTER_LINEAR -> channel order ->
// (x / 255 - mean) / std -> planar float32 written to dst (3 * height * width floats).
// `resized` is scratch space kept by the caller between frames.
void preprocess_cpu(const cv::Mat& bgr, const InputSpec& in, cv::Mat& resized, float* dst);

// The output contract (python/pvtseg/runtime/segmenter.py postprocess):
//  - labels: resized to `frame` with cv::INTER_NEAREST;
//  - logits: each class plane resized to `frame` with cv::INTER_LINEAR (half-pixel centres,
//    align_corners=False), running max / argmax over the classes, first maximum wins.
// `best` is scratch space kept by the caller between frames.
void postprocess(const NetOutput& net, cv::Size frame, cv::Mat& labels, cv::Mat& best);

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The first line of an exception message (LibTorch's carry C++ stack traces after it).
std::string first_line(const std::string& what);

// The file's extension, lower-cased (".onnx" for "a/M.Onnx"); empty when it has none.
std::string lower_extension(const std::string& path);

}  // namespace detail
}  // namespace pvtseg
