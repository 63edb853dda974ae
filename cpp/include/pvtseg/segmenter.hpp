// pvtseg: C++ runtime for exported PVT segmentation models.
//
//   #include <pvtseg/segmenter.hpp>
//   pvtseg::SegmenterOptions opt;
//   opt.model_path = "models/build/camvid.ts";          // or .engine / .onnx (TensorRT)
//   auto seg = pvtseg::Segmenter::create(opt);           // throws pvtseg::Error
//   cv::Mat labels;
//   seg->segment(frame_bgr, labels);                     // CV_8UC1, frame's size
//
// All preprocessing comes from the sidecar JSON beside the artifact. Nothing here
// depends on Python at run time.
//
// Output contract (the same in every pvtseg runtime, Python and C++): the frame is resized
// to the sidecar's input size (bilinear) and normalized; a `labels` output is resized back
// to the frame with nearest neighbour (cv::INTER_NEAREST); a `logits` output (stride 1 or
// 4) is upsampled bilinearly (cv::INTER_LINEAR, per class plane) to the frame's size and
// then reduced with argmax (first maximum wins).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "pvtseg/error.hpp"
#include "pvtseg/meta.hpp"

namespace pvtseg {

// The library version ("0.1.0").
const char* version() noexcept;

enum class Backend {
  kAuto,      // from the file's extension: .engine/.plan/.onnx -> TensorRT, .ts/.pt -> LibTorch
  kLibTorch,  // TorchScript (.ts) on CPU or CUDA
  kTensorRT,  // serialized TensorRT engine (.engine), or an .onnx built into a cached engine, on CUDA
};

enum class Device {
  kAuto,  // CUDA when the backend and the machine have it, else CPU
  kCPU,
  kCUDA,
};

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// The library never prints: it hands its diagnostics to this callback (if set).
using LogCallback = std::function<void(LogLevel, const std::string&)>;

const char* to_string(Backend b) noexcept;
const char* to_string(LogLevel l) noexcept;

// Whether this build of the library has the backend compiled in.
bool backend_compiled(Backend b) noexcept;

struct SegmenterOptions {
  std::string model_path;          // .ts / .engine / .onnx; its sidecar is the same path with .json
  Backend backend = Backend::kAuto;
  Device device_type = Device::kAuto;
  int device = 0;                  // CUDA device ordinal
  int num_threads = 0;             // LibTorch CPU intra-op threads (process-wide); 0 = default
  int warmup_runs = 0;             // inferences on a blank frame inside create()
  LogCallback log;                 // optional; also receives the engine build's progress

  // Engine cache: an .onnx with the TensorRT backend is built into an engine once and cached
  // as `<stem>.<precision>.trt<version>.sm<cc>.<key>.engine` (+ its .json) beside the .onnx
  // (or in engine_cache_dir), keyed by the ONNX's sha256, the TensorRT version, the GPU's
  // compute capability, the precision, the input shape profile and the pvtseg version; a
  // later create() with the same key loads it. The Python runtime uses the same names and
  // keys, so either one reuses an engine the other built. Progress goes to `log` (kInfo),
  // from a helper thread while the build runs.
  std::string precision = "fp32";             // "fp32" or "fp16" built here; "int8" reused if cached
  std::size_t workspace_bytes = 1ull << 30;   // builder workspace cap: 1 GiB fits an 8 GB Orin Nano
  std::string engine_cache_dir;               // empty: the .onnx's own folder
};

struct Timings {
  double pre_ms = 0.0;    // frame checks, resize, normalize, upload
  double infer_ms = 0.0;  // the network (synchronized)
  double post_ms = 0.0;   // download, argmax where needed, resize back to the frame
  double total_ms() const { return pre_ms + infer_ms + post_ms; }
};

class Segmenter {
 public:
  // Loads the artifact and its sidecar and checks them against each other; throws Error
  // (model_not_found, bad_sidecar, sidecar_mismatch, engine_version_mismatch,
  // engine_device_mismatch, backend_unavailable, model_load_failed, engine_build_failed).
  static std::unique_ptr<Segmenter> create(const SegmenterOptions& options);

  // Move-only. A moved-from Segmenter may only be destroyed or assigned to
  // (segment() on it throws Error(kInvalidArgument)).
  ~Segmenter();
  Segmenter(Segmenter&&) noexcept;
  Segmenter& operator=(Segmenter&&) noexcept;
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;

  // BGR uint8 frame of any size (gray and BGRA are converted) -> CV_8UC1 class ids at
  // the frame's size. Throws Error(kBadFrame) for empty frames, non-8-bit depths and
  // unsupported channel counts, Error(kInferenceFailed) when the backend fails,
  // Error(kSidecarMismatch) when a labels model returns a class id >= num_classes().
  void segment(const cv::Mat& bgr, cv::Mat& labels);
  cv::Mat segment(const cv::Mat& bgr);

  const Timings& last_timings() const noexcept;

  int num_classes() const noexcept;
  const std::string& class_name(int id) const;  // throws Error(kInvalidArgument) when out of range
  const Palette& palette() const noexcept;      // RGB, from the sidecar
  const ModelMeta& meta() const noexcept;
  Backend backend() const noexcept;
  std::string device_name() const;              // "cpu", "cuda:0"

 private:
  struct Impl;
  explicit Segmenter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pvtseg
