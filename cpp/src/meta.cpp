// Sidecar reading and validation: the same rules as python/pvtseg/meta.py.
#include "pvtseg/meta.hpp"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "pvtseg/error.hpp"

namespace pvtseg {

using nlohmann::json;

namespace {

const char* kRegenerate = "Re-export the model with `pvtseg export` (it writes the artifact and its .json sidecar together).";

[[noreturn]] void bad(const std::string& where, const std::string& msg) {
  throw Error(ErrorCode::kBadSidecar, where + ": " + msg + ".", kRegenerate);
}

void require(bool cond, const std::string& where, const std::string& msg) {
  if (!cond) bad(where, msg);
}

const json& field(const json& obj, const char* key, const std::string& where, const std::string& prefix = "") {
  auto it = obj.find(key);
  if (it == obj.end()) bad(where, "missing field '" + prefix + key + "'");
  return *it;
}

bool is_int(const json& v) { return v.is_number_integer(); }

std::string optional_string(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<long long>());
  if (it->is_number()) {
    std::ostringstream os;
    os << it->get<double>();
    return os.str();
  }
  if (it->is_array()) {  // e.g. compute_capability [8, 7]
    std::string s;
    for (const auto& part : *it) {
      if (!part.is_number_integer()) return it->dump();
      if (!s.empty()) s += ".";
      s += std::to_string(part.get<long long>());
    }
    return s;
  }
  return it->dump();
}

std::array<double, 3> three_numbers(const json& v, const std::string& where, const std::string& name) {
  require(v.is_array() && v.size() == 3, where, name + " must be 3 numbers");
  std::array<double, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    require(v[i].is_number(), where, name + " must be 3 numbers");
    out[i] = v[i].get<double>();
  }
  return out;
}

// "sm_87", "8.7", "87", "10.3.0.26" -> numeric parts.
std::vector<int> version_parts(std::string s) {
  if (s.rfind("sm_", 0) == 0) s = s.substr(3);
  std::vector<int> parts;
  std::string cur;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      cur += c;
    } else {
      if (!cur.empty()) parts.push_back(std::stoi(cur));
      cur.clear();
      if (c != '.') break;  // stop at "-", "+", " " suffixes
    }
  }
  if (!cur.empty()) parts.push_back(std::stoi(cur));
  return parts;
}

std::vector<int> capability_parts(const std::string& s) {
  std::vector<int> p = version_parts(s);
  if (p.size() == 1 && p[0] >= 10) {  // "87" -> 8.7, "120" -> 12.0
    int v = p[0];
    p = {v / 10, v % 10};
  }
  if (p.size() > 2) p.resize(2);
  return p;
}

}  // namespace

Normalization normalization(const InputSpec& in) {
  Normalization n{};
  for (int c = 0; c < 3; ++c) {
    n.scale[c] = static_cast<float>(1.0 / (255.0 * in.std[c]));
    n.bias[c] = static_cast<float>(-in.mean[c] / in.std[c]);
  }
  return n;
}

std::string sidecar_path(const std::string& artifact) {
  const size_t slash = artifact.find_last_of("/\\");
  const size_t dot = artifact.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return artifact + ".json";
  return artifact.substr(0, dot) + ".json";
}

