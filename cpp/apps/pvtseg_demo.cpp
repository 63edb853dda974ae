// pvtseg_demo: the C++ twin of `pvtseg demo` (python/pvtseg/apps/demo.py).
//
//   pvtseg_demo --model models/build/x.ts|x.engine|x.onnx [--source 0|video.mp4|rtsp://...|"gst ... ! appsink"]
//               [--output out.mp4] [--headless] [--alpha 0.5] [--device auto|cpu|cuda]
//               [--max-frames N] [--no-legend] [--precision fp32|fp16] [--engine-cache-dir DIR]
//
// Keys (window mode): q / Esc quit, space pause, m cycles overlay / mask / side-by-side.
// Ends with a summary line: frames, mean FPS, per-stage ms.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <opencv2/highgui.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "pvtseg/segmenter.hpp"
#include "pvtseg/visualize.hpp"

namespace {

struct Args {
  std::string model;
  std::string source = "0";
  std::string output;
  std::string backend = "auto";
  std::string device = "auto";
  std::string precision = "fp32";
  std::string engine_cache_dir;
  bool headless = false;
  bool legend = true;
  bool verbose = false;
  float alpha = 0.5f;
  long max_frames = -1;
  int threads = 0;
  long workspace_mb = 1024;
};

const char* kUsage =
    "usage: pvtseg_demo --model X.ts|X.engine|X.onnx [--source 0|FILE|rtsp://...|\"GST PIPELINE ! appsink\"]\n"
    "                   [--output out.mp4] [--headless] [--alpha 0.5] [--device auto|cpu|cuda]\n"
    "                   [--backend auto|libtorch|tensorrt] [--max-frames N] [--threads N] [--no-legend]\n"
    "                   [--precision fp32|fp16] [--engine-cache-dir DIR] [--workspace-mb 1024] [--verbose]\n"
    "Segments every frame of the source, draws the labels over it with an FPS line, shows a\n"
    "window (q/Esc quit, space pause, m cycles overlay/mask/side-by-side) or, with --headless,\n"
    "only writes --output and prints progress. Ends with a summary line. An .onnx runs on\n"
    "TensorRT: the engine is built once (--precision, --workspace-mb) and cached beside it.\n";

// --key value options: where each one's value goes.
bool take_value(const std::string& k, const std::string& v, Args& a, std::string& err) {
  try {
    if (k == "--model") a.model = v;
    else if (k == "--source") a.source = v;
    else if (k == "--output") a.output = v;
    else if (k == "--backend") a.backend = v;
    else if (k == "--device") a.device = v;
    else if (k == "--precision") a.precision = v;
    else if (k == "--engine-cache-dir") a.engine_cache_dir = v;
    else if (k == "--alpha") a.alpha = std::stof(v);
    else if (k == "--max-frames") a.max_frames = std::stol(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--workspace-mb") a.workspace_mb = std::stol(v);
    else {
      err = "unknown argument '" + k + "'";
      return false;
    }
  } catch (const std::exception&) {
    err = k + " needs a number, got '" + v + "'";
    return false;
  }
  return true;
}

bool check_args(const Args& a, std::string& err) {
  if (a.model.empty()) {
    err = "--model is required (an exported .ts, .engine or .onnx with its .json sidecar; "
          "export one with `pvtseg export --formats torchscript --out models/build/NAME`)";
  } else if (a.alpha < 0.f || a.alpha > 1.f) {
    err = "--alpha must be in 0..1";
  } else if (a.workspace_mb <= 0) {
    err = "--workspace-mb must be a positive number of MiB";
  }
  return err.empty();
}

bool parse_args(int argc, char** argv, Args& a, std::string& err) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (k == "--headless") {
      a.headless = true;
    } else if (k == "--no-legend") {
      a.legend = false;
    } else if (k == "--verbose") {
      a.verbose = true;
    } else if (i + 1 >= argc) {
      err = k.rfind("--", 0) == 0 ? k + " needs a value" : "unknown argument '" + k + "'";
      return false;
    } else if (!take_value(k, argv[++i], a, err)) {
      return false;
    }
  }
  return check_args(a, err);
}

