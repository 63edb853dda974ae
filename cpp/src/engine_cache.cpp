// Engine cache key, paths and atomic writes (see engine_cache.hpp).
#include "engine_cache.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "pvtseg/error.hpp"
#include "pvtseg/segmenter.hpp"

namespace pvtseg {
namespace detail {
namespace {

// SHA-256 as specified in FIPS 180-4, section 6.2.
class Sha256 {
 public:
  void update(const std::uint8_t* p, std::size_t n) {
    total_ += n;
    while (n > 0) {
      const std::size_t take = std::min(n, sizeof(buf_) - len_);
      std::memcpy(buf_ + len_, p, take);
      len_ += take;
      p += take;
      n -= take;
      if (len_ == sizeof(buf_)) {
        compress(buf_);
        len_ = 0;
      }
    }
  }

  std::string hex() {
    const std::uint64_t bits = total_ * 8;
    const std::uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (len_ != 56) update(&zero, 1);
    std::uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>(bits >> (56 - 8 * i));
    update(length, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (std::uint32_t word : h_) {
      for (int shift = 28; shift >= 0; shift -= 4) out += digits[(word >> shift) & 0xf];
    }
    return out;
  }

 private:
  static std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress(const std::uint8_t* block) {
    static const std::uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::uint32_t w[64];
    for (int t = 0; t < 16; ++t) {
      w[t] = (std::uint32_t(block[4 * t]) << 24) | (std::uint32_t(block[4 * t + 1]) << 16) |
             (std::uint32_t(block[4 * t + 2]) << 8) | std::uint32_t(block[4 * t + 3]);
    }
    for (int t = 16; t < 64; ++t) {
      const std::uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const std::uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    std::uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int t = 0; t < 64; ++t) {
      const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[t] + w[t];
      const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    const std::uint32_t v[8] = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) h_[i] += v[i];
  }

  std::uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::uint8_t buf_[64] = {};
  std::size_t len_ = 0;
  std::uint64_t total_ = 0;
};

bool file_exists(const std::string& path) { return static_cast<bool>(std::ifstream(path, std::ios::binary)); }

// "dir/x.onnx" -> ("dir/", "x"); "x.onnx" -> ("", "x").
void split_path(const std::string& path, std::string& dir, std::string& stem) {
  const size_t slash = path.find_last_of("/\\");
  dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  stem = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = stem.find_last_of('.');
  if (dot != std::string::npos && dot > 0) stem = stem.substr(0, dot);
}

[[noreturn]] void write_failed(const std::string& path, const std::string& why) {
  throw Error(ErrorCode::kEngineBuildFailed, "cannot write the engine cache file " + path + " (" + why + ").",
              "Make the folder writable (or free disk space), or point SegmenterOptions::engine_cache_dir "
              "(pvtseg_demo --engine-cache-dir) at a writable folder.");
}

}  // namespace

std::string sha256_hex(const void* data, std::size_t n) {
  Sha256 s;
  s.update(static_cast<const std::uint8_t*>(data), n);
  return s.hex();
}

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    throw Error(ErrorCode::kModelNotFound, "cannot read " + path + " to hash it for the engine cache.",
                "Check the path and its permissions.");
  }
  Sha256 s;
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    s.update(reinterpret_cast<const std::uint8_t*>(buf.data()), static_cast<std::size_t>(f.gcount()));
  }
  return s.hex();
}

std::string onnx_digest(const std::string& onnx_path) {
  const std::string digest = sha256_file(onnx_path);
  if (!file_exists(onnx_path + ".data")) return digest;
  const std::string both = digest + sha256_file(onnx_path + ".data");
  return sha256_hex(both.data(), both.size());
}

std::string profile_json(const InputSpec& in) {
  std::string dynamic = "null";
  if (in.dynamic) {
    dynamic.clear();
    // Python's sort_keys order: batch, height, width.
    for (const auto& [axis, range] : {std::make_pair("batch", in.dynamic_batch),
                                      std::make_pair("height", in.dynamic_height),
                                      std::make_pair("width", in.dynamic_width)}) {
      if (range[1] == 0) continue;
      dynamic += std::string(dynamic.empty() ? "" : ", ") + "\"" + axis + "\": [" + std::to_string(range[0]) + ", " +
                 std::to_string(range[1]) + "]";
    }
    dynamic = "{" + dynamic + "}";
  }
  return "{\"dynamic\": " + dynamic + ", \"height\": " + std::to_string(in.height) +
         ", \"width\": " + std::to_string(in.width) + "}";
}

EngineCacheKey make_engine_cache_key(const std::string& onnx_path, const InputSpec& in,
                                     const std::string& tensorrt_version, const std::string& compute_capability,
                                     const std::string& precision) {
  if (precision != "fp32" && precision != "fp16" && precision != "int8") {
    throw Error(ErrorCode::kInvalidArgument, "engine precision must be fp32, fp16 or int8, got '" + precision + "'.",
                "Set SegmenterOptions::precision (pvtseg_demo --precision) to fp32 or fp16 (built here), or int8 "
                "(an engine the Python runtime built and cached).");
  }
  EngineCacheKey key;
  key.onnx_sha256 = onnx_digest(onnx_path);
  key.tensorrt_version = tensorrt_version;
  key.compute_capability = compute_capability;
  key.precision = precision;
  key.profile_json = profile_json(in);
  key.pvtseg_version = version();
  return key;
}

