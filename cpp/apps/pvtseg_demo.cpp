// pvtseg_demo: the C++ twin of `pvtseg demo` (python/pvtseg/demo.py).
//
//   pvtseg_demo --model models/build/x.ts [--source 0|video.mp4|rtsp://...|"gst ... ! appsink"]
//               [--output out.mp4] [--headless] [--alpha 0.5] [--device auto|cpu|cuda]
//               [--max-frames N] [--no-legend]
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
  bool headless = false;
  bool legend = true;
  bool verbose = false;
  float alpha = 0.5f;
  long max_frames = -1;
  int threads = 0;
};

const char* kUsage =
    "usage: pvtseg_demo --model X.ts|X.engine [--source 0|FILE|rtsp://...|\"GST PIPELINE ! appsink\"]\n"
    "                   [--output out.mp4] [--headless] [--alpha 0.5] [--device auto|cpu|cuda]\n"
    "                   [--backend auto|libtorch|tensorrt] [--max-frames N] [--threads N] [--no-legend]\n"
    "                   [--verbose]\n"
    "Segments every frame of the source, draws the labels over it with an FPS line, shows a\n"
    "window (q/Esc quit, space pause, m cycles overlay/mask/side-by-side) or, with --headless,\n"
    "only writes --output and prints progress. Ends with a summary line.\n";

bool parse_args(int argc, char** argv, Args& a, std::string& err) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) {
        err = k + " needs a value";
        return false;
      }
      out = argv[++i];
      return true;
    };
    std::string v;
    if (k == "-h" || k == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (k == "--model") {
      if (!value(a.model)) return false;
    } else if (k == "--source") {
      if (!value(a.source)) return false;
    } else if (k == "--output") {
      if (!value(a.output)) return false;
    } else if (k == "--backend") {
      if (!value(a.backend)) return false;
    } else if (k == "--device") {
      if (!value(a.device)) return false;
    } else if (k == "--headless") {
      a.headless = true;
    } else if (k == "--no-legend") {
      a.legend = false;
    } else if (k == "--verbose") {
      a.verbose = true;
    } else if (k == "--alpha" || k == "--max-frames" || k == "--threads") {
      if (!value(v)) return false;
      try {
        if (k == "--alpha") a.alpha = std::stof(v);
        if (k == "--max-frames") a.max_frames = std::stol(v);
        if (k == "--threads") a.threads = std::stoi(v);
      } catch (const std::exception&) {
        err = k + " needs a number, got '" + v + "'";
        return false;
      }
    } else {
      err = "unknown argument '" + k + "'";
      return false;
    }
  }
  if (a.model.empty()) {
    err = "--model is required (an exported .ts or .engine with its .json sidecar; "
          "export one with `pvtseg export --formats torchscript --out models/build/NAME`)";
    return false;
  }
  if (a.alpha < 0.f || a.alpha > 1.f) {
    err = "--alpha must be in 0..1";
    return false;
  }
  return true;
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

}  // namespace