bool make_options(const Args& args, pvtseg::SegmenterOptions& opt, std::string& err) {
  opt.model_path = args.model;
  opt.num_threads = args.threads;
  opt.warmup_runs = 2;  // TorchScript optimizes its graph over the first runs
  opt.precision = args.precision;
  opt.engine_cache_dir = args.engine_cache_dir;
  opt.workspace_bytes = static_cast<std::size_t>(args.workspace_mb) << 20;
  if (args.backend == "libtorch") opt.backend = pvtseg::Backend::kLibTorch;
  else if (args.backend == "tensorrt") opt.backend = pvtseg::Backend::kTensorRT;
  else if (args.backend != "auto") err = "--backend must be auto, libtorch or tensorrt";
  if (args.device == "cpu") {
    opt.device_type = pvtseg::Device::kCPU;
  } else if (args.device.rfind("cuda", 0) == 0) {
    opt.device_type = pvtseg::Device::kCUDA;
    if (args.device.size() > 5 && args.device[4] == ':') opt.device = std::atoi(args.device.c_str() + 5);
  } else if (args.device != "auto") {
    err = "--device must be auto, cpu, cuda or cuda:N";
  }
  const bool verbose = args.verbose;
  opt.log = [verbose](pvtseg::LogLevel level, const std::string& msg) {
    if (level >= pvtseg::LogLevel::kInfo || verbose) std::cerr << "[" << pvtseg::to_string(level) << "] " << msg << "\n";
  };
  return err.empty();
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

bool open_source(const std::string& src, cv::VideoCapture& cap, bool& live) {
  live = true;
  if (all_digits(src)) return cap.open(std::stoi(src));
  if (src.find('!') != std::string::npos) return cap.open(src, cv::CAP_GSTREAMER);
  if (src.rfind("csi://", 0) == 0) {
    const std::string id = src.substr(6);
    const std::string pipe = "nvarguscamerasrc sensor-id=" + (id.empty() ? std::string("0") : id) +
                             " ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! nvvidconv ! "
                             "video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1";
    return cap.open(pipe, cv::CAP_GSTREAMER);
  }
  if (src.find("://") != std::string::npos) return cap.open(src, cv::CAP_FFMPEG);
  live = false;
  return cap.open(src);
}

std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

enum class View { kOverlay, kMask, kSideBySide };

struct Stats {
  long frames = 0;
  double sum_pre = 0, sum_infer = 0, sum_post = 0, fps_ema = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), prev = start;

  void add(const pvtseg::Timings& t) {
    const auto now = std::chrono::steady_clock::now();
    const double loop_ms = std::chrono::duration<double, std::milli>(now - prev).count();
    prev = now;
    const double inst_fps = loop_ms > 0 ? 1000.0 / loop_ms : 0.0;
    fps_ema = frames == 0 ? inst_fps : 0.9 * fps_ema + 0.1 * inst_fps;
    ++frames;
    sum_pre += t.pre_ms;
    sum_infer += t.infer_ms;
    sum_post += t.post_ms;
  }
};

// The frame with its labels drawn as the view asks, plus the FPS / timing lines and legend.
cv::Mat render(View view, const cv::Mat& frame, const cv::Mat& labels, const pvtseg::Segmenter& seg,
               const Args& args, const Stats& stats) {
  cv::Mat vis;
  switch (view) {
    case View::kOverlay:
      vis = frame.clone();
      pvtseg::colorize(labels, seg.palette(), vis, args.alpha);
      break;
    case View::kMask: vis = pvtseg::colorize(labels, seg.palette()); break;
    case View::kSideBySide: cv::hconcat(frame, pvtseg::colorize(labels, seg.palette()), vis); break;
  }
  const pvtseg::Timings& t = seg.last_timings();
  pvtseg::draw_text_lines(vis, {fmt("FPS %.1f", stats.fps_ema),
                                "pre " + fmt("%.1f", t.pre_ms) + " | infer " + fmt("%.1f", t.infer_ms) + " | post " +
                                    fmt("%.1f", t.post_ms) + " ms",
                                std::string(pvtseg::to_string(seg.backend())) + " " + seg.device_name()});
  if (args.legend) pvtseg::draw_legend(vis, seg.meta().class_names, seg.palette());
  return vis;
}

