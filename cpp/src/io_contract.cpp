// Sidecar vs graph / engine I/O checks (see io_contract.hpp).
#include "io_contract.hpp"

#include "pvtseg/error.hpp"

namespace pvtseg {
namespace detail {
namespace {

const char* kMismatchFix =
    "Use the .json written together with this artifact (`pvtseg export` writes the .onnx/.ts and "
    "its .json together; build_engine.py writes the .engine's), or re-export both.";

[[noreturn]] void mismatch(const std::string& artifact, const std::string& what) {
  throw Error(ErrorCode::kSidecarMismatch, artifact + ": " + what + ".", kMismatchFix);
}

bool is_integer_dtype(const std::string& t) {
  return t == "uint8" || t == "int8" || t == "int32" || t == "int64" || t == "int16";
}

bool is_float_dtype(const std::string& t) { return t == "float32" || t == "float16" || t == "bfloat16"; }

// "the output 'labels'", or "the output" for formats without tensor names (TorchScript).
std::string label(const char* what, const TensorInfo& t) {
  return std::string("the ") + what + (t.name.empty() ? std::string() : " '" + t.name + "'");
}

// Does a (possibly dynamic) dim match the expected size?
bool dim_ok(std::int64_t got, std::int64_t want) { return got < 0 || got == want; }

void check_kind(const ModelMeta& meta, const TensorInfo& out, const std::string& artifact) {
  const bool logits = meta.output.kind == "logits";
  if (logits && !is_float_dtype(out.dtype)) {
    mismatch(artifact, "the sidecar says output.kind = logits but " + label("output", out) + " is " + out.dtype +
                           " " + dims_string(out.dims) + " (labels?)");
  }
  if (!logits && !is_integer_dtype(out.dtype)) {
    mismatch(artifact, "the sidecar says output.kind = labels but " + label("output", out) + " is " + out.dtype +
                           " " + dims_string(out.dims) + " (logits?)");
  }
  if (out.dtype != meta.output.dtype) {
    mismatch(artifact, "the sidecar says output.dtype = " + meta.output.dtype + " but " + label("output", out) +
                           " is " + out.dtype);
  }
}

// (h, w) of the output as it should be, from the sidecar.
void expected_plane(const ModelMeta& meta, std::int64_t& h, std::int64_t& w) {
  h = meta.input.height / meta.output.stride;
  w = meta.input.width / meta.output.stride;
}

}  // namespace

std::string dims_string(const std::vector<std::int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

std::string names_list(const std::vector<std::string>& available) {
  std::string all;
  for (const auto& n : available) all += (all.empty() ? "'" : ", '") + n + "'";
  return all.empty() ? "none" : all;
}

void check_input_tensor(const ModelMeta& meta, const TensorInfo& in, const std::string& artifact) {
  if (!in.name.empty() && in.name != meta.input.name) {
    mismatch(artifact, "the sidecar names the input '" + meta.input.name + "' but the graph's input is '" + in.name +
                           "'");
  }
  const auto& d = in.dims;
  const std::string want =
      "[1, 3, " + std::to_string(meta.input.height) + ", " + std::to_string(meta.input.width) + "]";
  if (d.size() != 4 || !dim_ok(d[0], 1) || !dim_ok(d[1], 3) || !dim_ok(d[2], meta.input.height) ||
      !dim_ok(d[3], meta.input.width)) {
    mismatch(artifact, label("input", in) + " has shape " + dims_string(d) + " but the sidecar says " + want +
                           " (the C++ runtime feeds one frame at a time)");
  }
  if (in.dtype != meta.input.dtype) {
    mismatch(artifact, "the sidecar says input.dtype = " + meta.input.dtype + " but " + label("input", in) + " is " +
                           in.dtype);
  }
}

void check_output_tensor(const ModelMeta& meta, const TensorInfo& out, const std::string& artifact) {
  if (!out.name.empty() && out.name != meta.output.name) {
    mismatch(artifact, "the sidecar names the output '" + meta.output.name + "' but the graph's output is '" +
                           out.name + "'");
  }
  check_kind(meta, out, artifact);
  std::int64_t h = 0, w = 0;
  expected_plane(meta, h, w);
  const auto& d = out.dims;
  const std::string hw = std::to_string(h) + ", " + std::to_string(w);
  if (meta.output.kind == "logits") {
    if (d.size() == 4 && d[0] == 1 && d[1] != meta.num_classes && d[2] == h && d[3] == w) {
      mismatch(artifact, "the sidecar says num_classes = " + std::to_string(meta.num_classes) +
                             " but the logits have " + std::to_string(d[1]) + " classes " + dims_string(d));
    }
    if (d.size() != 4 || d[0] != 1 || d[1] != meta.num_classes || d[2] != h || d[3] != w) {
      mismatch(artifact, "the logits have shape " + dims_string(d) + " but the sidecar says [1, " +
                             std::to_string(meta.num_classes) + ", " + hw + "] (input size / output.stride " +
                             std::to_string(meta.output.stride) + ", batch 1)");
    }
    return;
  }
  const bool ok = (d.size() == 2 && d[0] == h && d[1] == w) || (d.size() == 3 && d[0] == 1 && d[1] == h && d[2] == w) ||
                  (d.size() == 4 && d[0] == 1 && d[1] == 1 && d[2] == h && d[3] == w);
  if (!ok) {
    mismatch(artifact, "the labels have shape " + dims_string(d) + " but the sidecar says [1, " + hw +
                           "] (input size / output.stride " + std::to_string(meta.output.stride) + ", batch 1)");
  }
}

}  // namespace detail
}  // namespace pvtseg
