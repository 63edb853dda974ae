// The engine cache's TensorRT part: .onnx -> engine with TensorRT's ONNX parser, once per
// cache key (engine_cache.hpp, shared with the Python runtime), written atomically beside
// the .onnx with its sidecar.
//
// Build settings: engine/plan.py's default profile for a dynamic input (the sidecar's
// ranges, opt at the export size), the builder workspace capped (SegmenterOptions::
// workspace_bytes, 1 GiB by default, so a build fits an 8 GB Orin Nano), and FP16 by
// version: TensorRT 8.5 .. 10.11 the FP16 builder flag with normalisation / softmax /
// reduce / top-k layers pinned to FP32 (OBEY_PRECISION_CONSTRAINTS), the layer types the
// Python plan pins; 10.12+ and 11.x build strongly typed, so FP16 must already be in the
// graph's types (`pvtseg build-engine --plan-only --fp16 --save-onnx` writes such a graph,
// and an engine the Python runtime cached for the same key is reused as it is).
// The graph is parsed as exported: where a TensorRT version needs the graph adapted
// (LayerNormalization on 8.5, UINT8 label casts), the build fails with a pointer to
// build_engine.py, which adapts it.
#include <array>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine_cache.hpp"
#include "io_contract.hpp"
#include "trt_common.hpp"

#ifdef PVTSEG_WITH_ONNX_PARSER
#include <NvInfer.h>
#include <NvOnnxParser.h>
#endif

namespace pvtseg {
namespace detail {

#ifndef PVTSEG_WITH_ONNX_PARSER

std::string cached_engine_for_onnx(const ModelMeta&, const SegmenterOptions& opt, TrtLogger&, const Logger&,
                                   const std::string&, const std::string&) {
  throw Error(ErrorCode::kBackendUnavailable,
              "this pvtseg was built with TensorRT but without its ONNX parser (libnvonnxparser), so it cannot "
              "build an engine from " + opt.model_path + ".",
              "Install TensorRT's ONNX parser (JetPack ships it; apt package libnvonnxparsers-dev) and reconfigure, "
              "or build the engine with `python python/build_engine.py --onnx " + opt.model_path +
                  " --engine X.engine` and open the .engine.");
}

#else

namespace {

// Logs "still building" every 15 s from a helper thread while the (minutes-long) build runs.
class Heartbeat {
 public:
  Heartbeat(const Logger& log, std::string what) : log_(log), what_(std::move(what)), thread_([this] { loop(); }) {}
  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

 private:
  void loop() {
    const auto t0 = Clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    while (!cv_.wait_for(lock, std::chrono::seconds(15), [this] { return done_; })) {
      log_(LogLevel::kInfo, what_ + ": still building (" + std::to_string(static_cast<int>(ms_since(t0) / 1000)) +
                                " s)");
    }
  }

