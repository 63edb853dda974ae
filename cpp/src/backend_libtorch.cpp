// LibTorch backend: a TorchScript export (.ts) on CPU or CUDA.
// The only translation unit of the library that includes torch headers (they compile slowly).
//
// At load it runs one forward on the sidecar's input shape and checks the output against
// the sidecar (labels vs logits, dtype, class count, output size): TorchScript files carry
// no I/O signature, so running the graph is how it tells.
#include <cstring>
#include <sstream>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "backend.hpp"
#include "io_contract.hpp"

namespace pvtseg {
namespace detail {
namespace {

std::string dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kByte: return "uint8";
    case torch::kChar: return "int8";
    case torch::kShort: return "int16";
    case torch::kInt: return "int32";
    case torch::kLong: return "int64";
    case torch::kFloat: return "float32";
    case torch::kHalf: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kBool: return "bool";
    default: return c10::toString(t);
  }
}

TensorInfo tensor_info(const torch::Tensor& t) {
  TensorInfo info;  // TorchScript outputs have no names: only shape and dtype are checked
  for (auto d : t.sizes()) info.dims.push_back(d);
  info.dtype = dtype_name(t.scalar_type());
  return info;
}

torch::Device choose_device(const SegmenterOptions& opt) {
  const bool cuda_available = torch::cuda::is_available();
  if (opt.device_type == Device::kCUDA && !cuda_available) {
    throw Error(ErrorCode::kBackendUnavailable, "CUDA was requested but LibTorch sees no CUDA device.",
                "Use Device::kCPU (--device cpu), or link pvtseg against a CUDA build of LibTorch on a machine "
                "with an NVIDIA GPU and driver.");
  }
  const bool use_cuda = opt.device_type == Device::kCUDA || (opt.device_type == Device::kAuto && cuda_available);
  if (!use_cuda) return torch::Device(torch::kCPU);
  const auto n = torch::cuda::device_count();
  if (opt.device >= static_cast<int>(n)) {
    throw Error(ErrorCode::kInvalidArgument,
                "CUDA device " + std::to_string(opt.device) + " requested but only " + std::to_string(n) + " present.",
                "Pick a device ordinal below " + std::to_string(n) + ".");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(opt.device));
}

torch::jit::script::Module load_module(const std::string& path, const torch::Device& device) {
  try {
    torch::jit::script::Module m = torch::jit::load(path, device);
    m.eval();
    return m;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kModelLoadFailed, "LibTorch cannot load " + path + " as TorchScript: " + first_line(e.what()),
                "Re-export it with `pvtseg export --formats torchscript` using a PyTorch no newer than the "
                "LibTorch pvtseg is linked against.");
  }
}

class LibTorchBackend final : public BackendImpl {
 public:
  LibTorchBackend(const ModelMeta& meta, const SegmenterOptions& opt, const Logger& log)
      : meta_(meta), log_(log), device_(choose_device(opt)) {
    if (opt.num_threads > 0) at::set_num_threads(opt.num_threads);
    module_ = load_module(opt.model_path, device_);
    std::ostringstream os;
    os << device_;
    device_name_ = os.str();
    // (x / 255 - mean) / std per channel as x * scale + bias, [1, 3, 1, 1] on the device.
    Normalization norm = normalization(meta_.input);
    scale_ = torch::from_blob(norm.scale.data(), {1, 3, 1, 1}, torch::kFloat32).clone().to(device_);
    bias_ = torch::from_blob(norm.bias.data(), {1, 3, 1, 1}, torch::kFloat32).clone().to(device_);
    check_against_sidecar(opt.model_path);
    log_(LogLevel::kDebug, "libtorch: loaded " + opt.model_path + " on " + device_name_);
  }

  std::string device_name() const override { return device_name_; }

