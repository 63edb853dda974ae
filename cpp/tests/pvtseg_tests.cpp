// pvtseg ctest driver: `pvtseg_tests <case> [args]`, one ctest test per case.
//
// Cases that need the generated data (cpp/tests/make_test_data.py) take its folder as
// the first argument and return 77 (ctest SKIP) with a printed reason if it is absent.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
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
#include "test_util.hpp"

namespace {

using namespace pvtseg_test;

const char* kGoodSidecar = R"({
  "schema_version": 1, "arch": "pvt_v2_b0_segformer", "num_classes": 2,
  "class_names": ["road", "sky"], "palette": [[128, 64, 128], [128, 128, 128]],
  "input": {"name": "input", "height": 64, "width": 96, "dynamic": null, "dtype": "float32",
            "layout": "NCHW", "channel_order": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
  "output": {"name": "labels", "kind": "labels", "dtype": "uint8", "stride": 1},
  "precision": "fp16", "checkpoint_sha256": null, "pvtseg_version": "0.1.0",
  "tensorrt_version": "10.3.0", "compute_capability": "8.7"
})";

// ---------------------------------------------------------------------------------------
void check_good_meta(const pvtseg::ModelMeta& m) {
  CHECK(m.num_classes == 2);
  CHECK(m.class_names.size() == 2 && m.class_names[1] == "sky");
  CHECK(m.palette.size() == 2 && m.palette[0] == cv::Vec3b(128, 64, 128));
  CHECK(m.input.height == 64 && m.input.width == 96 && m.input.channel_order == "RGB" && !m.input.dynamic);
  CHECK(m.output.kind == "labels" && m.output.dtype == "uint8" && m.output.stride == 1);
  CHECK(m.precision == "fp16" && m.tensorrt_version == "10.3.0" && m.compute_capability == "8.7");
  CHECK(m.checkpoint_sha256.empty() && m.batch == 1);
  const pvtseg::Normalization n = pvtseg::normalization(m.input);
  CHECK(std::abs(n.scale[0] - 1.0f / (255.0f * 0.229f)) < 1e-6f && std::abs(n.bias[2] + 0.406f / 0.225f) < 1e-5f);
  CHECK(pvtseg::sidecar_path("models/build/x.engine") == "models/build/x.json");
  CHECK(pvtseg::sidecar_path("a.b/model") == "a.b/model.json");
  CHECK(pvtseg::sidecar_path("x.json") == "x.json");
  const std::string dyn = R"("dynamic": {"batch": [1, 8], "height": [32, 128], "width": [64, 192]})";
  const pvtseg::ModelMeta d = pvtseg::parse_meta(replace_once(kGoodSidecar, "\"dynamic\": null", dyn));
  CHECK(d.input.dynamic && d.input.dynamic_batch[1] == 8 && d.input.dynamic_height[0] == 32 &&
        d.input.dynamic_width[1] == 192);
}

