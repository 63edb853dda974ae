// pvtseg ctest driver: `pvtseg_tests <case> [args]`, one ctest test per case.
//
// Cases that need the generated data (cpp/tests/make_test_data.py) take its folder as
// the first argument and return 77 (ctest SKIP) with a printed reason if it is absent.
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "pvtseg/segmenter.hpp"
#include "pvtseg/visualize.hpp"

namespace {

int g_checks = 0;
int g_failures = 0;

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    ++g_checks;                                                                        \
    if (!(cond)) {                                                                     \
      ++g_failures;                                                                    \
      std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond << "\n";    \
    }                                                                                  \
  } while (0)

void expect_error(pvtseg::ErrorCode want, const std::string& what, const std::function<void()>& fn) {
  ++g_checks;
  try {
    fn();
    ++g_failures;
    std::cerr << "FAIL " << what << ": no pvtseg::Error thrown (expected " << pvtseg::to_string(want) << ")\n";
  } catch (const pvtseg::Error& e) {
    if (e.code() != want) {
      ++g_failures;
      std::cerr << "FAIL " << what << ": code " << pvtseg::to_string(e.code()) << ", expected "
                << pvtseg::to_string(want) << ": " << e.what() << "\n";
    } else if (e.fix().empty()) {
      ++g_failures;
      std::cerr << "FAIL " << what << ": the error has no fix-it message: " << e.what() << "\n";
    } else {
      std::cout << "ok   " << what << " -> " << pvtseg::to_string(e.code()) << ": " << e.what() << "\n";
    }
  } catch (const std::exception& e) {
    ++g_failures;
    std::cerr << "FAIL " << what << ": a non-pvtseg exception: " << e.what() << "\n";
  }
}

int finish(const std::string& name) {
  std::cout << name << ": " << (g_checks - g_failures) << " passed, " << g_failures << " failed\n";
  return g_failures == 0 ? 0 : 1;
}

bool exists(const std::string& p) { return static_cast<bool>(std::ifstream(p)); }