// Opens the writer on the first frame (its size fixes the video's). False: cannot write.
bool write_frame(cv::VideoWriter& writer, cv::Size& size, const std::string& path, double fps, cv::Mat& vis) {
  if (!writer.isOpened()) {
    size = vis.size();
    if (!writer.open(path, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps, size)) {
      std::cerr << "pvtseg_demo: cannot write '" << path
                << "'. Fix: check the folder exists and is writable; use a .mp4 or .avi name.\n";
      return false;
    }
  }
  if (vis.size() != size) cv::resize(vis, vis, size);  // view switched mid-stream
  writer.write(vis);
  return true;
}

void print_summary(const Stats& s, const pvtseg::Segmenter& seg, const Args& args) {
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count();
  const double n = s.frames > 0 ? static_cast<double>(s.frames) : 1.0;
  std::cout << "pvtseg_demo: " << s.frames << " frames, mean FPS " << fmt("%.2f", s.frames / std::max(wall_s, 1e-9))
            << ", pre " << fmt("%.2f", s.sum_pre / n) << " ms, infer " << fmt("%.2f", s.sum_infer / n)
            << " ms, post " << fmt("%.2f", s.sum_post / n) << " ms (" << pvtseg::to_string(seg.backend()) << " on "
            << seg.device_name() << ")" << (args.output.empty() ? "" : ", wrote " + args.output) << "\n";
}

// The frame loop. Returns the process exit code.
int run(const Args& args, pvtseg::Segmenter& seg, cv::VideoCapture& cap, bool live) {
  cv::VideoWriter writer;
  cv::Size writer_size;
  double src_fps = cap.get(cv::CAP_PROP_FPS);
  if (!(src_fps > 0.0 && src_fps < 1000.0)) src_fps = 30.0;
  const bool show = !args.headless;
  if (show) cv::namedWindow("pvtseg", cv::WINDOW_NORMAL);
  View view = View::kOverlay;
  bool paused = false;
  Stats stats;
  cv::Mat frame, labels, vis;
  while (args.max_frames < 0 || stats.frames < args.max_frames) {
    if (!paused) {
      if (!cap.read(frame) || frame.empty()) {
        if (live) std::cerr << "pvtseg_demo: the live source stopped delivering frames; ending.\n";
        break;
      }
      seg.segment(frame, labels);
      stats.add(seg.last_timings());
      vis = render(view, frame, labels, seg, args, stats);
      if (!args.output.empty() && !write_frame(writer, writer_size, args.output, src_fps, vis)) return 1;
      if (args.headless && stats.frames % 25 == 0) {
        std::cerr << "pvtseg_demo: " << stats.frames << " frames, " << fmt("%.1f", stats.fps_ema) << " FPS\n";
      }
    }
    if (show) {
      cv::imshow("pvtseg", vis.empty() ? frame : vis);
      const int key = cv::waitKey(paused ? 30 : 1) & 0xff;
      if (key == 'q' || key == 27) break;
      if (key == ' ') paused = !paused;
      if (key == 'm') view = static_cast<View>((static_cast<int>(view) + 1) % 3);
    }
  }
  writer.release();
  if (show) cv::destroyAllWindows();
  print_summary(stats, seg, args);
  return stats.frames > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  pvtseg::SegmenterOptions opt;
  std::string err;
  if (!parse_args(argc, argv, args, err) || !make_options(args, opt, err)) {
    std::cerr << "pvtseg_demo: " << err << "\n\n" << kUsage;
    return 2;
  }
  try {
    auto seg = pvtseg::Segmenter::create(opt);
    cv::VideoCapture cap;
    bool live = false;
    if (!open_source(args.source, cap, live) || !cap.isOpened()) {
      std::cerr << "pvtseg_demo: cannot open source '" << args.source
                << "'. Fix: check the camera index / file path / URL; a GStreamer pipeline must end in appsink "
                   "and needs OpenCV built with GStreamer.\n";
      return 1;
    }
    return run(args, *seg, cap, live);
  } catch (const pvtseg::Error& e) {
    std::cerr << "pvtseg_demo: error [" << pvtseg::to_string(e.code()) << "] " << e.what() << "\n";
    return 1;
  } catch (const cv::Exception& e) {
    std::cerr << "pvtseg_demo: OpenCV error: " << e.what() << "\n";
    return 1;
  }
}
