// Sidecar reading and validation: the same rules as python/pvtseg/meta.py.
#include "pvtseg/meta.hpp"

#include <cmath>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "engine_cache.hpp"
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

std::array<double, 3> three_finite(const json& v, const std::string& where, const std::string& name) {
  require(v.is_array() && v.size() == 3, where, name + " must be 3 numbers");
  std::array<double, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    require(v[i].is_number(), where, name + " must be 3 numbers");
    out[i] = v[i].get<double>();
    require(std::isfinite(out[i]), where, name + " must be finite, got " + v.dump());
  }
  return out;
}

std::string non_empty_string(const json& v, const std::string& where, const std::string& name) {
  require(v.is_string() && !v.get<std::string>().empty(), where, name + " must be a non-empty string");
  return v.get<std::string>();
}

bool one_of(const json& v, std::initializer_list<const char*> allowed) {
  if (!v.is_string()) return false;
  for (const char* a : allowed) {
    if (v.get<std::string>() == a) return true;
  }
  return false;
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

namespace {

void parse_classes(const json& j, const std::string& where, ModelMeta& m) {
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
  const std::string pal_msg = "palette must be " + std::to_string(m.num_classes) + " [r, g, b] triples of ints 0..255";
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
}

// input.dynamic: null, or {"batch"|"height"|"width": [min, max]} with 0 < min <= max.
void parse_dynamic(const json& dyn, const std::string& where, InputSpec& in) {
  if (dyn.is_null()) return;
  require(dyn.is_object(), where, "input.dynamic must be null or an object");
  in.dynamic = true;
  for (auto it = dyn.begin(); it != dyn.end(); ++it) {
    const std::string axis = it.key();
    const json& r = it.value();
    require(axis == "batch" || axis == "height" || axis == "width", where,
            "input.dynamic has unknown axis '" + axis + "'");
    require(r.is_array() && r.size() == 2 && is_int(r[0]) && is_int(r[1]) && r[0].get<long long>() > 0 &&
                r[0].get<long long>() <= r[1].get<long long>() && r[1].get<long long>() <= 1 << 16,
            where, "input.dynamic." + axis + " must be [min, max] with 0 < min <= max, got " + r.dump());
    const std::array<int, 2> range{{r[0].get<int>(), r[1].get<int>()}};
    (axis == "batch" ? in.dynamic_batch : axis == "height" ? in.dynamic_height : in.dynamic_width) = range;
  }
  for (const auto& [axis, range, size] : {std::make_tuple("height", in.dynamic_height, in.height),
                                          std::make_tuple("width", in.dynamic_width, in.width)}) {
    require(range[1] == 0 || (range[0] <= size && size <= range[1]), where,
            std::string("input.") + axis + " " + std::to_string(size) + " is outside input.dynamic." + axis + " [" +
                std::to_string(range[0]) + ", " + std::to_string(range[1]) + "]");
  }
}

void parse_input(const json& j, const std::string& where, InputSpec& in) {
  const json& v = j["input"];
  require(v.is_object(), where, "'input' must be an object");
  for (const char* key : {"name", "height", "width", "mean", "std", "layout", "channel_order"}) {
    field(v, key, where, "input.");
  }
  in.name = non_empty_string(v["name"], where, "input.name");
  for (const char* key : {"height", "width"}) {
    const json& d = v[key];
    require(is_int(d) && d.get<long long>() > 0 && d.get<long long>() % 32 == 0 && d.get<long long>() <= 1 << 16,
            where, std::string("input.") + key + " must be a positive multiple of 32, got " + d.dump());
  }
  in.height = v["height"].get<int>();
  in.width = v["width"].get<int>();
  in.mean = three_finite(v["mean"], where, "input.mean");
  in.std = three_finite(v["std"], where, "input.std");
  for (double s : in.std) require(s > 0.0, where, "input.std must be positive, got " + v["std"].dump());
  require(v["layout"] == "NCHW", where, "input.layout must be NCHW");
  require(one_of(v["channel_order"], {"RGB", "BGR"}), where, "input.channel_order must be RGB or BGR");
  in.layout = "NCHW";
  in.channel_order = v["channel_order"].get<std::string>();
  if (v.contains("dtype") && !v["dtype"].is_null()) {
    require(one_of(v["dtype"], {"float32", "float16"}), where, "input.dtype must be float32 or float16");
    in.dtype = v["dtype"].get<std::string>();
  }
  parse_dynamic(v.contains("dynamic") ? v["dynamic"] : json(), where, in);
}

void parse_output(const json& j, const std::string& where, OutputSpec& out) {
  const json& v = j["output"];
  require(v.is_object(), where, "'output' must be an object");
  for (const char* key : {"name", "kind", "dtype", "stride"}) field(v, key, where, "output.");
  out.name = non_empty_string(v["name"], where, "output.name");
  require(one_of(v["kind"], {"labels", "logits"}), where, "output.kind must be one of labels, logits");
  out.kind = v["kind"].get<std::string>();
  require(one_of(v["dtype"], {"uint8", "int32", "int64", "float32", "float16"}), where,
          "output.dtype must be one of uint8, int32, int64, float32, float16");
  out.dtype = v["dtype"].get<std::string>();
  require(is_int(v["stride"]) && (v["stride"] == 1 || v["stride"] == 4), where,
          "output.stride must be 1 (input size) or 4");
  out.stride = v["stride"].get<int>();
  if (out.kind == "labels") {
    require(out.dtype == "uint8" || out.dtype == "int32" || out.dtype == "int64", where,
            "output.dtype must be an integer type when output.kind is labels");
  } else {
    require(out.dtype == "float32" || out.dtype == "float16", where,
            "output.dtype must be float32 or float16 when output.kind is logits");
  }
}

void parse_top(const json& j, const std::string& where, ModelMeta& m) {
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
  require(one_of(j["precision"], {"fp32", "fp16", "int8"}), where, "precision must be one of fp32, fp16, int8");
  m.precision = j["precision"].get<std::string>();
  if (j.contains("batch") && !j["batch"].is_null()) {
    require(is_int(j["batch"]) && j["batch"].get<long long>() >= 1, where, "batch must be an int >= 1");
    m.batch = j["batch"].get<int>();
  }
  m.pvtseg_version = optional_string(j, "pvtseg_version");
  m.checkpoint_sha256 = optional_string(j, "checkpoint_sha256");
  m.tensorrt_version = optional_string(j, "tensorrt_version");
  m.compute_capability = optional_string(j, "compute_capability");
}

json parse_json(const std::string& text, const std::string& where) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    // JSON has no NaN / Infinity; Python's json.dumps writes them for non-finite floats.
    const bool non_finite = text.find("NaN") != std::string::npos || text.find("Infinity") != std::string::npos;
    throw Error(ErrorCode::kBadSidecar,
                where + ": cannot parse JSON (" + e.what() + ")" +
                    (non_finite ? "; it holds a non-finite number (NaN / Infinity), e.g. in input.mean / std." : "."),
                kRegenerate);
  }
}

}  // namespace