std::string read_text(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_text(const std::string& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream src(from, std::ios::binary);
  std::ofstream dst(to, std::ios::binary);
  dst << src.rdbuf();
}

std::vector<std::string> read_lines(const std::string& p) {
  std::vector<std::string> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// Returns false (and prints why) when the generated test data is missing.
bool have_data(const std::string& dir) {
  if (exists(dir + "/model.ts") && exists(dir + "/model.json") && exists(dir + "/cases.txt")) return true;
  std::cout << "SKIP: no test data in '" << dir
            << "' (generate it with: python3 cpp/tests/make_test_data.py --out " << dir << ")\n";
  return false;
}

pvtseg::SegmenterOptions cpu_options(const std::string& model) {
  pvtseg::SegmenterOptions opt;
  opt.model_path = model;
  opt.device_type = pvtseg::Device::kCPU;
  return opt;
}

const char* kGoodSidecar = R"({
  "schema_version": 1, "arch": "pvt_v2_b0_segformer", "num_classes": 2,
  "class_names": ["road", "sky"], "palette": [[128, 64, 128], [128, 128, 128]],
  "input": {"name": "input", "height": 64, "width": 96, "dynamic": null, "dtype": "float32",
            "layout": "NCHW", "channel_order": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
  "output": {"name": "labels", "kind": "labels", "dtype": "uint8", "stride": 1},
  "precision": "fp16", "checkpoint_sha256": null, "pvtseg_version": "0.1.0",
  "tensorrt_version": "10.3.0", "compute_capability": "8.7"
})";

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// ---------------------------------------------------------------------------------------
int test_meta() {
  using pvtseg::ErrorCode;
  const pvtseg::ModelMeta m = pvtseg::parse_meta(kGoodSidecar, "good.json");
  CHECK(m.num_classes == 2);
  CHECK(m.class_names.size() == 2 && m.class_names[1] == "sky");
  CHECK(m.palette.size() == 2 && m.palette[0] == cv::Vec3b(128, 64, 128));
  CHECK(m.input.height == 64 && m.input.width == 96 && m.input.channel_order == "RGB" && !m.input.dynamic);
  CHECK(m.output.kind == "labels" && m.output.dtype == "uint8" && m.output.stride == 1);
  CHECK(m.precision == "fp16" && m.tensorrt_version == "10.3.0" && m.compute_capability == "8.7");
  CHECK(m.checkpoint_sha256.empty());
  const pvtseg::Normalization n = pvtseg::normalization(m.input);
  CHECK(std::abs(n.scale[0] - 1.0f / (255.0f * 0.229f)) < 1e-6f && std::abs(n.bias[2] + 0.406f / 0.225f) < 1e-5f);

  CHECK(pvtseg::sidecar_path("models/build/x.engine") == "models/build/x.json");
  CHECK(pvtseg::sidecar_path("a.b/model") == "a.b/model.json");
  CHECK(pvtseg::sidecar_path("x.json") == "x.json");

  const std::string good = kGoodSidecar;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"not JSON", "{\"schema_version\": 1,"},
      {"top level array", "[1, 2]"},
      {"missing arch", replace_once(good, "\"arch\": \"pvt_v2_b0_segformer\",", "")},
      {"schema_version 2", replace_once(good, "\"schema_version\": 1", "\"schema_version\": 2")},
      {"num_classes 0", replace_once(good, "\"num_classes\": 2", "\"num_classes\": 0")},
      {"class_names count", replace_once(good, "[\"road\", \"sky\"]", "[\"road\"]")},
      {"palette value 300", replace_once(good, "[128, 128, 128]]", "[128, 300, 128]]")},
      {"height not /32", replace_once(good, "\"height\": 64", "\"height\": 65")},
      {"std zero", replace_once(good, "[0.229, 0.224, 0.225]", "[0.229, 0, 0.225]")},
      {"layout NHWC", replace_once(good, "\"NCHW\"", "\"NHWC\"")},
      {"output kind", replace_once(good, "\"kind\": \"labels\"", "\"kind\": \"boxes\"")},
      {"labels as float", replace_once(good, "\"dtype\": \"uint8\"", "\"dtype\": \"float32\"")},
      {"stride 2", replace_once(good, "\"stride\": 1", "\"stride\": 2")},
      {"precision", replace_once(good, "\"precision\": \"fp16\"", "\"precision\": \"fp64\"")},
      {"mean as string", replace_once(good, "[0.485, 0.456, 0.406]", "\"imagenet\"")},
  };
  for (const auto& [what, text] : bad) {
    CHECK(text != good);
    expect_error(ErrorCode::kBadSidecar, "bad sidecar: " + what, [&] { pvtseg::parse_meta(text, what); });
  }
  expect_error(ErrorCode::kBadSidecar, "missing sidecar file", [] { pvtseg::read_meta("/nonexistent/x.engine"); });

  // Engine compatibility: the check create() runs before deserializing an engine.
  pvtseg::check_engine_compatibility(m, "10.3.0", "8.7", "x.engine");        // same: no throw
  pvtseg::check_engine_compatibility(m, "10.3.0.26", "sm_87", "x.engine");   // build number / sm_ form
  pvtseg::ModelMeta no_versions = m;
  no_versions.tensorrt_version.clear();
  no_versions.compute_capability.clear();
  pvtseg::check_engine_compatibility(no_versions, "8.6.2", "7.2", "x.engine");  // nothing recorded
  expect_error(ErrorCode::kEngineVersionMismatch, "engine built with TensorRT 10.3.0, running 8.6.2",
               [&] { pvtseg::check_engine_compatibility(m, "8.6.2", "8.7", "x.engine"); });
  expect_error(ErrorCode::kEngineVersionMismatch, "engine built with TensorRT 10.3.0, running 10.7.0",
               [&] { pvtseg::check_engine_compatibility(m, "10.7.0", "8.7", "x.engine"); });
  expect_error(ErrorCode::kEngineDeviceMismatch, "engine built for sm 8.7, running on 9.0",
               [&] { pvtseg::check_engine_compatibility(m, "10.3.0", "9.0", "x.engine"); });
  pvtseg::ModelMeta list_cc = pvtseg::parse_meta(replace_once(good, "\"8.7\"", "[8, 7]"));
  CHECK(list_cc.compute_capability == "8.7");
  return finish("meta");
}

