// TensorRT backend: a serialized engine (.engine), or an .onnx built into a cached engine
// (trt_build.cpp), on one CUDA device.
//
// At load it checks every I/O tensor of the engine against the sidecar (names, shapes,
// dtypes, class count, labels vs logits) and refuses a mismatch, then binds every I/O
// tensor (enqueueV3 needs them all), including outputs pvtseg does not read. Frames are
// preprocessed on the GPU when the CUDA kernel is compiled in (PVTSEG_CUDA_KERNELS), else
// on the CPU; the output is copied back and the Segmenter applies the output contract.
// Name-based I/O (setTensorAddress / setInputShape / enqueueV3): TensorRT >= 8.5.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "backend.hpp"
#include "io_contract.hpp"
#include "trt_common.hpp"
#ifdef PVTSEG_CUDA_KERNELS
#include "preprocess.cuh"
#endif

namespace pvtseg {
namespace detail {
namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) {
    throw Error(ErrorCode::kModelNotFound, "cannot read the engine " + path + ".", "Check the path and permissions.");
  }
  const std::streamsize n = f.tellg();
  f.seekg(0);
  std::vector<char> blob(static_cast<std::size_t>(std::max<std::streamsize>(n, 0)));
  if (n <= 0 || !f.read(blob.data(), n)) {
    throw Error(ErrorCode::kModelLoadFailed, "the engine " + path + " is empty or truncated.", trt_rebuild_fix());
  }
  return blob;
}

// One I/O tensor of the engine and the device buffer bound to it.
struct IoTensor {
  std::string name;
  bool is_input = false;
  nvinfer1::DataType type = nvinfer1::DataType::kFLOAT;
  nvinfer1::Dims dims{};  // resolved for the sidecar's input shape
  std::size_t bytes = 0;
  DeviceBuffer buffer;
};

class TensorRTBackend final : public BackendImpl {
 public:
  TensorRTBackend(const ModelMeta& meta, const SegmenterOptions& opt, const Logger& log)
      : meta_(meta), norm_(normalization(meta.input)), log_(log), trt_logger_(log), device_(opt.device) {
    select_device(opt);
    std::string engine_path = opt.model_path;
    if (lower_extension(opt.model_path) == ".onnx") {  // as backend_for decides
      engine_path = cached_engine_for_onnx(meta_, opt, trt_logger_, log_, running_trt_, running_cc_);
    } else {
      // Refuse a mismatched engine before TensorRT tries (and fails obscurely) to load it.
      check_engine_compatibility(meta_, running_trt_, running_cc_, opt.model_path);
    }
    load_engine(engine_path);
    collect_io(engine_path);
    resolve_shapes(engine_path);
    check_io(engine_path);
    bind_io(engine_path);
    stream_holder_.create();
    stream_ = stream_holder_.s;
    for (auto& e : events_) e.create();
    log_(LogLevel::kDebug, "tensorrt " + running_trt_ + ": " + engine_path + " input " + input().name + " " +
                               dims_string(dims_vector(input().dims)) + ", output " + output().name + " " +
                               dims_string(dims_vector(output().dims)) + ", " + std::to_string(io_.size()) +
                               " I/O tensors bound");
  }

  ~TensorRTBackend() override {
    if (stream_) cudaStreamSynchronize(stream_);  // nothing in flight while the members go
  }

  std::string device_name() const override { return device_name_; }

