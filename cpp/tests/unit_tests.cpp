// ctest cases for the library's internal pieces: the sidecar-vs-graph checks, the output
// contract's postprocess, the engine cache key / files, the CUDA preprocessing math's host
// reference (vs OpenCV), and the LibTorch backend refusing mismatched sidecars.
#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "backend.hpp"
#include "engine_cache.hpp"
#include "io_contract.hpp"
#include "preprocess_math.hpp"
#include "test_util.hpp"

namespace pvtseg_test {
namespace {

using pvtseg::ErrorCode;
using pvtseg::detail::TensorInfo;

pvtseg::ModelMeta contract_meta(const std::string& kind, const std::string& dtype, int stride, int classes) {
  pvtseg::ModelMeta m;
  m.num_classes = classes;
  m.input.height = 128;
  m.input.width = 160;
  m.output.name = kind;
  m.output.kind = kind;
  m.output.dtype = dtype;
  m.output.stride = stride;
  return m;
}

void expect_mismatch(const std::string& what, const pvtseg::ModelMeta& m, const TensorInfo& t, bool input,
                     const std::string& must_say) {
  expect_error(ErrorCode::kSidecarMismatch, what, [&] {
    if (input) {
      pvtseg::detail::check_input_tensor(m, t, "x.engine");
    } else {
      pvtseg::detail::check_output_tensor(m, t, "x.engine");
    }
  }, must_say);
}

}  // namespace

// ---------------------------------------------------------------------------------------
int test_io_contract() {
  using pvtseg::detail::check_input_tensor;
  using pvtseg::detail::check_output_tensor;
  const auto labels = contract_meta("labels", "uint8", 1, 11);
  const auto logits = contract_meta("logits", "float32", 1, 11);
  const auto logits4 = contract_meta("logits", "float32", 4, 11);
  // What passes: every labels layout, stride 1 and 4 logits, static and dynamic inputs.
  check_output_tensor(labels, {"labels", {1, 128, 160}, "uint8"}, "x");
  check_output_tensor(labels, {"labels", {1, 1, 128, 160}, "uint8"}, "x");
  check_output_tensor(labels, {"", {128, 160}, "uint8"}, "x");
  check_output_tensor(logits, {"logits", {1, 11, 128, 160}, "float32"}, "x");
  check_output_tensor(logits4, {"logits", {1, 11, 32, 40}, "float32"}, "x");
  check_input_tensor(labels, {"input", {1, 3, 128, 160}, "float32"}, "x");
  check_input_tensor(labels, {"input", {-1, 3, -1, -1}, "float32"}, "x");
  ++g_checks;
  // What is refused, each with a message that says what differs.
  expect_mismatch("logits graph, labels sidecar", labels, {"labels", {1, 11, 128, 160}, "float32"}, false,
                  "output.kind = labels");
  expect_mismatch("labels graph, logits sidecar", logits, {"logits", {1, 128, 160}, "uint8"}, false,
                  "output.kind = logits");
  expect_mismatch("num_classes 5 on 11-class logits", contract_meta("logits", "float32", 1, 5),
                  {"logits", {1, 11, 128, 160}, "float32"}, false, "num_classes = 5");
  expect_mismatch("stride 4 sidecar, stride 1 logits", logits4, {"logits", {1, 11, 128, 160}, "float32"}, false,
                  "[1, 11, 32, 40]");
  expect_mismatch("batch 2 labels", labels, {"labels", {2, 128, 160}, "uint8"}, false, "[2, 128, 160]");
  expect_mismatch("labels int32, sidecar uint8", labels, {"labels", {1, 128, 160}, "int32"}, false,
                  "output.dtype = uint8");
  expect_mismatch("logits float16, sidecar float32", logits, {"logits", {1, 11, 128, 160}, "float16"}, false,
                  "float16");
  expect_mismatch("output name", labels, {"out", {1, 128, 160}, "uint8"}, false, "'out'");
  expect_mismatch("input name", labels, {"images", {1, 3, 128, 160}, "float32"}, true, "'images'");
  expect_mismatch("batch 2 input", labels, {"input", {2, 3, 128, 160}, "float32"}, true, "[2, 3, 128, 160]");
  expect_mismatch("input height", labels, {"input", {1, 3, 64, 160}, "float32"}, true, "[1, 3, 128, 160]");
  expect_mismatch("input dtype", labels, {"input", {1, 3, 128, 160}, "float16"}, true, "input.dtype = float32");
  return finish("io_contract");
}

// ---------------------------------------------------------------------------------------
namespace {

// Bilinear, align_corners=False (half-pixel centres, edge clamp), in double: an independent
// statement of what cv::resize(INTER_LINEAR) / F.interpolate(bilinear) compute.
double bilinear_at(const cv::Mat& plane, int x, int y, cv::Size frame) {
  auto tap = [](int d, int src, int dst, int& i0, int& i1, double& w) {
    const double s = std::max((d + 0.5) * src / dst - 0.5, 0.0);
    i0 = std::min(static_cast<int>(std::floor(s)), src - 1);
    i1 = std::min(i0 + 1, src - 1);
    w = s - i0;
  };
  int x0, x1, y0, y1;
  double wx, wy;
  tap(x, plane.cols, frame.width, x0, x1, wx);
  tap(y, plane.rows, frame.height, y0, y1, wy);
  auto v = [&](int yy, int xx) { return static_cast<double>(plane.at<float>(yy, xx)); };
  return (v(y0, x0) * (1 - wx) + v(y0, x1) * wx) * (1 - wy) + (v(y1, x0) * (1 - wx) + v(y1, x1) * wx) * wy;
}

double contract_agreement(const pvtseg::detail::NetOutput& net, cv::Size frame, const cv::Mat& labels) {
  size_t same = 0;
  for (int y = 0; y < frame.height; ++y) {
    for (int x = 0; x < frame.width; ++x) {
      int best = 0;
      double best_v = -1e300;
      for (int c = 0; c < net.channels; ++c) {
        const double v = bilinear_at(net.logits.rowRange(c * net.height, (c + 1) * net.height), x, y, frame);
        if (v > best_v) best_v = v, best = c;
      }
      same += labels.at<uchar>(y, x) == best;
    }
  }
  return static_cast<double>(same) / static_cast<double>(frame.area());
}

}  // namespace

int test_postprocess() {
  pvtseg::detail::NetOutput net;
  net.is_logits = true;
  net.channels = 11;
  net.height = 32;
  net.width = 40;
  net.logits.create(net.channels * net.height, net.width, CV_32FC1);
  cv::RNG rng(7);
  rng.fill(net.logits, cv::RNG::UNIFORM, -4.0, 4.0);
  cv::Mat labels, best;
  // Upsampled (stride 4 to the input size, odd frames) and downsampled (a small frame).
  for (const cv::Size frame : {cv::Size(160, 128), cv::Size(333, 251), cv::Size(480, 360), cv::Size(21, 13)}) {
    pvtseg::detail::postprocess(net, frame, labels, best);
    CHECK(labels.type() == CV_8UC1 && labels.size() == frame);
    const double agree = contract_agreement(net, frame, labels);
    std::printf("logits 11x32x40 -> %dx%d: agreement with the double-precision contract %.4f%%\n", frame.width,
                frame.height, 100.0 * agree);
    CHECK(agree >= 0.9999);
  }
  // Equal logits everywhere: the first class wins, as torch.argmax / numpy do.
  net.logits.setTo(cv::Scalar::all(1.5));
  pvtseg::detail::postprocess(net, cv::Size(50, 30), labels, best);
  CHECK(cv::countNonZero(labels) == 0);
  // Labels at the frame's size are copied unchanged.
  pvtseg::detail::NetOutput lab;
  lab.labels = cv::Mat(30, 50, CV_8UC1);
  rng.fill(lab.labels, cv::RNG::UNIFORM, 0, 11);
  pvtseg::detail::postprocess(lab, cv::Size(50, 30), labels, best);
  CHECK(cv::countNonZero(labels != lab.labels) == 0);
  return finish("postprocess");
}

// ---------------------------------------------------------------------------------------
namespace {

void check_sha256_vectors() {
  using pvtseg::detail::sha256_hex;
  // FIPS 180-4 / NIST example vectors.
  CHECK(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha256_hex(two_blocks.data(), two_blocks.size()) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  CHECK(sha256_hex(million.data(), million.size()) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

pvtseg::InputSpec cache_input(bool dynamic) {
  pvtseg::InputSpec in;
  in.height = 128;
  in.width = 160;
  if (dynamic) {  // make_test_data.py CACHE_DYNAMIC
    in.dynamic = true;
    in.dynamic_batch = {{1, 8}};
    in.dynamic_height = {{64, 256}};
    in.dynamic_width = {{96, 320}};
  }
  return in;
}

pvtseg::detail::EngineCacheKey key_for(const std::string& onnx, const std::string& trt, const std::string& cc,
                                       const std::string& precision, bool dynamic = false, int height = 128) {
  pvtseg::InputSpec in = cache_input(dynamic);
  in.height = height;
  return pvtseg::detail::make_engine_cache_key(onnx, in, trt, cc, precision);
}

void check_cache_keys(const std::string& tmp) {
  using pvtseg::detail::engine_cache_path;
  const std::string onnx = tmp + "/cache_model.onnx";
  write_text(onnx, "pretend ONNX bytes");
  std::remove((onnx + ".data").c_str());
  const auto base = key_for(onnx, "10.3.0.30", "8.7", "fp16");
  const std::string sha = pvtseg::detail::sha256_hex("pretend ONNX bytes", 18);
  // The JSON engine_cache.py hashes: json.dumps(fields, sort_keys=True).
  CHECK(pvtseg::detail::engine_cache_key_text(base) ==
        "{\"cc\": \"8.7\", \"onnx_sha256\": \"" + sha + "\", \"precision\": \"fp16\", \"profile\": {\"dynamic\": "
        "null, \"height\": 128, \"width\": 160}, \"pvtseg\": \"" + std::string(pvtseg::version()) +
        "\", \"tensorrt\": \"10.3.0.30\"}");
  CHECK(key_for(onnx, "10.3.0.30", "8.7", "fp16", true).profile_json ==
        "{\"dynamic\": {\"batch\": [1, 8], \"height\": [64, 256], \"width\": [96, 320]}, \"height\": 128, "
        "\"width\": 160}");
  const std::string path = engine_cache_path(onnx, "", base);
  std::cout << "key text: " << pvtseg::detail::engine_cache_key_text(base) << "\npath: " << path << "\n";
  CHECK(path == tmp + "/cache_model.fp16.trt10.3.0.30.sm87." + pvtseg::detail::engine_cache_key(base).substr(0, 12) +
                    ".engine");
  CHECK(engine_cache_path(onnx, "/var/cache/pvtseg", base).rfind("/var/cache/pvtseg/cache_model.fp16.", 0) == 0);
  // Every key field changes the file, so a stale engine is never loaded.
  for (const auto& other : {key_for(onnx, "10.3.1.5", "8.7", "fp16"), key_for(onnx, "10.3.0.30", "7.2", "fp16"),
                            key_for(onnx, "10.3.0.30", "8.7", "fp32"), key_for(onnx, "10.3.0.30", "8.7", "fp16", true),
                            key_for(onnx, "10.3.0.30", "8.7", "fp16", false, 96)}) {
    CHECK(engine_cache_path(onnx, "", other) != path);
  }
  write_text(onnx, "pretend ONNX bytes, re-exported");
  CHECK(engine_cache_path(onnx, "", key_for(onnx, "10.3.0.30", "8.7", "fp16")) != path);
  write_text(onnx + ".data", "external weights");
  const std::string both = pvtseg::detail::sha256_file(onnx) + pvtseg::detail::sha256_hex("external weights", 16);
  CHECK(pvtseg::detail::onnx_digest(onnx) == pvtseg::detail::sha256_hex(both.data(), both.size()));
  expect_error(ErrorCode::kInvalidArgument, "engine precision int4",
               [&] { key_for(onnx, "10.3.0.30", "8.7", "int4"); });
  expect_error(ErrorCode::kModelNotFound, "hashing a missing .onnx",
               [&] { key_for(tmp + "/missing.onnx", "10.3.0.30", "8.7", "fp32"); });
}

// The C++ keys and names equal engine_cache.py's for the same file and sidecar.
void check_cache_vs_python(const std::string& dir) {
  const auto lines = read_lines(dir + "/engine_cache_ref.txt");
  CHECK(lines.size() == 2);
  for (const auto& line : lines) {
    std::istringstream ls(line);
    std::string which, py_key, py_name;
    ls >> which >> py_key >> py_name;
    const auto key = key_for(dir + "/model.ts", "10.3.0.30", "8.7", "fp16", which == "dynamic");
    const std::string path = pvtseg::detail::engine_cache_path(dir + "/model.ts", "", key);
    std::cout << which << ": C++ " << path.substr(dir.size() + 1) << ", Python " << py_name << "\n";
    CHECK(pvtseg::detail::engine_cache_key(key) == py_key);
    CHECK(path == dir + "/" + py_name);
  }
}

void check_cache_files(const std::string& dir, const std::string& tmp) {
  namespace fs = std::filesystem;
  const std::string target = tmp + "/atomic.engine";
  pvtseg::detail::write_file_atomic(target, "first", 5);
  pvtseg::detail::write_file_atomic(target, "second!", 7);
  CHECK(read_text(target) == "second!");
  for (const auto& entry : fs::directory_iterator(tmp)) {
    CHECK(entry.path().filename().string().find(".atomic.engine.") != 0);  // no temp file left behind
  }
  expect_error(ErrorCode::kEngineBuildFailed, "write into a missing folder",
               [&] { pvtseg::detail::write_file_atomic(tmp + "/no/such/dir/x.engine", "x", 1); });
  // A cached engine counts only with a valid sidecar that records its key.
  const auto key = key_for(dir + "/model.ts", "10.3.0.30", "8.7", "fp16");
  const std::string text = pvtseg::detail::cached_engine_sidecar(read_text(dir + "/model.json"), key);
  const pvtseg::ModelMeta m = pvtseg::parse_meta(text, "cached engine sidecar");
  CHECK(m.precision == "fp16" && m.tensorrt_version == "10.3.0.30" && m.compute_capability == "8.7");
  const std::string engine = tmp + "/cached.engine", key_hex = pvtseg::detail::engine_cache_key(key);
  std::remove((tmp + "/cached.json").c_str());
  write_text(engine, "engine bytes");
  CHECK(!pvtseg::detail::cached_engine_usable(engine, key_hex));  // no sidecar yet
  write_text(tmp + "/cached.json", text);
  CHECK(pvtseg::detail::cached_engine_usable(engine, key_hex));
  CHECK(!pvtseg::detail::cached_engine_usable(engine, std::string(64, '0')));  // another key
  write_text(tmp + "/cached.json", replace_once(text, "\"NCHW\"", "\"NHWC\""));
  CHECK(!pvtseg::detail::cached_engine_usable(engine, key_hex));  // a sidecar the runtime refuses
  // The file hash agrees with Python's hashlib (make_test_data.py wrote it).
  const std::string py = read_text(dir + "/model_sha256.txt");
  CHECK(!py.empty() && py.substr(0, 64) == pvtseg::detail::sha256_file(dir + "/model.ts"));
}

void check_engine_profile() {
  using pvtseg::detail::engine_profile;
  const auto fixed = engine_profile(cache_input(false), {1, 3, 128, 160}, "x.onnx");
  CHECK(fixed.min == fixed.max && fixed.opt[2] == 128 && fixed.opt[3] == 160);
  const auto dyn = engine_profile(cache_input(true), {-1, 3, -1, -1}, "x.onnx");
  CHECK((dyn.min == std::array<std::int64_t, 4>{1, 3, 64, 96}));
  CHECK((dyn.opt == std::array<std::int64_t, 4>{1, 3, 128, 160}));
  CHECK((dyn.max == std::array<std::int64_t, 4>{8, 3, 256, 320}));
  expect_error(ErrorCode::kEngineBuildFailed, "dynamic ONNX, sidecar without ranges",
               [] { engine_profile(cache_input(false), {1, 3, -1, -1}, "x.onnx"); }, "height");
}

}  // namespace

int test_engine_cache(const std::string& dir, const std::string& tmp) {
  check_sha256_vectors();
  check_cache_keys(tmp);
  check_engine_profile();
  if (!have_data(dir)) return g_failures ? finish("engine_cache") : 77;
  check_cache_files(dir, tmp);
  check_cache_vs_python(dir);
  return finish("engine_cache");
}

// ---------------------------------------------------------------------------------------
namespace {

struct PreprocessDiff {
  double max_levels = 0.0;  // max |diff| in u8 levels (diff / scale)
  size_t differing = 0, total = 0;
};

// The shared CUDA math's host reference vs the OpenCV path (cv::resize INTER_LINEAR + the
// runtime's normalization) for one frame and one network size.
PreprocessDiff compare_preprocess(const cv::Mat& bgr, cv::Size size) {
  pvtseg::InputSpec in;
  in.height = size.height;
  in.width = size.width;
  const pvtseg::Normalization norm = pvtseg::normalization(in);
  const size_t plane = static_cast<size_t>(size.area());
  std::vector<float> ocv(3 * plane), ref(3 * plane);
  cv::Mat scratch;
  pvtseg::detail::preprocess_cpu(bgr, in, scratch, ocv.data());
  const auto params = pvtseg::detail::pp::make_params(norm.scale.data(), norm.bias.data(), true);
  pvtseg::detail::pp::preprocess_reference(bgr.data, bgr.cols, bgr.rows, bgr.step[0], ref.data(), size.width,
                                           size.height, params);
  PreprocessDiff d;
  for (size_t i = 0; i < 3 * plane; ++i) {
    const double levels = std::abs(static_cast<double>(ocv[i]) - ref[i]) / norm.scale[i / plane];
    d.max_levels = std::max(d.max_levels, levels);
    d.differing += levels > 1e-3;
  }
  d.total = 3 * plane;
  return d;
}

}  // namespace

// Tolerance, and why: the shared math emulates OpenCV's 8-bit INTER_LINEAR (11-bit
// fixed-point weights, its SIMD vertical pass; see preprocess_math.hpp), so against the
// OpenCV that Python's cv2 and this build use it is exact (measured: 0 of 26.8 M values).
// An OpenCV build that takes its scalar path instead rounds the vertical pass exactly and
// differs by one u8 level on ~10% of values; the test allows at most 1 u8 level
// (1 / (255 * std) ~ 0.0175 after normalization) on at most 0.1% of values, so such a
// build fails here and says why, rather than silently losing CPU / GPU parity.
int test_preprocess_reference(const std::string& dir) {
  if (!have_data(dir)) return 77;
  PreprocessDiff all;
  for (const auto& name : case_names(dir)) {
    const cv::Mat bgr = cv::imread(dir + "/frames/" + name + ".png", cv::IMREAD_COLOR);
    CHECK(!bgr.empty());
    // Down and up, network sizes and odd ones.
    const std::vector<cv::Size> sizes = {{160, 128}, {161, 97}, {480, 384}, {640, 480}, {701, 523}, {33, 17}};
    for (const cv::Size size : sizes) {
      const PreprocessDiff d = compare_preprocess(bgr, size);
      std::printf("%-24s %4dx%-4d -> %3dx%-3d max %.3f u8 levels, %.3f%% of values differ\n", name.c_str(),
                  bgr.cols, bgr.rows, size.width, size.height, d.max_levels, 100.0 * d.differing / d.total);
      CHECK(d.max_levels <= 1.0 + 1e-3 && d.differing <= d.total / 1000);
      all.max_levels = std::max(all.max_levels, d.max_levels);
      all.differing += d.differing;
      all.total += d.total;
    }
    // The frame's own size (no resize) and an exact 2x downscale (OpenCV switches to
    // INTER_AREA, a 2x2 mean rounded half up) are exact in every OpenCV build.
    std::vector<cv::Size> exact = {bgr.size()};
    if (bgr.cols % 2 == 0 && bgr.rows % 2 == 0) exact.emplace_back(bgr.cols / 2, bgr.rows / 2);
    for (const cv::Size size : exact) {
      const PreprocessDiff d = compare_preprocess(bgr, size);
      std::printf("%-24s %4dx%-4d -> %3dx%-3d (exact case) max %.3f u8 levels\n", name.c_str(), bgr.cols, bgr.rows,
                  size.width, size.height, d.max_levels);
      CHECK(d.max_levels == 0.0);
    }
  }
  std::printf("preprocess_reference: max diff %.3f u8 levels (%.5f after normalization with std 0.224), "
              "%.4f%% of %zu values differ\n",
              all.max_levels, all.max_levels / (255.0 * 0.224), 100.0 * all.differing / all.total, all.total);
  return finish("preprocess_reference");
}

// ---------------------------------------------------------------------------------------
namespace {

// DATA/<model>.ts copied to TMP/<name>.ts with its sidecar edited by `edit`.
std::string with_sidecar(const std::string& dir, const std::string& tmp, const std::string& model,
                         const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  copy_file(dir + "/" + model + ".ts", tmp + "/" + name + ".ts");
  nlohmann::json j = nlohmann::json::parse(read_text(dir + "/" + model + ".json"));
  edit(j);
  write_text(tmp + "/" + name + ".json", j.dump(2));
  return tmp + "/" + name + ".ts";
}

void set_classes(nlohmann::json& j, int n) {
  j["num_classes"] = n;
  j["class_names"] = std::vector<std::string>(j["class_names"].begin(), j["class_names"].begin() + n);
  j["palette"] = std::vector<nlohmann::json>(j["palette"].begin(), j["palette"].begin() + n);
}

void expect_load_mismatch(const std::string& what, const std::string& path, const std::string& must_say) {
  expect_error(ErrorCode::kSidecarMismatch, what, [&] { pvtseg::Segmenter::create(cpu_options(path)); }, must_say);
}

}  // namespace

// A sidecar's "artifacts" digest (meta.py check_artifact): the listed graph must match it.
void check_artifact_digest(const std::string& dir, const std::string& tmp) {
  const std::string sub = tmp + "/digest";
  std::filesystem::create_directories(sub);
  const std::string model = sub + "/model.ts";
  copy_file(dir + "/model.ts", model);
  nlohmann::json j = nlohmann::json::parse(read_text(dir + "/model.json"));
  j["artifacts"] = {{"model.ts", {{"bytes", std::filesystem::file_size(model)},
                                  {"sha256", read_text(dir + "/model_sha256.txt").substr(0, 64)}}}};
  write_text(sub + "/model.json", j.dump(2));
  CHECK(pvtseg::read_meta(model).num_classes == 11);  // the listed digest matches: accepted
  write_text(model, read_text(dir + "/model.ts") + "trailing bytes");
  expect_error(ErrorCode::kSidecarMismatch, "graph that does not match the sidecar's digest",
               [&] { pvtseg::Segmenter::create(cpu_options(model)); }, "does not match its sidecar");
  CHECK(pvtseg::read_meta(sub + "/model.json").num_classes == 11);  // the .json alone is not checked
}

// Finding 6 of issue 12: a sidecar that disagrees with its TorchScript graph is refused.
int test_sidecar_mismatch(const std::string& dir, const std::string& tmp) {
  if (!have_data(dir) || !have_data(dir, "model_logits") || !have_data(dir, "model_logits4")) return 77;
  expect_load_mismatch("labels graph, sidecar says logits",
                       with_sidecar(dir, tmp, "model", "mm_kind", [](nlohmann::json& j) {
                         j["output"]["kind"] = "logits", j["output"]["dtype"] = "float32";
                       }), "output.kind = logits");
  expect_load_mismatch("logits graph, sidecar says labels",
                       with_sidecar(dir, tmp, "model_logits", "mm_kind2", [](nlohmann::json& j) {
                         j["output"]["kind"] = "labels", j["output"]["dtype"] = "uint8";
                       }), "output.kind = labels");
  expect_load_mismatch("11-class logits, sidecar says 5 classes",
                       with_sidecar(dir, tmp, "model_logits", "mm_classes", [](nlohmann::json& j) { set_classes(j, 5); }),
                       "num_classes = 5");
  expect_load_mismatch("stride-4 logits, sidecar says stride 1",
                       with_sidecar(dir, tmp, "model_logits4", "mm_stride",
                                    [](nlohmann::json& j) { j["output"]["stride"] = 1; }),
                       "the logits have shape");
  expect_load_mismatch("uint8 labels, sidecar says int32",
                       with_sidecar(dir, tmp, "model", "mm_dtype",
                                    [](nlohmann::json& j) { j["output"]["dtype"] = "int32"; }),
                       "output.dtype = int32");
  // A labels graph does not state its class count: ids >= num_classes are refused when they
  // appear (at load, on the check forward, or on the frame whose Python labels reach them).
  const std::string name = case_names(dir).at(0);
  double ref_max = 0;
  cv::minMaxLoc(cv::imread(dir + "/ref/" + name + ".png", cv::IMREAD_UNCHANGED), nullptr, &ref_max);
  CHECK(ref_max >= 1);
  const std::string one = with_sidecar(dir, tmp, "model", "mm_one_class", [](nlohmann::json& j) { set_classes(j, 1); });
  expect_error(ErrorCode::kSidecarMismatch, "labels graph with ids up to " + std::to_string(int(ref_max)) +
                                                ", sidecar says 1 class", [&] {
    auto seg = pvtseg::Segmenter::create(cpu_options(one));
    seg->segment(cv::imread(dir + "/frames/" + name + ".png", cv::IMREAD_COLOR));
  }, "class id");
  check_artifact_digest(dir, tmp);
  return finish("mismatch");
}

}  // namespace pvtseg_test
