// TensorRT backend: a serialized engine (.engine) on one CUDA device.
//
// Deserializes the engine, binds its I/O tensors by name (setTensorAddress + enqueueV3,
// TensorRT >= 8.5), preprocesses on the GPU when the CUDA kernels are compiled in
// (PVTSEG_CUDA_KERNELS), and owns one CUDA stream per Segmenter. Written against the
// public TensorRT headers of 8.6, 10.x and 11.x.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "backend.hpp"
#ifdef PVTSEG_CUDA_KERNELS
#include "preprocess.cuh"
#endif

#if NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 5)
#error "pvtseg's TensorRT backend needs TensorRT >= 8.5 (name-based I/O: setTensorAddress / enqueueV3)"
#endif

namespace pvtseg {
namespace detail {
namespace {

const char* kTrtFix = "Rebuild the engine on this machine with `python python/build_engine.py --onnx X.onnx --engine "
                      "X.engine` (engines are tied to one TensorRT version and one GPU).";

void cuda_check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) {
    throw Error(ErrorCode::kInferenceFailed, what + ": CUDA error " + cudaGetErrorName(err) + " (" +
                                                 cudaGetErrorString(err) + ").",
                "Check the GPU and driver (nvidia-smi); on a Jetson, make sure no other process holds the GPU memory.");
  }
}

// getInferLibVersion(): MAJOR*1000+MINOR*100+PATCH up to TensorRT 9, MAJOR*10000+... from 10.
std::string decode_trt_version(std::int64_t v) {
  std::int64_t major, minor, patch;
  if (v >= 100000) {
    major = v / 10000;
    minor = (v / 100) % 100;
    patch = v % 100;
  } else {
    major = v / 1000;
    minor = (v / 100) % 10;
    patch = v % 100;
  }
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::string dims_string(const nvinfer1::Dims& d) {
  std::string s = "[";
  for (int i = 0; i < d.nbDims; ++i) s += (i ? ", " : "") + std::to_string(static_cast<std::int64_t>(d.d[i]));
  return s + "]";
}

std::size_t element_size(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kINT8: return 1;
    case nvinfer1::DataType::kUINT8: return 1;
    case nvinfer1::DataType::kBOOL: return 1;
#if NV_TENSORRT_MAJOR >= 10
    case nvinfer1::DataType::kINT64: return 8;
#endif
    default: return 0;
  }
}

class TrtLogger final : public nvinfer1::ILogger {
 public:
  explicit TrtLogger(const Logger& log) : log_(log) {}
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    if (!log_.enabled()) return;
    LogLevel level = LogLevel::kDebug;
    switch (severity) {
      case Severity::kINTERNAL_ERROR:
      case Severity::kERROR: level = LogLevel::kError; break;
      case Severity::kWARNING: level = LogLevel::kWarning; break;
      case Severity::kINFO: level = LogLevel::kDebug; break;
      default: level = LogLevel::kDebug; break;
    }
    try {
      log_(level, std::string("tensorrt: ") + msg);
    } catch (...) {  // a throwing callback must not cross TensorRT's noexcept boundary
    }
  }
  std::string last_error;

 private:
  Logger log_;
};

// cudaMalloc'd / cudaMallocHost'd buffers that free themselves.
struct DeviceBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  void reserve(std::size_t n, const char* what) {
    if (n <= bytes) return;
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    bytes = 0;
    cuda_check(cudaMalloc(&ptr, n), std::string("cudaMalloc for ") + what);
    bytes = n;
  }
};

struct HostBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  HostBuffer() = default;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  ~HostBuffer() {
    if (ptr) cudaFreeHost(ptr);
  }
  void reserve(std::size_t n, const char* what) {
    if (n <= bytes) return;
    if (ptr) cudaFreeHost(ptr);
    ptr = nullptr;
    bytes = 0;
    cuda_check(cudaMallocHost(&ptr, n), std::string("cudaMallocHost for ") + what);
    bytes = n;
  }
};

struct CudaStream {
  cudaStream_t s = nullptr;
  CudaStream() = default;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream() {
    if (s) cudaStreamDestroy(s);
  }
};

struct CudaEvent {
  cudaEvent_t e = nullptr;
  CudaEvent() = default;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  ~CudaEvent() {
    if (e) cudaEventDestroy(e);
  }
};