ModelMeta parse_meta(const std::string& json_text, const std::string& where) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kBadSidecar, where + ": cannot parse JSON (" + e.what() + ").", kRegenerate);
  }
  require(j.is_object(), where, "top level must be a JSON object");
  ModelMeta m;
  try {
    for (const char* key : {"schema_version", "arch", "num_classes", "class_names", "palette", "input", "output",
                            "precision"}) {
      field(j, key, where);
    }
    const json& sv = j["schema_version"];
    require(is_int(sv) && sv.get<int>() == kSchemaVersion, where,
            "schema_version " + sv.dump() + " is not supported (this pvtseg reads " + std::to_string(kSchemaVersion) +
                ")");
    m.schema_version = sv.get<int>();
    require(j["arch"].is_string(), where, "arch must be a string");
    m.arch = j["arch"].get<std::string>();

    const json& n = j["num_classes"];
    require(is_int(n) && n.get<long long>() >= 1 && n.get<long long>() <= 255, where,
            "num_classes must be an int in 1..255, got " + n.dump());
    m.num_classes = n.get<int>();

    const json& names = j["class_names"];
    require(names.is_array() && static_cast<int>(names.size()) == m.num_classes, where,
            "class_names must list " + std::to_string(m.num_classes) + " names");
    for (const auto& s : names) {
      require(s.is_string(), where, "class_names must be strings");
      m.class_names.push_back(s.get<std::string>());
    }

    const json& pal = j["palette"];
    const std::string pal_msg =
        "palette must be " + std::to_string(m.num_classes) + " [r, g, b] triples of ints 0..255";
    require(pal.is_array() && static_cast<int>(pal.size()) == m.num_classes, where, pal_msg);
    for (const auto& c : pal) {
      require(c.is_array() && c.size() == 3, where, pal_msg);
      cv::Vec3b rgb;
      for (int k = 0; k < 3; ++k) {
        require(is_int(c[k]) && c[k].get<int>() >= 0 && c[k].get<int>() <= 255, where, pal_msg);
        rgb[k] = static_cast<uchar>(c[k].get<int>());
      }
      m.palette.push_back(rgb);
    }

    const json& in = j["input"];
    require(in.is_object(), where, "'input' must be an object");
    for (const char* key : {"name", "height", "width", "mean", "std", "layout", "channel_order"}) {
      field(in, key, where, "input.");
    }
    require(in["name"].is_string(), where, "input.name must be a string");
    m.input.name = in["name"].get<std::string>();
    for (const char* key : {"height", "width"}) {
      const json& v = in[key];
      require(is_int(v) && v.get<long long>() > 0 && v.get<long long>() % 32 == 0 && v.get<long long>() <= 1 << 16,
              where, std::string("input.") + key + " must be a positive multiple of 32, got " + v.dump());
    }
    m.input.height = in["height"].get<int>();
    m.input.width = in["width"].get<int>();
    m.input.mean = three_numbers(in["mean"], where, "input.mean");
    m.input.std = three_numbers(in["std"], where, "input.std");
    for (double s : m.input.std) require(s > 0.0, where, "input.std must be positive");
    require(in["layout"] == "NCHW", where, "input.layout must be NCHW");
    require(in["channel_order"] == "RGB" || in["channel_order"] == "BGR", where,
            "input.channel_order must be RGB or BGR");
    m.input.layout = "NCHW";
    m.input.channel_order = in["channel_order"].get<std::string>();
    if (in.contains("dtype") && in["dtype"].is_string()) m.input.dtype = in["dtype"].get<std::string>();
    if (in.contains("dynamic") && !in["dynamic"].is_null()) {
      require(in["dynamic"].is_object(), where, "input.dynamic must be null or an object");
      m.input.dynamic = true;
    }

    const json& out = j["output"];
    require(out.is_object(), where, "'output' must be an object");
    for (const char* key : {"name", "kind", "dtype", "stride"}) field(out, key, where, "output.");
    require(out["name"].is_string(), where, "output.name must be a string");
    m.output.name = out["name"].get<std::string>();
    require(out["kind"] == "labels" || out["kind"] == "logits", where, "output.kind must be one of labels, logits");
    m.output.kind = out["kind"].get<std::string>();
    const json& dt = out["dtype"];
    require(dt == "uint8" || dt == "int32" || dt == "int64" || dt == "float32" || dt == "float16", where,
            "output.dtype must be one of uint8, int32, int64, float32, float16");
    m.output.dtype = dt.get<std::string>();
    require(is_int(out["stride"]) && (out["stride"] == 1 || out["stride"] == 4), where,
            "output.stride must be 1 (input size) or 4");
    m.output.stride = out["stride"].get<int>();
    if (m.output.kind == "labels") {
      require(m.output.dtype == "uint8" || m.output.dtype == "int32" || m.output.dtype == "int64", where,
              "output.dtype must be an integer type when output.kind is labels");
    } else {
      require(m.output.dtype == "float32" || m.output.dtype == "float16", where,
              "output.dtype must be float32 or float16 when output.kind is logits");
    }

    const json& prec = j["precision"];
    require(prec == "fp32" || prec == "fp16" || prec == "int8", where, "precision must be one of fp32, fp16, int8");
    m.precision = prec.get<std::string>();

    m.pvtseg_version = optional_string(j, "pvtseg_version");
    m.checkpoint_sha256 = optional_string(j, "checkpoint_sha256");
    m.tensorrt_version = optional_string(j, "tensorrt_version");
    m.compute_capability = optional_string(j, "compute_capability");
  } catch (const json::exception& e) {  // a type error the checks above did not foresee
    throw Error(ErrorCode::kBadSidecar, where + ": " + e.what() + ".", kRegenerate);
  }
  return m;
}

ModelMeta read_meta(const std::string& artifact_or_json) {
  const std::string path = sidecar_path(artifact_or_json);
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    throw Error(ErrorCode::kBadSidecar,
                "no sidecar " + path + " beside " + artifact_or_json + ": every artifact needs its JSON sidecar.",
                "Export with `pvtseg export` (it writes both) or copy the .json that came with the file.");
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_meta(ss.str(), path);
}

void check_engine_compatibility(const ModelMeta& meta, const std::string& running_tensorrt_version,
                                const std::string& running_compute_capability, const std::string& engine_path) {
  const std::string rebuild = "Rebuild the engine on this machine: `python python/build_engine.py --onnx <model>.onnx "
                              "--engine " + engine_path + "` (engines are tied to one TensorRT version and one GPU).";
  if (!meta.tensorrt_version.empty() && !running_tensorrt_version.empty()) {
    std::vector<int> built = version_parts(meta.tensorrt_version);
    std::vector<int> running = version_parts(running_tensorrt_version);
    const size_t n = std::min<size_t>(3, std::min(built.size(), running.size()));
    bool same = n > 0;
    for (size_t i = 0; i < n; ++i) same = same && built[i] == running[i];
    if (!same) {
      throw Error(ErrorCode::kEngineVersionMismatch,
                  engine_path + " was built with TensorRT " + meta.tensorrt_version + " but this machine runs TensorRT " +
                      running_tensorrt_version + ".",
                  rebuild);
    }
  }
  if (!meta.compute_capability.empty() && !running_compute_capability.empty()) {
    if (capability_parts(meta.compute_capability) != capability_parts(running_compute_capability)) {
      throw Error(ErrorCode::kEngineDeviceMismatch,
                  engine_path + " was built for a GPU of compute capability " + meta.compute_capability +
                      " but this GPU has " + running_compute_capability + ".",
                  rebuild);
    }
  }
}

}  // namespace pvtseg
