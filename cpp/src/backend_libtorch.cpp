// LibTorch backend: a TorchScript export (.ts) on CPU or CUDA.
// The only translation unit of the library that includes torch headers (they compile slowly).
#include <cstring>
#include <sstream>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "backend.hpp"

namespace pvtseg {
namespace detail {
namespace {

class LibTorchBackend final : public BackendImpl {
 public:
  LibTorchBackend(const ModelMeta& meta, const SegmenterOptions& opt, const Logger& log) : meta_(meta), log_(log) {
    const bool cuda_available = torch::cuda::is_available();
    bool use_cuda = false;
    switch (opt.device_type) {
      case Device::kCPU: use_cuda = false; break;
      case Device::kCUDA:
        if (!cuda_available) {
          throw Error(ErrorCode::kBackendUnavailable, "CUDA was requested but LibTorch sees no CUDA device.",
                      "Use Device::kCPU (--device cpu), or link pvtseg against a CUDA build of LibTorch on a machine "
                      "with an NVIDIA GPU and driver.");
        }
        use_cuda = true;
        break;
      case Device::kAuto: use_cuda = cuda_available; break;
    }
    if (use_cuda) {
      const auto n = torch::cuda::device_count();
      if (opt.device >= static_cast<int>(n)) {
        throw Error(ErrorCode::kInvalidArgument,
                    "CUDA device " + std::to_string(opt.device) + " requested but only " + std::to_string(n) +
                        " present.",
                    "Pick a device ordinal below " + std::to_string(n) + ".");
      }
      device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(opt.device));
    }
    if (opt.num_threads > 0) at::set_num_threads(opt.num_threads);
    try {
      module_ = torch::jit::load(opt.model_path, device_);
    } catch (const std::exception& e) {
      std::string what = e.what();
      const size_t nl = what.find('\n');
      if (nl != std::string::npos) what = what.substr(0, nl);
      throw Error(ErrorCode::kModelLoadFailed, "LibTorch cannot load " + opt.model_path + " as TorchScript: " + what,
                  "Re-export it with `pvtseg export --formats torchscript` using a PyTorch no newer than the "
                  "LibTorch pvtseg is linked against.");
    }
    module_.eval();
    std::ostringstream os;
    os << device_;
    device_name_ = os.str();
    // (x / 255 - mean) / std per channel as x * scale + bias, [1, 3, 1, 1] on the device.
    Normalization norm = normalization(meta_.input);
    scale_ = torch::from_blob(norm.scale.data(), {1, 3, 1, 1}, torch::kFloat32).clone().to(device_);
    bias_ = torch::from_blob(norm.bias.data(), {1, 3, 1, 1}, torch::kFloat32).clone().to(device_);
    log_(LogLevel::kDebug, "libtorch: loaded " + opt.model_path + " on " + device_name_);
  }

  std::string device_name() const override { return device_name_; }

  void run(const cv::Mat& bgr, cv::Mat& labels, Timings& t) override {
    c10::InferenceMode guard;
    const int h = meta_.input.height, w = meta_.input.width;
    auto t0 = Clock::now();
    torch::Tensor input;
    try {
      if (device_.is_cpu()) {
        // CPU: resize + normalize straight into the input tensor (one pass, no copies).
        input = torch::empty({1, 3, h, w}, torch::kFloat32);
        preprocess_cpu(bgr, meta_.input, resized_, input.data_ptr<float>());
      } else {
        // CUDA: resize on the CPU (cheap at the network size), upload uint8 HWC, then
        // reorder + normalize on the GPU: 4x fewer bytes over PCIe than float.
        const cv::Size size(w, h);
        if (bgr.size() == size && bgr.isContinuous()) {
          resized_ = bgr;
        } else {
          cv::resize(bgr, resized_, size, 0, 0, cv::INTER_LINEAR);
        }
        torch::Tensor hwc = torch::from_blob(resized_.data, {h, w, 3}, torch::kUInt8).to(device_);
        if (meta_.input.channel_order == "RGB") hwc = hwc.flip({2});
        input = hwc.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32).mul_(scale_).add_(bias_).contiguous();
      }
      t.pre_ms += ms_since(t0);

      t0 = Clock::now();
      torch::Tensor out = module_.forward({input}).toTensor();
      if (!device_.is_cpu()) torch::cuda::synchronize(device_.index());
      t.infer_ms += ms_since(t0);

      t0 = Clock::now();
      to_labels(out, labels);
      t.post_ms += ms_since(t0);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      std::string what = e.what();
      const size_t nl = what.find('\n');
      if (nl != std::string::npos) what = what.substr(0, nl);
      throw Error(ErrorCode::kInferenceFailed, "LibTorch inference failed: " + what,
                  "Check that the sidecar matches the artifact (input " + std::to_string(h) + "x" + std::to_string(w) +
                      "); re-export both together with `pvtseg export`.");
    }
  }

 private:
  void to_labels(torch::Tensor out, cv::Mat& labels) {
    const int h = meta_.input.height, w = meta_.input.width;
    if (meta_.output.kind == "logits") {
      if (out.dim() != 4 || out.size(0) != 1) {
        throw Error(ErrorCode::kInferenceFailed,
                    "expected logits of shape [1, C, h, w], got " + shape_string(out) + ".",
                    "Re-export with `pvtseg export --output logits` or `--output labels`; the sidecar's output.kind "
                    "must match the artifact.");
      }
      if (out.size(2) != h || out.size(3) != w) {
        out = at::upsample_bilinear2d(out.to(torch::kFloat32), {h, w}, /*align_corners=*/false);
      }
      out = out.argmax(1);
    } else if (!(out.scalar_type() == torch::kUInt8 || out.scalar_type() == torch::kInt32 ||
                 out.scalar_type() == torch::kInt64 || out.scalar_type() == torch::kInt16)) {
      throw Error(ErrorCode::kInferenceFailed,
                  std::string("the sidecar says the model returns labels but it returned ") +
                      c10::toString(out.scalar_type()) + " values.",
                  "Re-export so that the sidecar matches the artifact (`pvtseg export --output labels`).");
    }
    // labels: [1, H, W] or [H, W] (argmax above gives [1, H, W])
    if (out.dim() == 3 && out.size(0) == 1) out = out.squeeze(0);
    if (out.dim() != 2) {
      throw Error(ErrorCode::kInferenceFailed, "expected labels of shape [1, H, W], got " + shape_string(out) + ".",
                  "The C++ runtime segments one frame at a time: export with batch 1.");
    }
    out = out.to(torch::kCPU, torch::kUInt8).contiguous();
    labels.create(static_cast<int>(out.size(0)), static_cast<int>(out.size(1)), CV_8UC1);
    std::memcpy(labels.data, out.data_ptr<uint8_t>(), static_cast<size_t>(out.numel()));
  }

  static std::string shape_string(const torch::Tensor& t) {
    std::ostringstream os;
    os << t.sizes();
    return os.str();
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