// What python/pvtseg/meta.py validate refuses, the C++ reader refuses too (kBadSidecar).
std::vector<std::pair<std::string, std::string>> bad_sidecars() {
  const std::string good = kGoodSidecar;
  const std::string std3 = "[0.229, 0.224, 0.225]", mean3 = "[0.485, 0.456, 0.406]";
  return {
      {"not JSON", "{\"schema_version\": 1,"},
      {"top level array", "[1, 2]"},
      {"missing arch", replace_once(good, "\"arch\": \"pvt_v2_b0_segformer\",", "")},
      {"schema_version 2", replace_once(good, "\"schema_version\": 1", "\"schema_version\": 2")},
      {"num_classes 0", replace_once(good, "\"num_classes\": 2", "\"num_classes\": 0")},
      {"num_classes 256", replace_once(good, "\"num_classes\": 2", "\"num_classes\": 256")},
      {"class_names count", replace_once(good, "[\"road\", \"sky\"]", "[\"road\"]")},
      {"palette count", replace_once(good, ", [128, 128, 128]]", "]")},
      {"palette value 300", replace_once(good, "[128, 128, 128]]", "[128, 300, 128]]")},
      {"height not /32", replace_once(good, "\"height\": 64", "\"height\": 65")},
      {"std zero", replace_once(good, std3, "[0.229, 0, 0.225]")},
      {"std negative", replace_once(good, std3, "[0.229, -0.224, 0.225]")},
      {"std infinite (1e999)", replace_once(good, std3, "[0.229, 1e999, 0.225]")},
      {"mean NaN (as Python writes it)", replace_once(good, mean3, "[NaN, 0.456, 0.406]")},
      {"mean -Infinity", replace_once(good, mean3, "[-Infinity, 0.456, 0.406]")},
      {"mean as string", replace_once(good, mean3, "\"imagenet\"")},
      {"layout NHWC", replace_once(good, "\"NCHW\"", "\"NHWC\"")},
      {"input.dtype int8", replace_once(good, "\"dtype\": \"float32\"", "\"dtype\": \"int8\"")},
      {"empty input name", replace_once(good, "\"name\": \"input\"", "\"name\": \"\"")},
      {"dynamic axis 'depth'", replace_once(good, "\"dynamic\": null", "\"dynamic\": {\"depth\": [1, 2]}")},
      {"dynamic range min > max", replace_once(good, "\"dynamic\": null", "\"dynamic\": {\"height\": [96, 64]}")},
      {"dynamic range excludes height", replace_once(good, "\"dynamic\": null", "\"dynamic\": {\"height\": [96, 128]}")},
      {"output kind", replace_once(good, "\"kind\": \"labels\"", "\"kind\": \"boxes\"")},
      {"labels as float", replace_once(good, "\"dtype\": \"uint8\"", "\"dtype\": \"float32\"")},
      {"stride 2", replace_once(good, "\"stride\": 1", "\"stride\": 2")},
      {"precision", replace_once(good, "\"precision\": \"fp16\"", "\"precision\": \"fp64\"")},
      {"batch 0", replace_once(good, "\"precision\"", "\"batch\": 0, \"precision\"")},
  };
}

int test_meta() {
  using pvtseg::ErrorCode;
  check_good_meta(pvtseg::parse_meta(kGoodSidecar, "good.json"));
  for (const auto& [what, text] : bad_sidecars()) {
    CHECK(text != kGoodSidecar);
    expect_error(ErrorCode::kBadSidecar, "bad sidecar: " + what, [&] { pvtseg::parse_meta(text, what); });
  }
  expect_error(ErrorCode::kBadSidecar, "missing sidecar file", [] { pvtseg::read_meta("/nonexistent/x.engine"); });

  // Engine compatibility: the check create() runs before deserializing an engine.
  const pvtseg::ModelMeta m = pvtseg::parse_meta(kGoodSidecar, "good.json");
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
  pvtseg::ModelMeta list_cc = pvtseg::parse_meta(replace_once(kGoodSidecar, "\"8.7\"", "[8, 7]"));
  CHECK(list_cc.compute_capability == "8.7");
  return finish("meta");
}

// ---------------------------------------------------------------------------------------
void check_file_errors(const std::string& dir, const std::string& tmp) {
  using pvtseg::ErrorCode;
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
}