  void run(const cv::Mat& bgr, NetOutput& net, Timings& t) override {
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    const auto host_t0 = Clock::now();
    cuda_check(cudaEventRecord(events_[0].e, stream_), "cudaEventRecord");
    upload_input(bgr);
    cuda_check(cudaEventRecord(events_[1].e, stream_), "cudaEventRecord");
    const double host_pre_ms = ms_since(host_t0);
    if (!context_->enqueueV3(stream_)) {
      throw Error(ErrorCode::kInferenceFailed, "TensorRT enqueueV3 failed" + trt_logger_.reason() + ".",
                  trt_rebuild_fix());
    }
    cuda_check(cudaEventRecord(events_[2].e, stream_), "cudaEventRecord");
    IoTensor& out = output();
    host_output_.reserve(out.bytes, "the output staging buffer");
    cuda_check(cudaMemcpyAsync(host_output_.ptr, out.buffer.ptr, out.bytes, cudaMemcpyDeviceToHost, stream_),
               "output download");
    cuda_check(cudaEventRecord(events_[3].e, stream_), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(events_[3].e), "inference");
    const auto host_t1 = Clock::now();
    to_net_output(net);
    float pre = 0.f, infer = 0.f, post = 0.f;
    cudaEventElapsedTime(&pre, events_[0].e, events_[1].e);
    cudaEventElapsedTime(&infer, events_[1].e, events_[2].e);
    cudaEventElapsedTime(&post, events_[2].e, events_[3].e);
    t.pre_ms += std::max<double>(pre, host_pre_ms);
    t.infer_ms += infer;
    t.post_ms += post + ms_since(host_t1);
  }

 private:
  IoTensor& input() { return io_[input_index_]; }
  IoTensor& output() { return io_[output_index_]; }
  const IoTensor& output() const { return io_[output_index_]; }

