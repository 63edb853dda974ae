// Internal: the engine cache's key, paths and files. Plain C++ (no TensorRT), so a CPU
// ctest covers it; trt_build.cpp does the TensorRT part (parse, build, serialize).
//
// The same cache as python/pvtseg/runtime/engine_cache.py, so an engine built by either
// runtime is reused by the other. An .onnx opened with the TensorRT backend is built once
// into (beside the .onnx, or in SegmenterOptions::engine_cache_dir)
//   <stem>.<precision>.trt<TensorRT version>.sm<cc without the dot>.<key[:12]>.engine (+ .json)
// where key = sha256 of the JSON text Python's json.dumps(fields, sort_keys=True) gives for
//   {"cc": "8.7", "onnx_sha256": <digest>, "precision": "fp16",
//    "profile": {"dynamic": <input.dynamic or null>, "height": H, "width": W},
//    "pvtseg": "0.1.0", "tensorrt": "10.3.0.30"}
// and <digest> is the sha256 of the .onnx, or, when its weights sit in <x>.onnx.data, the
// sha256 of the two files' hex digests concatenated. The engine counts as cached when the
// file exists and its sidecar's "engine_cache_key" equals the key; any change of the model,
// TensorRT, GPU, precision or shape profile gives another key, so a stale engine is never
// loaded. The ctest compares these keys and names with the Python functions'.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pvtseg/meta.hpp"

namespace pvtseg {
namespace detail {

// SHA-256 (FIPS 180-4) of a buffer / of a file's bytes, as 64 lowercase hex digits.
std::string sha256_hex(const void* data, std::size_t n);
std::string sha256_file(const std::string& path);  // throws Error(kModelNotFound) if unreadable

// engine_cache.py onnx_digest.
std::string onnx_digest(const std::string& onnx_path);

struct EngineCacheKey {
  std::string onnx_sha256;         // onnx_digest
  std::string tensorrt_version;    // as tensorrt.__version__ prints it: "10.3.0.30"
  std::string compute_capability;  // "8.7"
  std::string precision;           // fp32 | fp16 | int8
  std::string profile_json;        // {"dynamic": ..., "height": H, "width": W}
  std::string pvtseg_version;      // pvtseg::version(): the graph's adaptations depend on it
};

// engine_cache.py shape_profile, as json.dumps(..., sort_keys=True) writes it.
std::string profile_json(const InputSpec& in);

// Hashes the .onnx; refuses a precision other than fp32, fp16, int8 (kInvalidArgument).
// pvtseg_version is this library's version().
EngineCacheKey make_engine_cache_key(const std::string& onnx_path, const InputSpec& in,
                                     const std::string& tensorrt_version, const std::string& compute_capability,
                                     const std::string& precision);

std::string engine_cache_key_text(const EngineCacheKey& key);  // the JSON that is hashed
std::string engine_cache_key(const EngineCacheKey& key);       // its sha256, 64 hex digits

std::string engine_cache_path(const std::string& onnx_path, const std::string& cache_dir, const EngineCacheKey& key);

// The engine exists and its sidecar records this key (engine_cache.py _cached).
bool cached_engine_usable(const std::string& engine_path, const std::string& key_hex);

// The cached engine's sidecar: the .onnx's sidecar JSON with precision, tensorrt_version,
// compute_capability and engine_cache_key set.
std::string cached_engine_sidecar(const std::string& onnx_sidecar_json, const EngineCacheKey& key);

// The optimization profile an engine of this key is built with (engine/plan.py
// make_profile without --min/--opt/--max): static dims stay; dynamic ones span the
// sidecar's input.dynamic range with opt at the export size (batch 1).
struct ShapeProfile {
  std::array<std::int64_t, 4> min{}, opt{}, max{};
};
// onnx_dims: the network input's dims (-1 dynamic). Throws Error(kEngineBuildFailed) when a
// dynamic dim has no range in the sidecar.
ShapeProfile engine_profile(const InputSpec& in, const std::vector<std::int64_t>& onnx_dims,
                            const std::string& onnx_path);

// Write a file atomically: a temporary file in the same folder, flushed, then renamed over
// `path`, so a reader never sees a partial file. Throws Error(kEngineBuildFailed) on failure.
void write_file_atomic(const std::string& path, const void* data, std::size_t n);

}  // namespace detail
}  // namespace pvtseg