std::string engine_cache_key_text(const EngineCacheKey& key) {
  auto q = [](const std::string& s) { return nlohmann::json(s).dump(); };  // a JSON string literal
  return "{\"cc\": " + q(key.compute_capability) + ", \"onnx_sha256\": " + q(key.onnx_sha256) +
         ", \"precision\": " + q(key.precision) + ", \"profile\": " + key.profile_json +
         ", \"pvtseg\": " + q(key.pvtseg_version) + ", \"tensorrt\": " + q(key.tensorrt_version) + "}";
}

std::string engine_cache_key(const EngineCacheKey& key) {
  const std::string text = engine_cache_key_text(key);
  return sha256_hex(text.data(), text.size());
}

std::string engine_cache_path(const std::string& onnx_path, const std::string& cache_dir, const EngineCacheKey& key) {
  std::string dir, stem;
  split_path(onnx_path, dir, stem);
  if (!cache_dir.empty()) {
    dir = cache_dir;
    if (dir.back() != '/' && dir.back() != '\\') dir += '/';
  }
  std::string cc;
  for (char c : key.compute_capability) {
    if (c != '.') cc += c;
  }
  return dir + stem + "." + key.precision + ".trt" + key.tensorrt_version + ".sm" + cc + "." +
         engine_cache_key(key).substr(0, 12) + ".engine";
}

bool cached_engine_usable(const std::string& engine_path, const std::string& key_hex) {
  if (!file_exists(engine_path)) return false;
  std::ifstream f(sidecar_path(engine_path), std::ios::binary);
  if (!f) return false;
  std::ostringstream text;
  text << f.rdbuf();
  try {
    parse_meta(text.str(), sidecar_path(engine_path));  // a sidecar the runtimes would refuse: rebuild
    const nlohmann::json j = nlohmann::json::parse(text.str());
    const auto it = j.find("engine_cache_key");
    return it != j.end() && it->is_string() && it->get<std::string>() == key_hex;
  } catch (const std::exception&) {
    return false;
  }
}

std::string cached_engine_sidecar(const std::string& onnx_sidecar_json, const EngineCacheKey& key) {
  nlohmann::json j = nlohmann::json::parse(onnx_sidecar_json);
  j.erase("artifacts");  // its digests describe the exported graphs, not the engine (as engine/prepare.py)
  j["precision"] = key.precision;
  j["tensorrt_version"] = key.tensorrt_version;
  j["compute_capability"] = key.compute_capability;
  j["engine_cache_key"] = engine_cache_key(key);
  return j.dump(2) + "\n";
}

ShapeProfile engine_profile(const InputSpec& in, const std::vector<std::int64_t>& onnx_dims,
                            const std::string& onnx_path) {
  ShapeProfile p;
  const std::array<int, 2> three{{3, 3}};  // the model takes 3 channels, dynamic or not
  const std::array<std::array<int, 2>, 4> ranges = {in.dynamic_batch, three, in.dynamic_height, in.dynamic_width};
  const std::array<std::int64_t, 4> opt = {1, 3, in.height, in.width};
  const char* axes[4] = {"batch", "channel", "height", "width"};
  for (size_t i = 0; i < 4; ++i) {
    const std::int64_t d = i < onnx_dims.size() ? onnx_dims[i] : -1;
    if (d > 0) {
      p.min[i] = p.opt[i] = p.max[i] = d;
      continue;
    }
    if (ranges[i][1] == 0) {
      throw Error(ErrorCode::kEngineBuildFailed,
                  onnx_path + ": input dim " + axes[i] + " is dynamic but the sidecar's input.dynamic gives no range "
                  "for it.",
                  "Re-export with `pvtseg export --dynamic` (it writes the ranges), or export a static graph.");
    }
    p.min[i] = ranges[i][0];
    p.max[i] = ranges[i][1];
    p.opt[i] = std::min<std::int64_t>(std::max<std::int64_t>(opt[i], p.min[i]), p.max[i]);
  }
  return p;
}

void write_file_atomic(const std::string& path, const void* data, std::size_t n) {
  const size_t slash = path.find_last_of("/\\");
  const std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  const std::string name = path.substr(dir.size());
#if defined(__unix__) || defined(__APPLE__)
  const std::string tmp = dir + "." + name + "." + std::to_string(static_cast<long>(getpid())) + ".tmp";
#else
  const std::string tmp = dir + "." + name + ".tmp";
#endif
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) write_failed(path, std::strerror(errno));
  const bool written = std::fwrite(data, 1, n, f) == n && std::fflush(f) == 0;
#if defined(__unix__) || defined(__APPLE__)
  const bool synced = written && fsync(fileno(f)) == 0;  // the bytes are on disk before the rename
#else
  const bool synced = written;
#endif
  const int err = errno;
  if (std::fclose(f) != 0 || !synced) {
    std::remove(tmp.c_str());
    write_failed(path, std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_err = errno;
    std::remove(tmp.c_str());
    write_failed(path, std::strerror(rename_err));
  }
}

}  // namespace detail
}  // namespace pvtseg
