// pvtseg: the sidecar (`x.json` beside `x.ts` / `x.engine` / `x.onnx`).
//
// Mirrors python/pvtseg/meta.py: same fields, same validation rules, so both runtimes
// read the preprocessing from one place and nothing is hard-coded.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace pvtseg {

// Class colours in the sidecar's order: RGB, one per class id.
using Palette = std::vector<cv::Vec3b>;

struct InputSpec {
  std::string name = "input";
  int height = 0;
  int width = 0;
  bool dynamic = false;               // the sidecar's input.dynamic is not null
  // input.dynamic's [min, max] per axis; {0, 0} for an axis it does not list.
  std::array<int, 2> dynamic_batch{{0, 0}};
  std::array<int, 2> dynamic_height{{0, 0}};
  std::array<int, 2> dynamic_width{{0, 0}};
  std::string dtype = "float32";      // float32 | float16
  std::string layout = "NCHW";
  std::string channel_order = "RGB";  // "RGB" or "BGR": what the model sees
  std::array<double, 3> mean{{0.485, 0.456, 0.406}};  // per channel, on [0, 1] pixels
  std::array<double, 3> std{{0.229, 0.224, 0.225}};
};

struct OutputSpec {
  std::string name = "labels";
  std::string kind = "labels";  // "labels" (integer class ids) or "logits" (N x C x h x w)
  std::string dtype = "uint8";  // uint8 | int32 | int64 | float32 | float16
  int stride = 1;               // 1: at the input size, 4: at 1/4 of it
};

// Per-channel affine form of the normalization, as the Python runtime computes it:
// scale = float(1 / (255 * std)), bias = float(-mean / std), model_in = float(x * scale) + bias.
struct Normalization {
  std::array<float, 3> scale;
  std::array<float, 3> bias;
};
Normalization normalization(const InputSpec& in);

struct ModelMeta {
  int schema_version = 1;
  std::string arch;
  int num_classes = 0;
  std::vector<std::string> class_names;
  Palette palette;  // RGB
  InputSpec input;
  OutputSpec output;
  std::string precision = "fp32";
  int batch = 1;                   // the export's batch (optional top-level "batch")
  std::string pvtseg_version;
  std::string checkpoint_sha256;   // empty when the sidecar has null
  // Engines only (empty otherwise): as written by build_engine.py.
  std::string tensorrt_version;    // e.g. "10.3.0"
  std::string compute_capability;  // e.g. "8.7"
};

// The schema version this library reads (python/pvtseg/meta.py SCHEMA_VERSION).
constexpr int kSchemaVersion = 1;

// `models/build/x.engine` -> `models/build/x.json`.
std::string sidecar_path(const std::string& artifact);

// Parse and validate sidecar JSON text; `where` names the source in error messages.
// Throws Error(kBadSidecar) naming the bad field. Refuses what python/pvtseg/meta.py
// validate refuses: missing fields, num_classes outside 1..255, class_names / palette not
// num_classes long, non-finite mean, non-finite or non-positive std, sizes that are not
// positive multiples of 32, bad dynamic ranges (or ones that exclude the input size),
// unknown layout / channel order / output kind / dtype / stride / precision, a labels
// output with a float dtype or a logits output with an integer one.
ModelMeta parse_meta(const std::string& json_text, const std::string& where = "sidecar");

// Read and validate the sidecar beside an artifact (or a .json path directly).
// Throws Error(kBadSidecar) when it is missing, unreadable or off-schema.
ModelMeta read_meta(const std::string& artifact_or_json);

// Check an engine's sidecar against the running TensorRT version ("10.3.0") and GPU
// compute capability ("8.7"). Versions compare on major.minor.patch (as many parts as
// both give); capabilities on major.minor. Empty sidecar fields are not checked.
// Throws Error(kEngineVersionMismatch / kEngineDeviceMismatch) telling the user to
// rebuild the engine with build_engine.py on this machine.
void check_engine_compatibility(const ModelMeta& meta, const std::string& running_tensorrt_version,
                                const std::string& running_compute_capability,
                                const std::string& engine_path = "engine");

}  // namespace pvtseg