// ---------------------------------------------------------------------------------------
int test_errors(const std::string& dir, const std::string& tmp) {
  using pvtseg::ErrorCode;
  if (!have_data(dir)) return 77;
  const std::string model = dir + "/model.ts";

  expect_error(ErrorCode::kModelNotFound, "missing model",
               [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/does_not_exist.ts")); });
  expect_error(ErrorCode::kModelNotFound, "empty model path", [&] { pvtseg::Segmenter::create(cpu_options("")); });

  // The artifact without its sidecar, and with broken sidecars.
  copy_file(model, tmp + "/no_sidecar.ts");
  expect_error(ErrorCode::kBadSidecar, "model without sidecar",
               [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/no_sidecar.ts")); });
  copy_file(model, tmp + "/bad_json.ts");
  write_text(tmp + "/bad_json.json", "{ this is not json");
  expect_error(ErrorCode::kBadSidecar, "unparsable sidecar",
               [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/bad_json.ts")); });
  copy_file(model, tmp + "/bad_field.ts");
  write_text(tmp + "/bad_field.json", replace_once(read_text(dir + "/model.json"), "\"NCHW\"", "\"NHWC\""));
  expect_error(ErrorCode::kBadSidecar, "sidecar with a bad field",
               [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/bad_field.ts")); });

  // Not TorchScript at all, but a valid sidecar: the backend refuses it.
  write_text(tmp + "/garbage.ts", "definitely not a zip archive");
  copy_file(dir + "/model.json", tmp + "/garbage.json");
  expect_error(ErrorCode::kModelLoadFailed, "garbage artifact",
               [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/garbage.ts")); });

  // An engine whose sidecar names a TensorRT version nobody runs.
  write_text(tmp + "/old.engine", "not really an engine");
  std::string engine_json = read_text(dir + "/model.json");
  engine_json = replace_once(engine_json, "{", "{\n  \"tensorrt_version\": \"1.0.0\", \"compute_capability\": \"1.0\",");
  write_text(tmp + "/old.json", engine_json);
  pvtseg::SegmenterOptions eng;
  eng.model_path = tmp + "/old.engine";
  if (pvtseg::backend_compiled(pvtseg::Backend::kTensorRT)) {
    // With TensorRT compiled in, the version check runs before deserialization (on a GPU
    // machine); without a GPU the backend says so first.
    bool gpu = true;
    try {
      pvtseg::Segmenter::create(eng);
    } catch (const pvtseg::Error& e) {
      gpu = e.code() != ErrorCode::kBackendUnavailable;
    }
    if (gpu) {
      expect_error(ErrorCode::kEngineVersionMismatch, "engine from TensorRT 1.0.0",
                   [&] { pvtseg::Segmenter::create(eng); });
    }
  } else {
    expect_error(ErrorCode::kBackendUnavailable, "engine in a build without TensorRT",
                 [&] { pvtseg::Segmenter::create(eng); });
  }
  // The same version check, independent of what is installed here.
  const pvtseg::ModelMeta em = pvtseg::read_meta(tmp + "/old.engine");
  expect_error(ErrorCode::kEngineVersionMismatch, "engine version check (1.0.0 vs 10.3.0)",
               [&] { pvtseg::check_engine_compatibility(em, "10.3.0", "1.0", tmp + "/old.engine"); });

  write_text(tmp + "/m.onnx", "onnx");
  copy_file(dir + "/model.json", tmp + "/m.json");
  expect_error(ErrorCode::kBackendUnavailable, "ONNX file", [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/m.onnx")); });
  write_text(tmp + "/m.xyz", "?");
  expect_error(ErrorCode::kInvalidArgument, "unknown extension",
               [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/m.xyz")); });

  // Frame checks.
  auto seg = pvtseg::Segmenter::create(cpu_options(model));
  cv::Mat labels;
  expect_error(ErrorCode::kBadFrame, "empty frame", [&] { seg->segment(cv::Mat(), labels); });
  expect_error(ErrorCode::kBadFrame, "float frame (CV_32FC3)",
               [&] { seg->segment(cv::Mat(48, 64, CV_32FC3, cv::Scalar::all(0.5)), labels); });
  expect_error(ErrorCode::kBadFrame, "16-bit frame (CV_16UC3)",
               [&] { seg->segment(cv::Mat(48, 64, CV_16UC3, cv::Scalar::all(100)), labels); });
  expect_error(ErrorCode::kBadFrame, "2-channel frame", [&] { seg->segment(cv::Mat(48, 64, CV_8UC2), labels); });
  const int sizes[3] = {2, 8, 8};
  expect_error(ErrorCode::kBadFrame, "3-D frame", [&] { seg->segment(cv::Mat(3, sizes, CV_8UC1), labels); });
  expect_error(ErrorCode::kInvalidArgument, "class id out of range", [&] { seg->class_name(seg->num_classes()); });
  pvtseg::SegmenterOptions cuda = cpu_options(model);
  cuda.device_type = pvtseg::Device::kCUDA;
  cuda.device = 64;
  bool cuda_ok = false;
  try {
    pvtseg::Segmenter::create(cuda);
    cuda_ok = true;
  } catch (const pvtseg::Error& e) {
    std::cout << "ok   CUDA device 64 -> " << pvtseg::to_string(e.code()) << ": " << e.what() << "\n";
    CHECK(e.code() == ErrorCode::kBackendUnavailable || e.code() == ErrorCode::kInvalidArgument);
  }
  CHECK(!cuda_ok);
  return finish("errors");
}

// ---------------------------------------------------------------------------------------
int test_parity(const std::string& dir, double min_agreement) {
  if (!have_data(dir)) return 77;
  pvtseg::SegmenterOptions opt;
  opt.model_path = dir + "/model.ts";
  const char* dev = std::getenv("PVTSEG_TEST_DEVICE");  // "cuda" on a GPU machine
  opt.device_type = dev && std::string(dev) == "cuda" ? pvtseg::Device::kCUDA : pvtseg::Device::kCPU;
  auto seg = pvtseg::Segmenter::create(opt);
  std::cout << "reference: " << read_text(dir + "/reference.txt");
  std::cout << "device: " << seg->device_name() << "\n";
  double worst = 1.0;
  size_t same = 0, total = 0;
  double infer_ms = 0;
  int n = 0;
  for (const auto& line : read_lines(dir + "/cases.txt")) {
    // "<name> [min agreement]"
    std::istringstream ls(line);
    std::string name;
    double want = min_agreement;
    ls >> name >> want;
    const cv::Mat frame = cv::imread(dir + "/frames/" + name + ".png", cv::IMREAD_COLOR);
    const cv::Mat ref = cv::imread(dir + "/ref/" + name + ".png", cv::IMREAD_UNCHANGED);
    CHECK(!frame.empty() && !ref.empty());
    if (frame.empty() || ref.empty()) continue;
    cv::Mat labels;
    seg->segment(frame, labels);
    CHECK(labels.type() == CV_8UC1);
    CHECK(labels.size() == frame.size());
    CHECK(ref.type() == CV_8UC1 && ref.size() == frame.size());
    if (labels.size() != ref.size()) continue;
    const size_t eq = static_cast<size_t>(cv::countNonZero(labels == ref));
    const double agree = static_cast<double>(eq) / static_cast<double>(labels.total());
    double maxv = 0;
    cv::minMaxLoc(labels, nullptr, &maxv);
    CHECK(maxv < seg->num_classes());
    worst = std::min(worst, agree);
    same += eq;
    total += labels.total();
    const pvtseg::Timings& t = seg->last_timings();
    infer_ms += t.infer_ms;
    ++n;
    std::printf("%-24s %4dx%-4d agreement %8.4f%% (required %.1f%%)  pre %.2f, infer %.2f, post %.2f ms\n",
                name.c_str(), frame.cols, frame.rows, 100.0 * agree, 100.0 * want, t.pre_ms, t.infer_ms, t.post_ms);
    ++g_checks;
    if (agree < want) {
      ++g_failures;
      std::cerr << "FAIL " << name << ": agreement " << agree << " < " << want << "\n";
    }
  }
  CHECK(n >= 3);
  const double overall = total ? static_cast<double>(same) / static_cast<double>(total) : 0.0;
  std::printf("parity: %d frames, overall agreement %.4f%%, worst %.4f%%, mean infer %.2f ms on %s\n", n,
              100.0 * overall, 100.0 * worst, n ? infer_ms / n : 0.0, seg->device_name().c_str());
  return finish("parity");
}

// ---------------------------------------------------------------------------------------
int test_frames(const std::string& dir) {
  if (!have_data(dir)) return 77;
  std::vector<std::pair<pvtseg::LogLevel, std::string>> logs;
  pvtseg::SegmenterOptions opt = cpu_options(dir + "/model.ts");
  opt.log = [&logs](pvtseg::LogLevel l, const std::string& m) { logs.emplace_back(l, m); };
  opt.warmup_runs = 1;
  auto seg = pvtseg::Segmenter::create(opt);
  CHECK(!logs.empty());  // the library reports through the callback, never stdout
  if (!logs.empty()) std::cout << "log: " << logs.front().second << "\n";
  CHECK(seg->backend() == pvtseg::Backend::kLibTorch);
  CHECK(seg->device_name() == "cpu");
  CHECK(seg->num_classes() == seg->meta().num_classes);
  CHECK(!seg->class_name(0).empty());
  CHECK(static_cast<int>(seg->palette().size()) == seg->num_classes());

  std::string first;
  std::istringstream(read_lines(dir + "/cases.txt").at(0)) >> first;
  const cv::Mat bgr = cv::imread(dir + "/frames/" + first + ".png", cv::IMREAD_COLOR);
  CHECK(!bgr.empty());
  const cv::Mat base = seg->segment(bgr);
  const pvtseg::Timings t = seg->last_timings();
  CHECK(t.pre_ms > 0 && t.infer_ms > 0 && t.post_ms >= 0 && t.total_ms() >= t.infer_ms);

  // Gray and BGRA frames are converted (same result as converting first).
  cv::Mat gray, gray_bgr, bgra;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  cv::cvtColor(gray, gray_bgr, cv::COLOR_GRAY2BGR);
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  CHECK(cv::countNonZero(seg->segment(gray) != seg->segment(gray_bgr)) == 0);
  CHECK(cv::countNonZero(seg->segment(bgra) != base) == 0);
  // A non-contiguous ROI equals the same pixels copied out.
  const cv::Rect roi(17, 9, 301, 203);
  const cv::Mat view = bgr(roi);
  CHECK(!view.isContinuous());
  const cv::Mat a = seg->segment(view), b = seg->segment(view.clone());
  CHECK(a.size() == roi.size() && cv::countNonZero(a != b) == 0);
  // A frame already at the network size, and a tiny one.
  const cv::Mat net(seg->meta().input.height, seg->meta().input.width, CV_8UC3, cv::Scalar(40, 90, 140));
  CHECK(seg->segment(net).size() == net.size());
  CHECK(seg->segment(cv::Mat(3, 5, CV_8UC3, cv::Scalar::all(7))).size() == cv::Size(5, 3));
  // The output Mat is (re)allocated as needed and never aliases internal buffers.
  cv::Mat out(1, 1, CV_32F);
  seg->segment(bgr, out);
  CHECK(out.type() == CV_8UC1 && out.size() == bgr.size());
  const cv::Mat keep = out.clone();
  seg->segment(net);
  CHECK(cv::countNonZero(out != keep) == 0);

  // Move-only RAII.
  static_assert(!std::is_copy_constructible<pvtseg::Segmenter>::value, "Segmenter must not be copyable");
  static_assert(!std::is_copy_assignable<pvtseg::Segmenter>::value, "Segmenter must not be copy-assignable");
  static_assert(std::is_nothrow_move_constructible<pvtseg::Segmenter>::value, "Segmenter must be movable");
  pvtseg::Segmenter moved(std::move(*seg));
  CHECK(cv::countNonZero(moved.segment(bgr) != base) == 0);
  expect_error(pvtseg::ErrorCode::kInvalidArgument, "segment() on a moved-from Segmenter",
               [&] { seg->segment(bgr); });
  seg.reset();  // destroying the moved-from shell is fine
  auto other = pvtseg::Segmenter::create(cpu_options(dir + "/model.ts"));
  *other = std::move(moved);
  CHECK(cv::countNonZero(other->segment(bgr) != base) == 0);

  // Visualization helpers.
  cv::Mat color = pvtseg::colorize(base, other->palette());
  CHECK(color.type() == CV_8UC3 && color.size() == base.size());
  const cv::Vec3b rgb0 = other->palette()[0];
  cv::Mat zeros(4, 4, CV_8UC1, cv::Scalar(0));
  CHECK(pvtseg::colorize(zeros, other->palette()).at<cv::Vec3b>(0, 0) == cv::Vec3b(rgb0[2], rgb0[1], rgb0[0]));
  cv::Mat blend = bgr.clone();
  pvtseg::colorize(base, other->palette(), blend, 0.5f);
  pvtseg::draw_legend(blend, other->meta().class_names, other->palette());
  pvtseg::draw_text_lines(blend, {"FPS 12.3", "pre 1 | infer 2 | post 3 ms"});
  CHECK(blend.size() == bgr.size() && cv::norm(blend, bgr, cv::NORM_L1) > 0);
  return finish("frames");
}

// ---------------------------------------------------------------------------------------
int make_video(const std::string& dir, const std::string& out, int n) {
  if (!have_data(dir)) return 77;
  std::vector<std::string> clip = read_lines(dir + "/clip.txt");
  if (clip.empty()) {
    for (const auto& line : read_lines(dir + "/cases.txt")) {
      std::string name;
      std::istringstream(line) >> name;
      clip.push_back(dir + "/frames/" + name + ".png");
    }
  }
  cv::VideoWriter w(out, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10.0, cv::Size(480, 360));
  if (!w.isOpened()) {
    std::cerr << "cannot open a video writer for " << out << "\n";
    return 1;
  }
  for (int i = 0; i < n; ++i) {
    cv::Mat f = cv::imread(clip[static_cast<size_t>(i) % clip.size()], cv::IMREAD_COLOR);
    if (f.empty()) {
      std::cerr << "cannot read " << clip[static_cast<size_t>(i) % clip.size()] << "\n";
      return 1;
    }
    if (f.size() != cv::Size(480, 360)) cv::resize(f, f, cv::Size(480, 360));
    w.write(f);
  }
  w.release();
  std::cout << "wrote " << out << " (" << n << " frames of 480x360)\n";
  return 0;
}

int count_frames(const std::string& path, int expected) {
  cv::VideoCapture cap(path);
  CHECK(cap.isOpened());
  int n = 0;
  cv::Size size;
  for (cv::Mat f; cap.read(f) && !f.empty();) {
    size = f.size();
    ++n;
  }
  std::cout << path << ": " << n << " frames of " << size.width << "x" << size.height << ", expected " << expected
            << "\n";
  CHECK(n == expected);
  CHECK(size == cv::Size(480, 360));
  return finish("count_frames");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: pvtseg_tests meta | errors DATA TMP | parity DATA [MIN] | frames DATA |\n"
                 "                    make_video DATA OUT N | count_frames VIDEO N\n";
    return 2;
  }
  const std::string c = argv[1];
  auto arg = [&](int i, const char* dflt = "") { return argc > i ? std::string(argv[i]) : std::string(dflt); };
  try {
    if (c == "meta") return test_meta();
    if (c == "errors") return test_errors(arg(2), arg(3, "."));
    if (c == "parity") return test_parity(arg(2), std::stod(arg(3, "0.999")));
    if (c == "frames") return test_frames(arg(2));
    if (c == "make_video") return make_video(arg(2), arg(3), std::stoi(arg(4, "12")));
    if (c == "count_frames") return count_frames(arg(2), std::stoi(arg(3, "12")));
  } catch (const pvtseg::Error& e) {
    std::cerr << "unexpected pvtseg::Error [" << pvtseg::to_string(e.code()) << "]: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "unexpected exception: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "unknown case '" << c << "'\n";
  return 2;
}