int main(int argc, char** argv) {
  Args args;
  std::string err;
  if (!parse_args(argc, argv, args, err)) {
    std::cerr << "pvtseg_demo: " << err << "\n\n" << kUsage;
    return 2;
  }

  pvtseg::SegmenterOptions opt;
  opt.model_path = args.model;
  opt.num_threads = args.threads;
  opt.warmup_runs = 2;  // TorchScript optimizes its graph over the first runs
  if (args.backend == "libtorch") opt.backend = pvtseg::Backend::kLibTorch;
  else if (args.backend == "tensorrt") opt.backend = pvtseg::Backend::kTensorRT;
  else if (args.backend != "auto") {
    std::cerr << "pvtseg_demo: --backend must be auto, libtorch or tensorrt\n";
    return 2;
  }
  if (args.device == "cpu") opt.device_type = pvtseg::Device::kCPU;
  else if (args.device.rfind("cuda", 0) == 0) {
    opt.device_type = pvtseg::Device::kCUDA;
    if (args.device.size() > 5 && args.device[4] == ':') opt.device = std::atoi(args.device.c_str() + 5);
  } else if (args.device != "auto") {
    std::cerr << "pvtseg_demo: --device must be auto, cpu, cuda or cuda:N\n";
    return 2;
  }
  const bool verbose = args.verbose;
  opt.log = [verbose](pvtseg::LogLevel level, const std::string& msg) {
    if (level >= pvtseg::LogLevel::kInfo || verbose) std::cerr << "[" << pvtseg::to_string(level) << "] " << msg << "\n";
  };

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

    cv::VideoWriter writer;
    cv::Size writer_size;
    double src_fps = cap.get(cv::CAP_PROP_FPS);
    if (!(src_fps > 0.0 && src_fps < 1000.0)) src_fps = 30.0;
    const bool show = !args.headless;
    if (show) cv::namedWindow("pvtseg", cv::WINDOW_NORMAL);

    enum class View { kOverlay, kMask, kSideBySide } view = View::kOverlay;
    bool paused = false;
    long frames = 0;
    double sum_pre = 0, sum_infer = 0, sum_post = 0;
    double fps_ema = 0;
    cv::Mat frame, labels, vis;
    const auto t_start = std::chrono::steady_clock::now();
    auto t_prev = t_start;
    while (args.max_frames < 0 || frames < args.max_frames) {
      if (!paused) {
        if (!cap.read(frame) || frame.empty()) {
          if (live) std::cerr << "pvtseg_demo: the live source stopped delivering frames; ending.\n";
          break;
        }
        seg->segment(frame, labels);
        const pvtseg::Timings& t = seg->last_timings();

        switch (view) {
          case View::kOverlay:
            vis = frame.clone();
            pvtseg::colorize(labels, seg->palette(), vis, args.alpha);
            break;
          case View::kMask: vis = pvtseg::colorize(labels, seg->palette()); break;
          case View::kSideBySide: {
            cv::Mat mask = pvtseg::colorize(labels, seg->palette());
            cv::hconcat(frame, mask, vis);
            break;
          }
        }
        const auto now = std::chrono::steady_clock::now();
        const double loop_ms = std::chrono::duration<double, std::milli>(now - t_prev).count();
        t_prev = now;
        const double inst_fps = loop_ms > 0 ? 1000.0 / loop_ms : 0.0;
        fps_ema = frames == 0 ? inst_fps : 0.9 * fps_ema + 0.1 * inst_fps;
        pvtseg::draw_text_lines(vis, {fmt("FPS %.1f", fps_ema),
                                      "pre " + fmt("%.1f", t.pre_ms) + " | infer " + fmt("%.1f", t.infer_ms) +
                                          " | post " + fmt("%.1f", t.post_ms) + " ms",
                                      std::string(pvtseg::to_string(seg->backend())) + " " + seg->device_name()});
        if (args.legend) pvtseg::draw_legend(vis, seg->meta().class_names, seg->palette());

        if (!args.output.empty()) {
          if (!writer.isOpened()) {
            const int fourcc = cv::VideoWriter::fourcc('m', 'p', '4', 'v');
            writer_size = vis.size();
            if (!writer.open(args.output, fourcc, src_fps, writer_size)) {
              std::cerr << "pvtseg_demo: cannot write '" << args.output
                        << "'. Fix: check the folder exists and is writable; use a .mp4 or .avi name.\n";
              return 1;
            }
          }
          if (vis.size() != writer_size) cv::resize(vis, vis, writer_size);  // view switched mid-stream
          writer.write(vis);
        }
        ++frames;
        sum_pre += t.pre_ms;
        sum_infer += t.infer_ms;
        sum_post += t.post_ms;
        if (args.headless && frames % 25 == 0) {
          std::cerr << "pvtseg_demo: " << frames << " frames, " << fmt("%.1f", fps_ema) << " FPS\n";
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
    cap.release();
    if (show) cv::destroyAllWindows();

    const double wall_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double n = frames > 0 ? static_cast<double>(frames) : 1.0;
    std::cout << "pvtseg_demo: " << frames << " frames, mean FPS " << fmt("%.2f", frames / std::max(wall_s, 1e-9))
              << ", pre " << fmt("%.2f", sum_pre / n) << " ms, infer " << fmt("%.2f", sum_infer / n) << " ms, post "
              << fmt("%.2f", sum_post / n) << " ms (" << pvtseg::to_string(seg->backend()) << " on "
              << seg->device_name() << ")" << (args.output.empty() ? "" : ", wrote " + args.output) << "\n";
    return frames > 0 ? 0 : 1;
  } catch (const pvtseg::Error& e) {
    std::cerr << "pvtseg_demo: error [" << pvtseg::to_string(e.code()) << "] " << e.what() << "\n";
    return 1;
  } catch (const cv::Exception& e) {
    std::cerr << "pvtseg_demo: OpenCV error: " << e.what() << "\n";
    return 1;
  }
}
