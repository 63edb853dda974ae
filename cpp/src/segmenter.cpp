// Segmenter: frame checks -> backend (preprocess + network) -> labels at the frame's size.
#include "pvtseg/segmenter.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <opencv2/imgproc.hpp>

#include "backend.hpp"

#ifndef PVTSEG_VERSION_STRING
#define PVTSEG_VERSION_STRING "0.0.0"
#endif

namespace pvtseg {

using detail::Clock;
using detail::ms_since;

const char* version() noexcept { return PVTSEG_VERSION_STRING; }

const char* to_string(Backend b) noexcept {
  switch (b) {
    case Backend::kAuto: return "auto";
    case Backend::kLibTorch: return "libtorch";
    case Backend::kTensorRT: return "tensorrt";
  }
  return "unknown";
}

const char* to_string(LogLevel l) noexcept {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "unknown";
}

bool backend_compiled(Backend b) noexcept {
  switch (b) {
    case Backend::kLibTorch:
#ifdef PVTSEG_WITH_LIBTORCH
      return true;
#else
      return false;
#endif
    case Backend::kTensorRT:
#ifdef PVTSEG_WITH_TENSORRT
      return true;
#else
      return false;
#endif
    case Backend::kAuto: return true;
  }
  return false;
}

namespace detail {

#ifndef PVTSEG_WITH_LIBTORCH
std::unique_ptr<BackendImpl> make_libtorch_backend(const ModelMeta&, const SegmenterOptions& opt, const Logger&) {
  throw Error(ErrorCode::kBackendUnavailable,
              "this pvtseg was built without the LibTorch backend, so it cannot run " + opt.model_path + ".",
              "Reconfigure with -DPVTSEG_WITH_LIBTORCH=ON and LibTorch on CMAKE_PREFIX_PATH "
              "(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'), or use a TensorRT .engine.");
}
#endif

#ifndef PVTSEG_WITH_TENSORRT
std::unique_ptr<BackendImpl> make_tensorrt_backend(const ModelMeta&, const SegmenterOptions& opt, const Logger&) {
  throw Error(ErrorCode::kBackendUnavailable,
              "this pvtseg was built without the TensorRT backend, so it cannot run " + opt.model_path +
                  " (.engine and .onnx files run on TensorRT).",
              "Rebuild pvtseg where TensorRT and CUDA are installed (NvInfer.h + libnvinfer found; "
              "-DPVTSEG_WITH_TENSORRT=ON), or run the TorchScript export (.ts) with the LibTorch backend.");
}
#endif

std::string lower_extension(const std::string& path) {
  const size_t slash = path.find_last_of("/\\");
  const size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return std::string();
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

}  // namespace detail

namespace {

Backend backend_for(const SegmenterOptions& opt) {
  if (opt.backend != Backend::kAuto) return opt.backend;
  const std::string ext = detail::lower_extension(opt.model_path);
  if (ext == ".engine" || ext == ".plan" || ext == ".trt") return Backend::kTensorRT;
  if (ext == ".ts" || ext == ".pt" || ext == ".torchscript") return Backend::kLibTorch;
  if (ext == ".onnx") return Backend::kTensorRT;  // built into a cached engine (or refused without TensorRT)
  throw Error(ErrorCode::kInvalidArgument,
              "cannot tell the backend from the file name " + opt.model_path + " (extension '" + ext + "').",
              "Use a .ts (TorchScript), .engine or .onnx (TensorRT) file, or set SegmenterOptions::backend.");
}

void check_backend_accepts(Backend backend, const SegmenterOptions& opt) {
  if (backend == Backend::kLibTorch && detail::lower_extension(opt.model_path) == ".onnx") {
    throw Error(ErrorCode::kInvalidArgument, "the LibTorch backend reads TorchScript, not ONNX (" + opt.model_path + ").",
                "Export TorchScript with `pvtseg export --formats torchscript`, or open the .onnx with the "
                "TensorRT backend (it builds and caches an engine).");
  }
}

// A labels model whose ids reach num_classes disagrees with its sidecar (finding: a sidecar
// saying 5 classes on an 11-class graph): refuse rather than index palettes out of range.
void check_label_range(const cv::Mat& labels, const ModelMeta& meta, const std::string& path) {
  double max_id = 0;
  cv::minMaxLoc(labels, nullptr, &max_id);
  if (max_id >= meta.num_classes) {
    throw Error(ErrorCode::kSidecarMismatch,
                path + " returned class id " + std::to_string(static_cast<int>(max_id)) + " but its sidecar says " +
                    std::to_string(meta.num_classes) + " classes.",
                "Use the .json written together with this artifact (pvtseg export writes both), or re-export both.");
  }
}

}  // namespace

struct Segmenter::Impl {
  ModelMeta meta;
  Backend backend = Backend::kAuto;
  std::unique_ptr<detail::BackendImpl> impl;
  detail::Logger log;
  std::string model_path;
  Timings timings;
  cv::Mat converted;       // gray/BGRA -> BGR
  detail::NetOutput net;   // the network's output, reused across frames
  cv::Mat best;            // logits postprocess scratch
};

Segmenter::Segmenter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Segmenter::~Segmenter() = default;
Segmenter::Segmenter(Segmenter&&) noexcept = default;
Segmenter& Segmenter::operator=(Segmenter&&) noexcept = default;

std::unique_ptr<Segmenter> Segmenter::create(const SegmenterOptions& options) {
  if (options.model_path.empty()) {
    throw Error(ErrorCode::kModelNotFound, "no model given (SegmenterOptions::model_path is empty).",
                "Set model_path to an exported .ts or .engine file (export with `pvtseg export`).");
  }
  {
    std::ifstream f(options.model_path, std::ios::binary);
    if (!f) {
      throw Error(ErrorCode::kModelNotFound, "model file " + options.model_path + " does not exist or is unreadable.",
                  "Check the path; export one with `pvtseg export --formats torchscript --out models/build/NAME` or "
                  "build an engine with `python python/build_engine.py`.");
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->log = detail::Logger(options.log);
  impl->backend = backend_for(options);
  check_backend_accepts(impl->backend, options);
  impl->model_path = options.model_path;
  impl->meta = read_meta(options.model_path);
  if (options.device < 0) {
    throw Error(ErrorCode::kInvalidArgument, "device ordinal must be >= 0, got " + std::to_string(options.device) + ".",
                "Use device_type = Device::kCPU for the CPU and device = 0.. for a CUDA GPU.");
  }
  if (impl->backend == Backend::kTensorRT) {
    impl->impl = detail::make_tensorrt_backend(impl->meta, options, impl->log);
  } else {
    impl->impl = detail::make_libtorch_backend(impl->meta, options, impl->log);
  }
  std::ostringstream msg;
  msg << "pvtseg " << version() << ": loaded " << options.model_path << " (" << impl->meta.arch << ", "
      << impl->meta.num_classes << " classes, input " << impl->meta.input.height << "x" << impl->meta.input.width
      << ", output " << impl->meta.output.kind << ") with " << to_string(impl->backend) << " on "
      << impl->impl->device_name();
  impl->log(LogLevel::kInfo, msg.str());

  std::unique_ptr<Segmenter> seg(new Segmenter(std::move(impl)));
  if (options.warmup_runs > 0) {
    cv::Mat blank(seg->impl_->meta.input.height, seg->impl_->meta.input.width, CV_8UC3, cv::Scalar::all(0));
    cv::Mat labels;
    for (int i = 0; i < options.warmup_runs; ++i) seg->segment(blank, labels);
    seg->impl_->log(LogLevel::kDebug, "warm-up: " + std::to_string(options.warmup_runs) + " runs");
  }
  return seg;
}

void Segmenter::segment(const cv::Mat& frame, cv::Mat& labels) {
  const auto t0 = Clock::now();
  if (!impl_) {
    throw Error(ErrorCode::kInvalidArgument, "segment() on a moved-from Segmenter.",
                "Use the Segmenter the object was moved into (or create a new one).");
  }
  Timings t;
  if (frame.empty()) {
    throw Error(ErrorCode::kBadFrame, "empty frame (no pixels).",
                "Check the source: a camera or file that returned no frame gives an empty cv::Mat; skip it.");
  }
  if (frame.dims != 2) {
    throw Error(ErrorCode::kBadFrame, "frame has " + std::to_string(frame.dims) + " dimensions, expected a 2-D image.",
                "Pass an HxW image (cv::Mat with dims == 2).");
  }
  if (frame.depth() != CV_8U) {
    throw Error(ErrorCode::kBadFrame,
                "frame depth is " + cv::typeToString(frame.type()) + ", expected 8-bit unsigned (CV_8UC3 BGR).",
                "Convert it first, e.g. frame.convertTo(out, CV_8U, scale) so pixel values span 0..255.");
  }
  const cv::Mat* bgr = &frame;
  switch (frame.channels()) {
    case 3: break;
    case 1: cv::cvtColor(frame, impl_->converted, cv::COLOR_GRAY2BGR); bgr = &impl_->converted; break;
    case 4: cv::cvtColor(frame, impl_->converted, cv::COLOR_BGRA2BGR); bgr = &impl_->converted; break;
    default:
      throw Error(ErrorCode::kBadFrame,
                  "frame has " + std::to_string(frame.channels()) + " channels; expected 3 (BGR), 1 (gray) or 4 (BGRA).",
                  "Convert it to BGR with cv::cvtColor first.");
  }
  t.pre_ms += ms_since(t0);
  impl_->impl->run(*bgr, impl_->net, t);
  const auto t1 = Clock::now();
  if (!impl_->net.is_logits) check_label_range(impl_->net.labels, impl_->meta, impl_->model_path);
  detail::postprocess(impl_->net, frame.size(), labels, impl_->best);
  t.post_ms += ms_since(t1);
  impl_->timings = t;
}

cv::Mat Segmenter::segment(const cv::Mat& bgr) {
  cv::Mat labels;
  segment(bgr, labels);
  return labels;
}

const Timings& Segmenter::last_timings() const noexcept { return impl_->timings; }
int Segmenter::num_classes() const noexcept { return impl_->meta.num_classes; }

const std::string& Segmenter::class_name(int id) const {
  if (id < 0 || id >= impl_->meta.num_classes) {
    throw Error(ErrorCode::kInvalidArgument,
                "class id " + std::to_string(id) + " is out of range (the model has " +
                    std::to_string(impl_->meta.num_classes) + " classes).",
                "Use an id in 0..num_classes()-1.");
  }
  return impl_->meta.class_names[static_cast<size_t>(id)];
}

const Palette& Segmenter::palette() const noexcept { return impl_->meta.palette; }
const ModelMeta& Segmenter::meta() const noexcept { return impl_->meta; }
Backend Segmenter::backend() const noexcept { return impl_->backend; }
std::string Segmenter::device_name() const { return impl_->impl->device_name(); }

}  // namespace pvtseg