void check_engine_errors(const std::string& dir, const std::string& tmp) {
  using pvtseg::ErrorCode;
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
  if (!pvtseg::backend_compiled(pvtseg::Backend::kTensorRT)) {
    expect_error(ErrorCode::kBackendUnavailable, "ONNX file without TensorRT",
                 [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/m.onnx")); });
  }
  pvtseg::SegmenterOptions torch_onnx = cpu_options(tmp + "/m.onnx");
  torch_onnx.backend = pvtseg::Backend::kLibTorch;
  expect_error(ErrorCode::kInvalidArgument, "ONNX file with the LibTorch backend",
               [&] { pvtseg::Segmenter::create(torch_onnx); });
  write_text(tmp + "/m.xyz", "?");
  expect_error(ErrorCode::kInvalidArgument, "unknown extension",
               [&] { pvtseg::Segmenter::create(cpu_options(tmp + "/m.xyz")); });
}

void check_frame_errors(const std::string& dir) {
  using pvtseg::ErrorCode;
  const std::string model = dir + "/model.ts";
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
}

int test_errors(const std::string& dir, const std::string& tmp) {
  if (!have_data(dir)) return 77;
  check_file_errors(dir, tmp);
  check_engine_errors(dir, tmp);
  check_frame_errors(dir);
  return finish("errors");
}

// ---------------------------------------------------------------------------------------
struct ParityTotals {
  double worst = 1.0, infer_ms = 0.0;
  size_t same = 0, total = 0;
  int n = 0;
};

// One case: C++ labels vs the Python Segmenter's labels for the same frame.
void parity_case(pvtseg::Segmenter& seg, const std::string& dir, const std::string& ref_dir, const std::string& name,
                 double want, ParityTotals& acc) {
  const cv::Mat frame = cv::imread(dir + "/frames/" + name + ".png", cv::IMREAD_COLOR);
  const cv::Mat ref = cv::imread(dir + "/" + ref_dir + "/" + name + ".png", cv::IMREAD_UNCHANGED);
  CHECK(!frame.empty() && !ref.empty());
  if (frame.empty() || ref.empty()) return;
  cv::Mat labels;
  seg.segment(frame, labels);
  CHECK(labels.type() == CV_8UC1 && labels.size() == frame.size());
  CHECK(ref.type() == CV_8UC1 && ref.size() == frame.size());
  if (labels.size() != ref.size()) return;
  const size_t eq = static_cast<size_t>(cv::countNonZero(labels == ref));
  const double agree = static_cast<double>(eq) / static_cast<double>(labels.total());
  double maxv = 0;
  cv::minMaxLoc(labels, nullptr, &maxv);
  CHECK(maxv < seg.num_classes());
  acc.worst = std::min(acc.worst, agree);
  acc.same += eq;
  acc.total += labels.total();
  const pvtseg::Timings& t = seg.last_timings();
  acc.infer_ms += t.infer_ms;
  ++acc.n;
  std::printf("%-24s %4dx%-4d agreement %8.4f%% (required %.1f%%)  pre %.2f, infer %.2f, post %.2f ms\n", name.c_str(),
              frame.cols, frame.rows, 100.0 * agree, 100.0 * want, t.pre_ms, t.infer_ms, t.post_ms);
  ++g_checks;
  if (agree < want) {
    ++g_failures;
    std::cerr << "FAIL " << name << ": agreement " << agree << " < " << want << "\n";
  }
}

// parity DATA MIN MODEL REFDIR: DATA/MODEL.ts on every case vs DATA/REFDIR/<case>.png.
int test_parity(const std::string& dir, double min_agreement, const std::string& model, const std::string& ref_dir) {
  if (!have_data(dir, model)) return 77;
  pvtseg::SegmenterOptions opt;
  opt.model_path = dir + "/" + model + ".ts";
  const char* dev = std::getenv("PVTSEG_TEST_DEVICE");  // "cuda" on a GPU machine
  opt.device_type = dev && std::string(dev) == "cuda" ? pvtseg::Device::kCUDA : pvtseg::Device::kCPU;
  auto seg = pvtseg::Segmenter::create(opt);
  std::cout << "reference: " << read_text(dir + "/reference.txt") << "model: " << opt.model_path << " ("
            << seg->meta().output.kind << ", stride " << seg->meta().output.stride << "), device "
            << seg->device_name() << "\n";
  ParityTotals acc;
  for (const auto& line : read_lines(dir + "/cases.txt")) {
    std::istringstream ls(line);  // "<name> [min agreement]"
    std::string name;
    double want = min_agreement;
    ls >> name >> want;
    parity_case(*seg, dir, ref_dir, name, std::max(want, min_agreement), acc);
  }
  CHECK(acc.n >= 3);
  const double overall = acc.total ? static_cast<double>(acc.same) / static_cast<double>(acc.total) : 0.0;
  std::printf("parity %s: %d frames, overall agreement %.4f%%, worst %.4f%%, mean infer %.2f ms on %s\n",
              model.c_str(), acc.n, 100.0 * overall, 100.0 * acc.worst, acc.n ? acc.infer_ms / acc.n : 0.0,
              seg->device_name().c_str());
  return finish("parity " + model);
}

// ---------------------------------------------------------------------------------------
// Gray / BGRA / ROI / network-size / tiny frames, and output Mats that never alias.
void check_frame_kinds(pvtseg::Segmenter& seg, const cv::Mat& bgr, const cv::Mat& base) {
  // Gray and BGRA frames are converted (same result as converting first).
  cv::Mat gray, gray_bgr, bgra;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  cv::cvtColor(gray, gray_bgr, cv::COLOR_GRAY2BGR);
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  CHECK(cv::countNonZero(seg.segment(gray) != seg.segment(gray_bgr)) == 0);
  CHECK(cv::countNonZero(seg.segment(bgra) != base) == 0);
  // A non-contiguous ROI equals the same pixels copied out.
  const cv::Rect roi(17, 9, 301, 203);
  const cv::Mat view = bgr(roi);
  CHECK(!view.isContinuous());
  const cv::Mat a = seg.segment(view), b = seg.segment(view.clone());
  CHECK(a.size() == roi.size() && cv::countNonZero(a != b) == 0);
  // A frame already at the network size, and a tiny one.
  const cv::Mat net(seg.meta().input.height, seg.meta().input.width, CV_8UC3, cv::Scalar(40, 90, 140));
  CHECK(seg.segment(net).size() == net.size());
  CHECK(seg.segment(cv::Mat(3, 5, CV_8UC3, cv::Scalar::all(7))).size() == cv::Size(5, 3));
  // The output Mat is (re)allocated as needed and never aliases internal buffers.
  cv::Mat out(1, 1, CV_32F);
  seg.segment(bgr, out);
  CHECK(out.type() == CV_8UC1 && out.size() == bgr.size());
  const cv::Mat keep = out.clone();
  seg.segment(net);
  CHECK(cv::countNonZero(out != keep) == 0);
}

// Move-only RAII; returns the Segmenter the state ended up in.
std::unique_ptr<pvtseg::Segmenter> check_move_only(const std::string& dir, std::unique_ptr<pvtseg::Segmenter> seg,
                                                   const cv::Mat& bgr, const cv::Mat& base) {
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
  return other;
}

void check_visualize(const pvtseg::Segmenter& seg, const cv::Mat& bgr, const cv::Mat& base) {
  cv::Mat color = pvtseg::colorize(base, seg.palette());
  CHECK(color.type() == CV_8UC3 && color.size() == base.size());
  const cv::Vec3b rgb0 = seg.palette()[0];
  cv::Mat zeros(4, 4, CV_8UC1, cv::Scalar(0));
  CHECK(pvtseg::colorize(zeros, seg.palette()).at<cv::Vec3b>(0, 0) == cv::Vec3b(rgb0[2], rgb0[1], rgb0[0]));
  cv::Mat blend = bgr.clone();
  pvtseg::colorize(base, seg.palette(), blend, 0.5f);
  pvtseg::draw_legend(blend, seg.meta().class_names, seg.palette());
  pvtseg::draw_text_lines(blend, {"FPS 12.3", "pre 1 | infer 2 | post 3 ms"});
  CHECK(blend.size() == bgr.size() && cv::norm(blend, bgr, cv::NORM_L1) > 0);
}

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

  const cv::Mat bgr = cv::imread(dir + "/frames/" + case_names(dir).at(0) + ".png", cv::IMREAD_COLOR);
  CHECK(!bgr.empty());
  const cv::Mat base = seg->segment(bgr);
  const pvtseg::Timings t = seg->last_timings();
  CHECK(t.pre_ms > 0 && t.infer_ms > 0 && t.post_ms >= 0 && t.total_ms() >= t.infer_ms);
  check_frame_kinds(*seg, bgr, base);
  seg = check_move_only(dir, std::move(seg), bgr, base);
  check_visualize(*seg, bgr, base);
  return finish("frames");
}

// ---------------------------------------------------------------------------------------
int make_video(const std::string& dir, const std::string& out, int n) {
  if (!have_data(dir)) return 77;
  std::vector<std::string> clip = read_lines(dir + "/clip.txt");
  if (clip.empty()) {
    for (const auto& name : case_names(dir)) clip.push_back(dir + "/frames/" + name + ".png");
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
    std::cerr << "usage: pvtseg_tests meta | io_contract | postprocess | errors DATA TMP |\n"
                 "                    parity DATA [MIN [MODEL [REFDIR]]] | frames DATA | mismatch DATA TMP |\n"
                 "                    engine_cache DATA TMP | preprocess_reference DATA |\n"
                 "                    make_video DATA OUT N | count_frames VIDEO N\n";
    return 2;
  }
  const std::string c = argv[1];
  auto arg = [&](int i, const char* dflt = "") { return argc > i ? std::string(argv[i]) : std::string(dflt); };
  try {
    if (c == "meta") return test_meta();
    if (c == "io_contract") return test_io_contract();
    if (c == "postprocess") return test_postprocess();
    if (c == "errors") return test_errors(arg(2), arg(3, "."));
    if (c == "parity") return test_parity(arg(2), std::stod(arg(3, "0.999")), arg(4, "model"), arg(5, "ref"));
    if (c == "frames") return test_frames(arg(2));
    if (c == "mismatch") return test_sidecar_mismatch(arg(2), arg(3, "."));
    if (c == "engine_cache") return test_engine_cache(arg(2), arg(3, "."));
    if (c == "preprocess_reference") return test_preprocess_reference(arg(2));
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