  void select_device(const SegmenterOptions& opt) {
    if (opt.device_type == Device::kCPU) {
      throw Error(ErrorCode::kInvalidArgument, "the TensorRT backend runs on a CUDA GPU only, but the CPU was requested.",
                  "Use Device::kAuto / kCUDA for .engine / .onnx files, or the TorchScript export (.ts) on the CPU.");
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      throw Error(ErrorCode::kBackendUnavailable, "no CUDA device is visible, so TensorRT cannot run.",
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
    std::string gpu;
    running_cc_ = compute_capability(device_, gpu);
    device_name_ = "cuda:" + std::to_string(device_) + " (" + gpu + ")";
    running_trt_ = running_trt_version();
  }

  void load_engine(const std::string& path) {
    const std::vector<char> blob = read_file(path);
    runtime_.reset(nvinfer1::createInferRuntime(trt_logger_));
    if (!runtime_) {
      throw Error(ErrorCode::kBackendUnavailable,
                  "TensorRT could not create a runtime (createInferRuntime failed)" + trt_logger_.reason() + ".",
                  "Check the TensorRT installation (libnvinfer matches the headers pvtseg was built with).");
    }
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw Error(ErrorCode::kModelLoadFailed,
                  "TensorRT " + running_trt_ + " could not deserialize " + path + trt_logger_.reason() + ".",
                  std::string(trt_rebuild_fix()) + " A cached engine (<stem>.<precision>.trt<v>.sm<cc>.<key>.engine) can "
                                                    "simply be deleted: the next run builds it again.");
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) {
      throw Error(ErrorCode::kModelLoadFailed,
                  "TensorRT could not create an execution context for " + path + trt_logger_.reason() + ".",
                  "Free GPU memory or rebuild the engine with a smaller --workspace.");
    }
  }

  // Every I/O tensor; exactly one input (the image) and the sidecar's output among the outputs.
  void collect_io(const std::string& path) {
    std::vector<std::string> inputs, outputs;
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      IoTensor t;
      t.name = engine_->getIOTensorName(i);
      t.is_input = engine_->getTensorIOMode(t.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
      t.type = engine_->getTensorDataType(t.name.c_str());
      (t.is_input ? inputs : outputs).push_back(t.name);
      if (t.is_input && t.name == meta_.input.name) input_index_ = io_.size();
      if (!t.is_input && t.name == meta_.output.name) output_index_ = io_.size();
      io_.push_back(std::move(t));
    }
    const std::string fix = "Use the .json written together with this engine by build_engine.py.";
    if (inputs.size() != 1 || input_index_ == kNone) {
      throw Error(ErrorCode::kSidecarMismatch,
                  path + ": the sidecar's input is '" + meta_.input.name + "' but the engine's inputs are " +
                      names_list(inputs) + " (pvtseg feeds exactly one image input).",
                  fix);
    }
    if (output_index_ == kNone) {
      throw Error(ErrorCode::kSidecarMismatch,
                  path + ": the sidecar's output is '" + meta_.output.name + "' but the engine's outputs are " +
                      names_list(outputs) + ".",
                  fix);
    }
  }

  // Dynamic input dims take the sidecar's [1, 3, H, W]; every tensor's shape is then resolved.
  void resolve_shapes(const std::string& path) {
    IoTensor& in = input();
    const nvinfer1::Dims dims = engine_->getTensorShape(in.name.c_str());
    const auto v = dims_vector(dims);
    const bool dynamic = std::any_of(v.begin(), v.end(), [](std::int64_t d) { return d < 0; });
    if (dynamic && dims.nbDims == 4 &&
        !context_->setInputShape(in.name.c_str(), nvinfer1::Dims4(1, 3, meta_.input.height, meta_.input.width))) {
      const auto lo = dims_vector(engine_->getProfileShape(in.name.c_str(), 0, nvinfer1::OptProfileSelector::kMIN));
      const auto hi = dims_vector(engine_->getProfileShape(in.name.c_str(), 0, nvinfer1::OptProfileSelector::kMAX));
      throw Error(ErrorCode::kSidecarMismatch,
                  path + ": the engine's profile (" + dims_string(lo) + " .. " + dims_string(hi) +
                      ") does not accept the sidecar's input [1, 3, " + std::to_string(meta_.input.height) + ", " +
                      std::to_string(meta_.input.width) + "]" + trt_logger_.reason() + ".",
                  "Rebuild the engine with --min/--opt/--max shapes that include it, or fix the sidecar.");
    }
    for (IoTensor& t : io_) t.dims = context_->getTensorShape(t.name.c_str());
  }

  void check_io(const std::string& path) {
    check_input_tensor(meta_, {input().name, dims_vector(input().dims), dtype_name(input().type)}, path);
    check_output_tensor(meta_, {output().name, dims_vector(output().dims), dtype_name(output().type)}, path);
  }

  // A device buffer for every I/O tensor, bound by name.
  void bind_io(const std::string& path) {
    for (IoTensor& t : io_) {
      const auto v = dims_vector(t.dims);
      const std::size_t es = element_size(t.type);
      if (es == 0 || std::any_of(v.begin(), v.end(), [](std::int64_t d) { return d < 0; })) {
        throw Error(ErrorCode::kModelLoadFailed,
                    path + ": cannot bind the I/O tensor '" + t.name + "' (" + dtype_name(t.type) + " " +
                        dims_string(v) + "): unsupported type or unresolved shape.",
                    "Export with pvtseg export (float input, uint8/int32 labels or float logits) and rebuild.");
      }
      std::size_t count = 1;
      for (std::int64_t d : v) count *= static_cast<std::size_t>(d);
      t.bytes = std::max<std::size_t>(count * es, 1);
      t.buffer.reserve(t.bytes, "the I/O tensor '" + t.name + "'");
      if (!context_->setTensorAddress(t.name.c_str(), t.buffer.ptr)) {
        throw Error(ErrorCode::kModelLoadFailed,
                    "TensorRT refused the buffer of '" + t.name + "' in " + path + trt_logger_.reason() + ".",
                    trt_rebuild_fix());
      }
    }
  }

  // The frame -> the input tensor, on the GPU (kernel) or on the CPU (no nvcc at build time).
  void upload_input(const cv::Mat& bgr) {
    const int h = meta_.input.height, w = meta_.input.width;
    const bool half = input().type == nvinfer1::DataType::kHALF;
#ifdef PVTSEG_CUDA_KERNELS
    const std::size_t row = static_cast<std::size_t>(bgr.cols) * 3;
    frame_dev_.reserve(row * bgr.rows, "the frame");
    cuda_check(cudaMemcpy2DAsync(frame_dev_.ptr, row, bgr.data, bgr.step[0], row, bgr.rows, cudaMemcpyHostToDevice,
                                 stream_),
               "frame upload");
    cuda_check(cuda::resize_normalize(static_cast<const std::uint8_t*>(frame_dev_.ptr), bgr.cols, bgr.rows, row,
                                      input().buffer.ptr, half, w, h, norm_.scale.data(), norm_.bias.data(),
                                      meta_.input.channel_order == "RGB", stream_),
               "the preprocessing kernel");
#else
    const std::size_t n = static_cast<std::size_t>(3) * h * w;
    host_input_.reserve(n * sizeof(float), "the input staging buffer");
    preprocess_cpu(bgr, meta_.input, resized_, static_cast<float*>(host_input_.ptr));
    if (half) {
      cv::Mat f32(1, static_cast<int>(n), CV_32F, host_input_.ptr), f16;
      f32.convertTo(f16, CV_16F);
      std::memcpy(host_input_.ptr, f16.data, n * 2);
    }
    cuda_check(cudaMemcpyAsync(input().buffer.ptr, host_input_.ptr, input().bytes, cudaMemcpyHostToDevice, stream_),
               "input upload");
#endif
  }

  // The downloaded output -> NetOutput (logits as float32 planes, labels as u8 ids).
  void to_net_output(NetOutput& net) {
    const nvinfer1::Dims& d = output().dims;
    net.height = static_cast<int>(d.d[d.nbDims - 2]);
    net.width = static_cast<int>(d.d[d.nbDims - 1]);
    net.is_logits = meta_.output.kind == "logits";
    const std::size_t plane = static_cast<std::size_t>(net.height) * net.width;
    if (net.is_logits) {
      net.channels = static_cast<int>(d.d[1]);
      const int rows = net.channels * net.height;
      if (output().type == nvinfer1::DataType::kHALF) {
        cv::Mat(rows, net.width, CV_16FC1, host_output_.ptr).convertTo(net.logits, CV_32F);
      } else {
        cv::Mat(rows, net.width, CV_32FC1, host_output_.ptr).copyTo(net.logits);
      }
      return;
    }
    net.channels = 0;
    net.labels.create(net.height, net.width, CV_8UC1);
    copy_labels(host_output_.ptr, plane, net.labels.data);
  }

  // Integer labels -> u8, saturating, so an id >= 256 still reads as out of range.
  void copy_labels(const void* src, std::size_t n, uchar* dst) const {
    switch (output().type) {
      case nvinfer1::DataType::kUINT8: std::memcpy(dst, src, n); break;
      case nvinfer1::DataType::kINT8: saturate(static_cast<const std::int8_t*>(src), n, dst); break;
      case nvinfer1::DataType::kINT32: saturate(static_cast<const std::int32_t*>(src), n, dst); break;
#if NV_TENSORRT_MAJOR >= 10
      case nvinfer1::DataType::kINT64: saturate(static_cast<const std::int64_t*>(src), n, dst); break;
#endif
      default:
        throw Error(ErrorCode::kInferenceFailed, "unsupported label type " + dtype_name(output().type) + ".",
                    "Export with --output labels (uint8 or int32) and rebuild the engine.");
    }
  }

  template <typename T>
  static void saturate(const T* p, std::size_t n, uchar* dst) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<uchar>(p[i] < 0 ? 0 : (p[i] > 255 ? 255 : p[i]));
  }

  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  ModelMeta meta_;
  Normalization norm_;
  Logger log_;
  TrtLogger trt_logger_;  // outlives the runtime (declared before it)
  int device_ = 0;
  std::string device_name_, running_trt_, running_cc_;
  // Members are destroyed in reverse order: context -> engine -> runtime first, then the
  // buffers, events and stream they used.
  CudaStream stream_holder_;
  CudaEvent events_[4];
  cudaStream_t stream_ = nullptr;
  DeviceBuffer frame_dev_;
  HostBuffer host_input_, host_output_;
  cv::Mat resized_;
  std::vector<IoTensor> io_;
  std::size_t input_index_ = kNone, output_index_ = kNone;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
};

}  // namespace

std::unique_ptr<BackendImpl> make_tensorrt_backend(const ModelMeta& meta, const SegmenterOptions& opt,
                                                   const Logger& log) {
  return std::make_unique<TensorRTBackend>(meta, opt, log);
}

}  // namespace detail
}  // namespace pvtseg