ModelMeta parse_meta(const std::string& json_text, const std::string& where) {
  const json j = parse_json(json_text, where);
  require(j.is_object(), where, "top level must be a JSON object");
  ModelMeta m;
  try {
    parse_top(j, where, m);
    parse_classes(j, where, m);
    parse_input(j, where, m.input);
    parse_output(j, where, m.output);
  } catch (const json::exception& e) {  // a type error the checks above did not foresee
    throw Error(ErrorCode::kBadSidecar, where + ": " + e.what() + ".", kRegenerate);
  }
  return m;
}

namespace {

std::string file_name(const std::string& path) {
  const size_t slash = path.find_last_of("/\\");
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// meta.py check_artifact: when the sidecar records {"bytes", "sha256"} for this file under
// "artifacts", the file must match (an export interrupted, or still running, or a graph
// from another export copied beside the sidecar). Files it does not list pass.
void check_artifact(const std::string& artifact, const std::string& json_text, const std::string& where) {
  const json j = json::parse(json_text);
  const auto listed = j.find("artifacts");
  if (listed == j.end() || !listed->is_object()) return;
  const auto entry = listed->find(file_name(artifact));
  if (entry == listed->end() || !entry->is_object()) return;
  std::ifstream f(artifact, std::ios::binary | std::ios::ate);
  if (!f) return;
  const long long size = static_cast<long long>(f.tellg());
  const auto bytes = entry->find("bytes");
  const auto sha = entry->find("sha256");
  const bool same = bytes != entry->end() && bytes->is_number_integer() && bytes->get<long long>() == size &&
                    sha != entry->end() && sha->is_string() && sha->get<std::string>() == detail::sha256_file(artifact);
  if (!same) {
    throw Error(ErrorCode::kSidecarMismatch,
                artifact + " does not match its sidecar " + where + " (" + std::to_string(size) +
                    " bytes; the sidecar describes " + (bytes != entry->end() ? bytes->dump() : std::string("?")) +
                    " bytes with another sha256): the file was truncated or replaced, or an export into this folder "
                    "was interrupted or is still running.",
                "Re-export the model with `pvtseg export` (or, if you changed the file on purpose, remove its entry "
                "under 'artifacts' in the sidecar).");
  }
}

}  // namespace

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
  ModelMeta m = parse_meta(ss.str(), path);
  if (path != artifact_or_json) check_artifact(artifact_or_json, ss.str(), path);
  return m;
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