class TensorRTBackend final : public BackendImpl {
 public:
  TensorRTBackend(const ModelMeta& meta, const SegmenterOptions& opt, const Logger& log)
      : meta_(meta), norm_(normalization(meta.input)), log_(log), trt_logger_(log), device_(opt.device) {
    if (opt.device_type == Device::kCPU) {
      throw Error(ErrorCode::kInvalidArgument, "the TensorRT backend runs on a CUDA GPU only, but the CPU was requested.",
                  "Use Device::kAuto / kCUDA for .engine files, or the TorchScript export (.ts) on the CPU.");
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      throw Error(ErrorCode::kBackendUnavailable, "no CUDA device is visible, so the TensorRT engine cannot run.",
                  "Run on a machine with an NVIDIA GPU and driver (check nvidia-smi / CUDA_VISIBLE_DEVICES), or use "
                  "the TorchScript export (.ts) on the CPU.");
    }
    if (device_ >= count) {
      throw Error(ErrorCode::kInvalidArgument,
                  "CUDA device " + std::to_string(device_) + " requested but only " + std::to_string(count) +
                      " present.",
                  "Pick a device ordinal below " + std::to_string(count) + ".");
    }
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
    device_name_ = "cuda:" + std::to_string(device_) + " (" + prop.name + ")";
    const std::string running_cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    const std::string running_trt = decode_trt_version(getInferLibVersion());

    // Refuse a mismatched engine before TensorRT tries (and fails obscurely) to load it.
    check_engine_compatibility(meta_, running_trt, running_cc, opt.model_path);

    std::vector<char> blob = read_file(opt.model_path);
    runtime_.reset(nvinfer1::createInferRuntime(trt_logger_));
    if (!runtime_) {
      throw Error(ErrorCode::kBackendUnavailable, "TensorRT could not create a runtime (createInferRuntime failed).",
                  "Check the TensorRT installation (libnvinfer matches the headers pvtseg was built with).");
    }
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw Error(ErrorCode::kModelLoadFailed,
                  "TensorRT " + running_trt + " could not deserialize " + opt.model_path +
                      " (see the log callback for TensorRT's reason).",
                  kTrtFix);
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) {
      throw Error(ErrorCode::kModelLoadFailed, "TensorRT could not create an execution context for " + opt.model_path +
                                                   " (out of GPU memory?).",
                  "Free GPU memory or rebuild the engine with a smaller --workspace.");
    }
    bind_tensors(opt.model_path);
    cuda_check(cudaStreamCreateWithFlags(&stream_holder_.s, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_ = stream_holder_.s;
    for (int i = 0; i < 4; ++i) {
      cuda_check(cudaEventCreate(&event_holders_[i].e), "cudaEventCreate");
      events_[i] = event_holders_[i].e;
    }
    input_dev_.reserve(input_bytes_, "the input tensor");
    output_dev_.reserve(output_bytes_, "the output tensor");
    if (!context_->setTensorAddress(input_name_.c_str(), input_dev_.ptr) ||
        !context_->setTensorAddress(output_name_.c_str(), output_dev_.ptr)) {
      throw Error(ErrorCode::kModelLoadFailed, "TensorRT refused the I/O buffers of " + opt.model_path + ".", kTrtFix);
    }
    log_(LogLevel::kDebug, "tensorrt " + running_trt + ": " + opt.model_path + " input " + input_name_ + " " +
                               dims_string(input_dims_) + ", output " + output_name_ + " " + dims_string(output_dims_));
  }

  ~TensorRTBackend() override {
    if (stream_) cudaStreamSynchronize(stream_);  // nothing in flight while the members go
  }

  std::string device_name() const override { return device_name_; }

  void run(const cv::Mat& bgr, cv::Mat& labels, Timings& t) override {
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    const int h = meta_.input.height, w = meta_.input.width;
    const bool to_rgb = meta_.input.channel_order == "RGB";
    const auto host_t0 = Clock::now();
    cuda_check(cudaEventRecord(events_[0], stream_), "cudaEventRecord");
#ifdef PVTSEG_CUDA_KERNELS
    // Upload the raw frame (u8, any size) and resize + normalize on the GPU.
    const std::size_t row = static_cast<std::size_t>(bgr.cols) * 3;
    frame_dev_.reserve(row * bgr.rows, "the frame");
    cuda_check(cudaMemcpy2DAsync(frame_dev_.ptr, row, bgr.data, bgr.step[0], row, bgr.rows, cudaMemcpyHostToDevice,
                                 stream_),
               "frame upload");
    cuda_check(cuda::resize_normalize(static_cast<const std::uint8_t*>(frame_dev_.ptr), bgr.cols, bgr.rows, row,
                                      input_dev_.ptr, input_half_, w, h, norm_.scale.data(), norm_.bias.data(),
                                      to_rgb, stream_),
               "the preprocessing kernel");
#else
    // No nvcc at build time: preprocess on the CPU into pinned memory, then upload.
    (void)to_rgb;
    const std::size_t n = static_cast<std::size_t>(3) * h * w;
    host_input_.reserve(n * sizeof(float), "the input staging buffer");
    preprocess_cpu(bgr, meta_.input, resized_, static_cast<float*>(host_input_.ptr));
    if (input_half_) {
      cv::Mat f32(1, static_cast<int>(n), CV_32F, host_input_.ptr), f16;
      f32.convertTo(f16, CV_16F);
      std::memcpy(host_input_.ptr, f16.data, n * 2);
    }
    cuda_check(cudaMemcpyAsync(input_dev_.ptr, host_input_.ptr, input_bytes_, cudaMemcpyHostToDevice, stream_),
               "input upload");
#endif
    cuda_check(cudaEventRecord(events_[1], stream_), "cudaEventRecord");
    const double host_pre_ms = ms_since(host_t0);

    if (!context_->enqueueV3(stream_)) {
      throw Error(ErrorCode::kInferenceFailed, "TensorRT enqueueV3 failed (see the log callback for its reason).",
                  kTrtFix);
    }
    cuda_check(cudaEventRecord(events_[2], stream_), "cudaEventRecord");

    // Download: u8 labels whenever possible (argmax on the GPU for logits engines).
    const bool logits = meta_.output.kind == "logits";
    int out_h = 0, out_w = 0, channels = 1;
    output_geometry(out_h, out_w, channels);
    const std::size_t plane = static_cast<std::size_t>(out_h) * out_w;
    std::size_t download = output_bytes_;
    const void* download_src = output_dev_.ptr;
#ifdef PVTSEG_CUDA_KERNELS
    if (logits) {
      argmax_dev_.reserve(plane, "the argmax labels");
      cuda_check(cuda::argmax(output_dev_.ptr, output_type_ == nvinfer1::DataType::kHALF, channels, out_h, out_w,
                              static_cast<std::uint8_t*>(argmax_dev_.ptr), stream_),
                 "the argmax kernel");
      download = plane;
      download_src = argmax_dev_.ptr;
    }
#endif
    host_output_.reserve(download, "the output staging buffer");
    cuda_check(cudaMemcpyAsync(host_output_.ptr, download_src, download, cudaMemcpyDeviceToHost, stream_),
               "output download");
    cuda_check(cudaEventRecord(events_[3], stream_), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(events_[3]), "inference");

    const auto host_t1 = Clock::now();
    labels.create(out_h, out_w, CV_8UC1);
    if (logits) {
#ifdef PVTSEG_CUDA_KERNELS
      std::memcpy(labels.data, host_output_.ptr, plane);
#else
      const float* src = static_cast<const float*>(host_output_.ptr);
      cv::Mat f32;
      if (output_type_ == nvinfer1::DataType::kHALF) {
        cv::Mat f16(1, static_cast<int>(plane) * channels, CV_16F, host_output_.ptr);
        f16.convertTo(f32, CV_32F);
        src = f32.ptr<float>();
      }
      argmax_planes(src, channels, out_h, out_w, labels.data);
#endif
    } else {
      copy_labels(host_output_.ptr, plane, labels.data);
    }
    float pre = 0.f, infer = 0.f, post = 0.f;
    cudaEventElapsedTime(&pre, events_[0], events_[1]);
    cudaEventElapsedTime(&infer, events_[1], events_[2]);
    cudaEventElapsedTime(&post, events_[2], events_[3]);
    t.pre_ms += std::max<double>(pre, host_pre_ms);
    t.infer_ms += infer;
    t.post_ms += post + ms_since(host_t1);
  }

 private:
  static std::vector<char> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) {
      throw Error(ErrorCode::kModelNotFound, "cannot read the engine " + path + ".", "Check the path and permissions.");
    }
    const std::streamsize n = f.tellg();
    f.seekg(0);
    std::vector<char> blob(static_cast<std::size_t>(n));
    if (n <= 0 || !f.read(blob.data(), n)) {
      throw Error(ErrorCode::kModelLoadFailed, "the engine " + path + " is empty or truncated.", kTrtFix);
    }
    return blob;
  }

  void bind_tensors(const std::string& path) {
    std::vector<std::string> inputs, outputs;
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs : outputs).push_back(name);
    }
    auto pick = [&](const std::vector<std::string>& names, const std::string& want, const char* what) {
      for (const auto& n : names) {
        if (n == want) return n;
      }
      if (names.size() == 1) {
        log_(LogLevel::kWarning, std::string("tensorrt: the sidecar names the ") + what + " '" + want +
                                     "' but the engine's only " + what + " is '" + names[0] + "'; using it");
        return names[0];
      }
      std::string all;
      for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
      throw Error(ErrorCode::kBadSidecar,
                  "the sidecar names the " + std::string(what) + " '" + want + "' but " + path + " has: " + all + ".",
                  "Use the .json written together with this engine by build_engine.py.");
    };
    input_name_ = pick(inputs, meta_.input.name, "input");
    output_name_ = pick(outputs, meta_.output.name, "output");

    const nvinfer1::DataType in_type = engine_->getTensorDataType(input_name_.c_str());
    if (in_type != nvinfer1::DataType::kFLOAT && in_type != nvinfer1::DataType::kHALF) {
      throw Error(ErrorCode::kModelLoadFailed, "the engine's input '" + input_name_ + "' is not float32/float16.",
                  "Export the ONNX with a float input (pvtseg export does) and rebuild the engine.");
    }
    input_half_ = in_type == nvinfer1::DataType::kHALF;

    const int h = meta_.input.height, w = meta_.input.width;
    nvinfer1::Dims in_dims = engine_->getTensorShape(input_name_.c_str());
    bool dynamic = false;
    for (int i = 0; i < in_dims.nbDims; ++i) dynamic = dynamic || in_dims.d[i] < 0;
    if (in_dims.nbDims != 4) {
      throw Error(ErrorCode::kModelLoadFailed, "the engine's input has shape " + dims_string(in_dims) +
                                                   ", expected [N, 3, H, W].", kTrtFix);
    }
    if (dynamic) {
      nvinfer1::Dims4 want(1, 3, h, w);
      if (!context_->setInputShape(input_name_.c_str(), want)) {
        throw Error(ErrorCode::kBadSidecar,
                    "the engine does not accept the sidecar's input shape [1, 3, " + std::to_string(h) + ", " +
                        std::to_string(w) + "] (its profile: " + dims_string(in_dims) + ").",
                    "Rebuild the engine with --min/--opt/--max shapes that include it, or fix the sidecar.");
      }
    } else if (in_dims.d[0] != 1 || in_dims.d[1] != 3 || in_dims.d[2] != h || in_dims.d[3] != w) {
      throw Error(ErrorCode::kBadSidecar,
                  "the engine's input is " + dims_string(in_dims) + " but the sidecar says [1, 3, " +
                      std::to_string(h) + ", " + std::to_string(w) + "].",
                  "Use the .json written together with this engine by build_engine.py (batch 1).");
    }
    input_dims_ = context_->getTensorShape(input_name_.c_str());
    input_bytes_ = static_cast<std::size_t>(3) * h * w * (input_half_ ? 2 : 4);

    output_type_ = engine_->getTensorDataType(output_name_.c_str());
    output_dims_ = context_->getTensorShape(output_name_.c_str());
    const std::size_t es = element_size(output_type_);
    if (es == 0) {
      throw Error(ErrorCode::kModelLoadFailed, "the engine's output '" + output_name_ + "' has an unsupported type.",
                  "Export with --output labels (uint8/int32) or --output logits (float) and rebuild the engine.");
    }
    const bool logits = meta_.output.kind == "logits";
    const bool float_out = output_type_ == nvinfer1::DataType::kFLOAT || output_type_ == nvinfer1::DataType::kHALF;
    if (logits != float_out) {
      throw Error(ErrorCode::kBadSidecar,
                  "the sidecar says output.kind = " + meta_.output.kind + " but the engine's output is " +
                      (float_out ? "floating point" : "integer") + ".",
                  "Use the .json written together with this engine by build_engine.py.");
    }
    std::size_t count = 1;
    for (int i = 0; i < output_dims_.nbDims; ++i) {
      if (output_dims_.d[i] < 0) {
        throw Error(ErrorCode::kModelLoadFailed, "the engine's output shape " + dims_string(output_dims_) +
                                                     " is not resolved after setting the input shape.",
                    kTrtFix);
      }
      count *= static_cast<std::size_t>(output_dims_.d[i]);
    }
    int oh = 0, ow = 0, oc = 0;
    output_geometry(oh, ow, oc);
    output_bytes_ = count * es;
  }

  // [1, H, W] / [H, W] labels or [1, C, h, w] logits -> (h, w, C).
  void output_geometry(int& h, int& w, int& c) const {
    const nvinfer1::Dims& d = output_dims_;
    const bool logits = meta_.output.kind == "logits";
    if (logits && d.nbDims == 4 && d.d[0] == 1) {
      c = static_cast<int>(d.d[1]);
      h = static_cast<int>(d.d[2]);
      w = static_cast<int>(d.d[3]);
    } else if (!logits && d.nbDims == 3 && d.d[0] == 1) {
      c = 1;
      h = static_cast<int>(d.d[1]);
      w = static_cast<int>(d.d[2]);
    } else if (!logits && d.nbDims == 2) {
      c = 1;
      h = static_cast<int>(d.d[0]);
      w = static_cast<int>(d.d[1]);
    } else {
      throw Error(ErrorCode::kModelLoadFailed,
                  "the engine's output '" + output_name_ + "' has shape " + dims_string(d) + ", expected " +
                      (logits ? "[1, C, h, w]" : "[1, H, W]") + ".",
                  "The C++ runtime segments one frame at a time: export with batch 1 and rebuild the engine.");
    }
  }

  void copy_labels(const void* src, std::size_t n, uchar* dst) const {
    switch (output_type_) {
      case nvinfer1::DataType::kUINT8:
      case nvinfer1::DataType::kINT8:
      case nvinfer1::DataType::kBOOL: std::memcpy(dst, src, n); break;
      case nvinfer1::DataType::kINT32: {
        const auto* p = static_cast<const std::int32_t*>(src);
        for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<uchar>(p[i]);
        break;
      }
#if NV_TENSORRT_MAJOR >= 10
      case nvinfer1::DataType::kINT64: {
        const auto* p = static_cast<const std::int64_t*>(src);
        for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<uchar>(p[i]);
        break;
      }
#endif
      default:
        throw Error(ErrorCode::kInferenceFailed, "unsupported label type in the engine output.",
                    "Export with --output labels (uint8 or int32) and rebuild the engine.");
    }
  }

  ModelMeta meta_;
  Normalization norm_;
  Logger log_;
  TrtLogger trt_logger_;  // outlives the runtime (declared before it)
  int device_ = 0;
  std::string device_name_;
  // Members are destroyed in reverse order: context -> engine -> runtime first, then the
  // buffers, events and stream they used.
  CudaStream stream_holder_;
  CudaEvent event_holders_[4];
  cudaStream_t stream_ = nullptr;
  cudaEvent_t events_[4] = {nullptr, nullptr, nullptr, nullptr};
  DeviceBuffer input_dev_, output_dev_, frame_dev_, argmax_dev_;
  HostBuffer host_input_, host_output_;
  cv::Mat resized_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::string input_name_, output_name_;
  nvinfer1::Dims input_dims_{}, output_dims_{};
  bool input_half_ = false;
  nvinfer1::DataType output_type_ = nvinfer1::DataType::kFLOAT;
  std::size_t input_bytes_ = 0, output_bytes_ = 0;
};

}  // namespace

std::unique_ptr<BackendImpl> make_tensorrt_backend(const ModelMeta& meta, const SegmenterOptions& opt,
                                                   const Logger& log) {
  return std::make_unique<TensorRTBackend>(meta, opt, log);
}

}  // namespace detail
}  // namespace pvtseg