  Logger log_;
  std::string what_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts after the members it reads
};

[[noreturn]] void build_failed(const std::string& what, const std::string& onnx) {
  throw Error(ErrorCode::kEngineBuildFailed, what,
              "Build the engine with `python python/build_engine.py --onnx " + onnx +
                  " --engine X.engine` (it adapts the graph to this TensorRT version's parser) and open the .engine; "
                  "if the GPU ran out of memory, lower SegmenterOptions::workspace_bytes.");
}

nvinfer1::NetworkDefinitionCreationFlags network_flags(const std::string& precision) {
  nvinfer1::NetworkDefinitionCreationFlags flags = 0;
#if NV_TENSORRT_MAJOR < 10
  flags |= 1U << static_cast<std::uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
  (void)precision;
#elif NV_TENSORRT_MAJOR == 10 && PVTSEG_TRT_STRONGLY_TYPED_FP16
  if (precision == "fp16") {
    flags |= 1U << static_cast<std::uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
  }
#else
  (void)precision;  // 10.0 .. 10.11: explicit batch is implied; 11.x: every network is strongly typed
#endif
  return flags;
}

void parse_onnx(nvonnxparser::IParser& parser, const std::string& onnx, const TrtLogger& logger) {
  if (parser.parseFromFile(onnx.c_str(), static_cast<int>(nvinfer1::ILogger::Severity::kWARNING))) return;
  std::string errors;
  for (int i = 0; i < parser.getNbErrors() && i < 3; ++i) {
    const nvonnxparser::IParserError* e = parser.getError(i);
    errors += std::string(errors.empty() ? "" : "; ") + e->desc() + " (node " + std::to_string(e->node()) + ")";
  }
  build_failed("TensorRT " + running_trt_version() + "'s ONNX parser cannot import " + onnx + ": " +
                   (errors.empty() ? "no reason given" + logger.reason() : errors) + ".",
               onnx);
}

// The network's input must be the sidecar's (name, [1, 3, H, W] or dynamic, dtype).
void check_network(const nvinfer1::INetworkDefinition& network, const ModelMeta& meta, const std::string& onnx) {
  std::vector<std::string> names;
  for (int i = 0; i < network.getNbInputs(); ++i) names.push_back(network.getInput(i)->getName());
  if (names.size() != 1) {
    throw Error(ErrorCode::kSidecarMismatch,
                onnx + ": the graph has inputs " + names_list(names) + "; pvtseg feeds exactly one image input.",
                "Export the model with `pvtseg export`.");
  }
  const nvinfer1::ITensor* in = network.getInput(0);
  check_input_tensor(meta, {in->getName(), dims_vector(in->getDimensions()), dtype_name(in->getType())}, onnx);
}

// A dynamic input gets engine/plan.py's default profile (engine_cache.hpp engine_profile).
void add_profile(nvinfer1::IBuilder& builder, const nvinfer1::INetworkDefinition& network,
                 nvinfer1::IBuilderConfig& config, const InputSpec& in, const std::string& onnx, const Logger& log) {
  const nvinfer1::ITensor* input = network.getInput(0);
  const auto dims = dims_vector(input->getDimensions());
  bool dynamic = false;
  for (std::int64_t d : dims) dynamic = dynamic || d < 0;
  if (!dynamic) return;
  const ShapeProfile p = engine_profile(in, dims, onnx);
  auto dims4 = [](const std::array<std::int64_t, 4>& a) {
    return nvinfer1::Dims4(static_cast<std::int32_t>(a[0]), static_cast<std::int32_t>(a[1]),
                           static_cast<std::int32_t>(a[2]), static_cast<std::int32_t>(a[3]));
  };
  nvinfer1::IOptimizationProfile* profile = builder.createOptimizationProfile();  // owned by the builder
  profile->setDimensions(input->getName(), nvinfer1::OptProfileSelector::kMIN, dims4(p.min));
  profile->setDimensions(input->getName(), nvinfer1::OptProfileSelector::kOPT, dims4(p.opt));
  profile->setDimensions(input->getName(), nvinfer1::OptProfileSelector::kMAX, dims4(p.max));
  config.addOptimizationProfile(profile);
  log(LogLevel::kInfo, "engine cache: profile " + dims_string({p.min.begin(), p.min.end()}) + " / " +
                           dims_string({p.opt.begin(), p.opt.end()}) + " / " + dims_string({p.max.begin(), p.max.end()}));
}

#if !PVTSEG_TRT_STRONGLY_TYPED_FP16
// FP16 builder flag with the layers that overflow or lose too much in FP16 kept in FP32.
int pin_fp32_layers(nvinfer1::INetworkDefinition& network, nvinfer1::IBuilderConfig& config) {
  config.setFlag(nvinfer1::BuilderFlag::kFP16);
  config.setFlag(nvinfer1::BuilderFlag::kOBEY_PRECISION_CONSTRAINTS);
  int pinned = 0;
  for (int i = 0; i < network.getNbLayers(); ++i) {
    nvinfer1::ILayer* layer = network.getLayer(i);
    const nvinfer1::LayerType t = layer->getType();
    bool island = t == nvinfer1::LayerType::kSOFTMAX || t == nvinfer1::LayerType::kREDUCE ||
                  t == nvinfer1::LayerType::kTOPK;
#if NV_TENSORRT_MAJOR > 8 || NV_TENSORRT_MINOR >= 6
    island = island || t == nvinfer1::LayerType::kNORMALIZATION;
#endif
    if (!island) continue;
    layer->setPrecision(nvinfer1::DataType::kFLOAT);
    for (int j = 0; j < layer->getNbOutputs(); ++j) {
      const nvinfer1::DataType ot = layer->getOutput(j)->getType();
      if (ot == nvinfer1::DataType::kFLOAT || ot == nvinfer1::DataType::kHALF) {
        layer->setOutputType(j, nvinfer1::DataType::kFLOAT);
      }
    }
    ++pinned;
  }
  return pinned;
}
#else
bool has_half_tensors(const nvinfer1::INetworkDefinition& network) {
  for (int i = 0; i < network.getNbLayers(); ++i) {
    const nvinfer1::ILayer* layer = network.getLayer(i);
    for (int j = 0; j < layer->getNbOutputs(); ++j) {
      if (layer->getOutput(j)->getType() == nvinfer1::DataType::kHALF) return true;
    }
  }
  return false;
}
#endif

void apply_precision(nvinfer1::INetworkDefinition& network, nvinfer1::IBuilderConfig& config,
                     const std::string& precision, const std::string& onnx, const Logger& log) {
  if (precision == "int8") {
    throw Error(ErrorCode::kInvalidArgument,
                "the C++ engine cache builds fp32 and fp16 engines; int8 needs the Python builder (Q/DQ graphs).",
                "Build it once with Python: `pvtseg demo --model " + onnx + " --backend tensorrt --precision int8` "
                "(or Segmenter(..., backend='tensorrt', precision='int8')); both runtimes share the cached engine.");
  }
  if (precision != "fp16") return;
#if !PVTSEG_TRT_STRONGLY_TYPED_FP16
  (void)onnx;
  const int pinned = pin_fp32_layers(network, config);
  log(LogLevel::kInfo, "engine cache: FP16 builder flag, " + std::to_string(pinned) + " layers pinned to FP32");
#else
  (void)config;
  (void)log;
  if (!has_half_tensors(network)) {
    throw Error(ErrorCode::kInvalidArgument,
                "TensorRT " + running_trt_version() + " builds FP16 only from a graph whose types are FP16 "
                "(strongly typed; the FP16 builder flag is deprecated), and " + onnx + " is FP32.",
                "Let the Python runtime build it once (it converts the graph): `pvtseg demo --model " + onnx +
                    " --backend tensorrt --precision fp16`; both runtimes share the cached engine. Or write the FP16 "
                    "graph with `pvtseg build-engine --plan-only --fp16 --onnx " + onnx +
                    " --save-onnx X_fp16.onnx` and open that (with the .json copied to X_fp16.json), or use fp32.");
  }
#endif
}

std::vector<char> build_engine(const std::string& onnx, const ModelMeta& meta, const std::string& precision,
                               const SegmenterOptions& opt, TrtLogger& logger, const Logger& log) {
  std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger));
  if (!builder) build_failed("TensorRT could not create a builder" + logger.reason() + ".", onnx);
  std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(network_flags(precision)));
  std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger));
  std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
  if (!network || !parser || !config) build_failed("TensorRT could not set up the build" + logger.reason() + ".", onnx);
  parse_onnx(*parser, onnx, logger);
  check_network(*network, meta, onnx);
  config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, opt.workspace_bytes);
  add_profile(*builder, *network, *config, meta.input, onnx, log);
  apply_precision(*network, *config, precision, onnx, log);
  std::unique_ptr<nvinfer1::IHostMemory> plan;
  {
    Heartbeat heartbeat(log, "engine cache");
    plan.reset(builder->buildSerializedNetwork(*network, *config));
  }
  if (!plan || plan->size() == 0) build_failed("TensorRT failed to build " + onnx + logger.reason() + ".", onnx);
  const char* data = static_cast<const char*>(plan->data());
  return std::vector<char>(data, data + plan->size());
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::string cached_engine_for_onnx(const ModelMeta& meta, const SegmenterOptions& opt, TrtLogger& trt_logger,
                                   const Logger& log, const std::string& trt_version, const std::string& cc) {
  // A Q/DQ graph builds INT8 whatever is asked (as engine_cache.py): key and name say so.
  const std::string precision = meta.precision == "int8" ? std::string("int8") : opt.precision;
  if (precision != opt.precision) {
    log(LogLevel::kInfo, "engine cache: " + opt.model_path + " is a Q/DQ (INT8) graph; using int8 (asked: " +
                             opt.precision + ")");
  }
  const EngineCacheKey key = make_engine_cache_key(opt.model_path, meta.input, trt_version, cc, precision);
  const std::string path = engine_cache_path(opt.model_path, opt.engine_cache_dir, key);
  if (cached_engine_usable(path, engine_cache_key(key))) {
    log(LogLevel::kInfo, "engine cache: reusing " + path);
    return path;
  }
  log(LogLevel::kInfo, "engine cache: building " + path + " from " + opt.model_path + " (TensorRT " + trt_version +
                           ", sm " + cc + ", " + precision + ", workspace " +
                           std::to_string(opt.workspace_bytes >> 20) + " MiB); this takes a few minutes, once");
  const auto t0 = Clock::now();
  const std::vector<char> plan = build_engine(opt.model_path, meta, precision, opt, trt_logger, log);
  // The sidecar first: an engine file is only ever seen with its sidecar beside it.
  const std::string sidecar = cached_engine_sidecar(read_text(sidecar_path(opt.model_path)), key);
  write_file_atomic(sidecar_path(path), sidecar.data(), sidecar.size());
  write_file_atomic(path, plan.data(), plan.size());
  log(LogLevel::kInfo, "engine cache: built in " + std::to_string(static_cast<int>(ms_since(t0) / 1000)) +
                           " s, wrote " + path + " (" + std::to_string(plan.size() >> 20) + " MiB)");
  return path;
}

#endif  // PVTSEG_WITH_ONNX_PARSER

}  // namespace detail
}  // namespace pvtseg
