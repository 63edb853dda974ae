// Internal: what the TensorRT backend (backend_tensorrt.cpp) and the engine builder
// (trt_build.cpp) share: error helpers, the TensorRT logger, version / device queries,
// tensor descriptions in sidecar words, and RAII holders for CUDA resources.
// Written against the public headers of TensorRT 8.5, 8.6, 10.x and 11.x.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include "backend.hpp"

#if NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 5)
#error "pvtseg's TensorRT backend needs TensorRT >= 8.5 (name-based I/O: setTensorAddress / enqueueV3)"
#endif

// TensorRT 10.12 deprecates the FP16 builder flag and per-layer precision; from there on
// (and on 11.x, which removed them) FP16 comes from the graph's own types (strongly typed).
#define PVTSEG_TRT_STRONGLY_TYPED_FP16 (NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 12))

namespace pvtseg {
namespace detail {

inline const char* trt_rebuild_fix() {
  return "Rebuild the engine on this machine with `python python/build_engine.py --onnx X.onnx --engine "
         "X.engine` (engines are tied to one TensorRT version and one GPU), or open the .onnx itself with the "
         "TensorRT backend (it builds and caches the engine).";
}

inline void cuda_check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) {
    throw Error(ErrorCode::kInferenceFailed,
                what + ": CUDA error " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ").",
                "Check the GPU and driver (nvidia-smi); on a Jetson, make sure no other process holds the GPU memory.");
  }
}

// The running TensorRT as `tensorrt.__version__` prints it ("10.3.0.30"), which the engine
// cache key and the sidecars share with the Python runtime. getInferLibVersion() gives
// MAJOR*1000+MINOR*100+PATCH up to TensorRT 9, MAJOR*10000+MINOR*100+PATCH from 10, but no
// build number: that comes from the headers, used only when they match the library.
inline std::string running_trt_version() {
  const std::int64_t v = getInferLibVersion();
  const bool v10 = v >= 100000;
  const std::int64_t major = v10 ? v / 10000 : v / 1000;
  const std::int64_t minor = v10 ? (v / 100) % 100 : (v / 100) % 10;
  const std::int64_t patch = v % 100;
  std::string s = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  if (major == NV_TENSORRT_MAJOR && minor == NV_TENSORRT_MINOR && patch == NV_TENSORRT_PATCH) {
    s += "." + std::to_string(NV_TENSORRT_BUILD);
  }
  return s;
}

// "8.7" for an Orin; fills `name` with the GPU's name.
inline std::string compute_capability(int device, std::string& name) {
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  name = prop.name;
  return std::to_string(prop.major) + "." + std::to_string(prop.minor);
}

inline std::vector<std::int64_t> dims_vector(const nvinfer1::Dims& d) {
  std::vector<std::int64_t> v;
  for (int i = 0; i < d.nbDims; ++i) v.push_back(static_cast<std::int64_t>(d.d[i]));
  return v;
}

// DataType in sidecar words, and its size in bytes (0: a type pvtseg cannot bind).
inline std::string dtype_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kBOOL: return "bool";
    case nvinfer1::DataType::kUINT8: return "uint8";
#if NV_TENSORRT_MAJOR >= 10
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kBF16: return "bfloat16";
#endif
    default: return "type " + std::to_string(static_cast<int>(t));
  }
}

inline std::size_t element_size(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kINT8: return 1;
    case nvinfer1::DataType::kUINT8: return 1;
    case nvinfer1::DataType::kBOOL: return 1;
#if NV_TENSORRT_MAJOR >= 10
    case nvinfer1::DataType::kINT64: return 8;
    case nvinfer1::DataType::kBF16: return 2;
#endif
    default: return 0;
  }
}

// Forwards TensorRT's messages to the Segmenter's log callback and keeps the last error,
// which the library's own errors quote (TensorRT's reason for a failed load or build).
class TrtLogger final : public nvinfer1::ILogger {
 public:
  explicit TrtLogger(const Logger& log) : log_(log) {}
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    const bool error = severity == Severity::kINTERNAL_ERROR || severity == Severity::kERROR;
    try {
      if (error) {
        std::lock_guard<std::mutex> lock(mutex_);
        last_error_ = msg;
      }
      if (!log_.enabled()) return;
      const LogLevel level = error ? LogLevel::kError
                                   : severity == Severity::kWARNING ? LogLevel::kWarning : LogLevel::kDebug;
      log_(level, std::string("tensorrt: ") + msg);
    } catch (...) {  // a throwing callback (or bad_alloc) must not cross TensorRT's noexcept boundary
    }
  }
  // " (TensorRT: <last error>)", or "" when TensorRT reported none.
  std::string reason() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_error_.empty() ? std::string() : " (TensorRT: " + last_error_ + ")";
  }

 private:
  Logger log_;
  mutable std::mutex mutex_;
  std::string last_error_;
};

// cudaMalloc'd / cudaMallocHost'd buffers that free themselves.
template <cudaError_t (*Alloc)(void**, std::size_t), cudaError_t (*Free)(void*)>
struct CudaBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  CudaBuffer() = default;
  CudaBuffer(CudaBuffer&& o) noexcept : ptr(o.ptr), bytes(o.bytes) { o.ptr = nullptr, o.bytes = 0; }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;
  ~CudaBuffer() {
    if (ptr) Free(ptr);
  }
  void reserve(std::size_t n, const std::string& what) {
    if (n <= bytes) return;
    if (ptr) Free(ptr);
    ptr = nullptr;
    bytes = 0;
    cuda_check(Alloc(&ptr, n), "allocating " + what);
    bytes = n;
  }
};
inline cudaError_t device_alloc(void** p, std::size_t n) { return cudaMalloc(p, n); }
inline cudaError_t device_free(void* p) { return cudaFree(p); }
inline cudaError_t host_alloc(void** p, std::size_t n) { return cudaMallocHost(p, n); }
inline cudaError_t host_free(void* p) { return cudaFreeHost(p); }
using DeviceBuffer = CudaBuffer<device_alloc, device_free>;
using HostBuffer = CudaBuffer<host_alloc, host_free>;

// Created by create(), on the device current at that moment (the backend sets it first).
struct CudaStream {
  cudaStream_t s = nullptr;
  CudaStream() = default;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream() {
    if (s) cudaStreamDestroy(s);
  }
  void create() { cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
};

struct CudaEvent {
  cudaEvent_t e = nullptr;
  CudaEvent() = default;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  ~CudaEvent() {
    if (e) cudaEventDestroy(e);
  }
  void create() { cuda_check(cudaEventCreate(&e), "cudaEventCreate"); }
};

// The engine for an .onnx opened with the TensorRT backend: the cached one when its key
// (engine_cache.hpp) matches, else built now (progress through `log`), written atomically
// with its sidecar, and returned. Throws Error (engine_build_failed, sidecar_mismatch,
// backend_unavailable when this build has no ONNX parser).
std::string cached_engine_for_onnx(const ModelMeta& meta, const SegmenterOptions& opt, TrtLogger& trt_logger,
                                   const Logger& log, const std::string& trt_version, const std::string& cc);

}  // namespace detail
}  // namespace pvtseg