  void run(const cv::Mat& bgr, NetOutput& net, Timings& t) override {
    c10::InferenceMode guard;
    try {
      auto t0 = Clock::now();
      const torch::Tensor input = preprocess(bgr);
      t.pre_ms += ms_since(t0);

      t0 = Clock::now();
      const torch::Tensor out = module_.forward({input}).toTensor();
      if (!device_.is_cpu()) torch::cuda::synchronize(device_.index());
      t.infer_ms += ms_since(t0);

      t0 = Clock::now();
      to_net_output(out, net);
      t.post_ms += ms_since(t0);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kInferenceFailed, "LibTorch inference failed: " + first_line(e.what()),
                  "Check that the sidecar matches the artifact (input " + std::to_string(meta_.input.height) + "x" +
                      std::to_string(meta_.input.width) + "); re-export both together with `pvtseg export`.");
    }
  }

 private:
  torch::Tensor preprocess(const cv::Mat& bgr) {
    const int h = meta_.input.height, w = meta_.input.width;
    if (device_.is_cpu()) {
      // CPU: resize + normalize straight into the input tensor (one pass, no copies).
      torch::Tensor input = torch::empty({1, 3, h, w}, torch::kFloat32);
      preprocess_cpu(bgr, meta_.input, resized_, input.data_ptr<float>());
      return input;
    }
    // CUDA: resize on the CPU (cheap at the network size), upload uint8 HWC, then reorder +
    // normalize on the GPU: 4x fewer bytes over PCIe than float.
    const cv::Size size(w, h);
    if (bgr.size() == size && bgr.isContinuous()) {
      resized_ = bgr;
    } else {
      cv::resize(bgr, resized_, size, 0, 0, cv::INTER_LINEAR);
    }
    torch::Tensor hwc = torch::from_blob(resized_.data, {h, w, 3}, torch::kUInt8).to(device_);
    if (meta_.input.channel_order == "RGB") hwc = hwc.flip({2});
    return hwc.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32).mul_(scale_).add_(bias_).contiguous();
  }

  // The raw output -> NetOutput on the host (shape and dtype were checked at load).
  void to_net_output(torch::Tensor out, NetOutput& net) const {
    const int64_t h = out.size(-2), w = out.size(-1);
    net.height = static_cast<int>(h);
    net.width = static_cast<int>(w);
    net.is_logits = meta_.output.kind == "logits";
    if (net.is_logits) {
      out = out.to(torch::kCPU, torch::kFloat32).contiguous();
      net.channels = static_cast<int>(out.size(1));
      net.logits.create(static_cast<int>(net.channels * h), static_cast<int>(w), CV_32FC1);
      std::memcpy(net.logits.data, out.data_ptr<float>(), static_cast<size_t>(out.numel()) * sizeof(float));
      return;
    }
    // Saturate before narrowing, so an id >= 256 still reads as out of range, not wrapped.
    if (out.scalar_type() != torch::kByte) out = out.clamp(0, 255);
    out = out.reshape({h, w}).to(torch::kCPU, torch::kUInt8).contiguous();
    net.channels = 0;
    net.labels.create(static_cast<int>(h), static_cast<int>(w), CV_8UC1);
    std::memcpy(net.labels.data, out.data_ptr<uint8_t>(), static_cast<size_t>(out.numel()));
  }

  // One forward on the sidecar's input shape; its output must be what the sidecar says.
  void check_against_sidecar(const std::string& path) {
    c10::InferenceMode guard;
    const int h = meta_.input.height, w = meta_.input.width;
    torch::Tensor out;
    try {
      out = module_.forward({torch::zeros({1, 3, h, w}, torch::TensorOptions(device_))}).toTensor();
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kSidecarMismatch,
                  path + " does not run on the sidecar's input [1, 3, " + std::to_string(h) + ", " + std::to_string(w) +
                      "]: " + first_line(e.what()),
                  "Use the .json written together with this artifact (pvtseg export writes both), or re-export both.");
    }
    check_output_tensor(meta_, tensor_info(out), path);
    if (meta_.output.kind == "labels" && out.max().item<int64_t>() >= meta_.num_classes) {
      throw Error(ErrorCode::kSidecarMismatch,
                  path + " returned class id " + std::to_string(out.max().item<int64_t>()) +
                      " but its sidecar says " + std::to_string(meta_.num_classes) + " classes.",
                  "Use the .json written together with this artifact (pvtseg export writes both), or re-export both.");
    }
  }

  ModelMeta meta_;
  Logger log_;
  torch::Device device_{torch::kCPU};
  std::string device_name_;
  torch::jit::script::Module module_;
  torch::Tensor scale_, bias_;
  cv::Mat resized_;
};

}  // namespace

std::unique_ptr<BackendImpl> make_libtorch_backend(const ModelMeta& meta, const SegmenterOptions& opt,
                                                   const Logger& log) {
  return std::make_unique<LibTorchBackend>(meta, opt, log);
}

}  // namespace detail
}  // namespace pvtseg
