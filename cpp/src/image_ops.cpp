// The CPU image stages every backend shares: preprocessing (when it runs on the CPU) and
// the output contract's postprocessing. Written to match python/pvtseg/runtime/segmenter.py
// operation for operation, so both runtimes give the same labels.
#include <opencv2/imgproc.hpp>

#include "backend.hpp"

namespace pvtseg {
namespace detail {

void preprocess_cpu(const cv::Mat& bgr, const InputSpec& in, cv::Mat& resized, float* dst) {
  const cv::Size size(in.width, in.height);
  if (bgr.size() == size) {
    resized = bgr;
  } else {
    cv::resize(bgr, resized, size, 0, 0, cv::INTER_LINEAR);
  }
  // The Python runtime's float32 arithmetic, x * scale + bias, tabulated per channel.
  const Normalization norm = normalization(in);
  float lut[3][256];
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      const float scaled = static_cast<float>(v) * norm.scale[c];
      lut[c][v] = scaled + norm.bias[c];
    }
  }
  const bool rgb = in.channel_order == "RGB";
  const size_t plane = static_cast<size_t>(in.height) * in.width;
  float* out[3] = {dst, dst + plane, dst + 2 * plane};
  // model channel c reads BGR channel src[c]
  const int src[3] = {rgb ? 2 : 0, 1, rgb ? 0 : 2};
  for (int y = 0; y < in.height; ++y) {
    const uchar* p = resized.ptr<uchar>(y);
    const size_t row = static_cast<size_t>(y) * in.width;
    for (int x = 0; x < in.width; ++x, p += 3) {
      out[0][row + x] = lut[0][p[src[0]]];
      out[1][row + x] = lut[1][p[src[1]]];
      out[2][row + x] = lut[2][p[src[2]]];
    }
  }
}

namespace {

// segmenter.py argmax_channels(logits, size): one class plane at a time, resized with
// INTER_LINEAR to the frame; labels[p > best] = c; best = max(best, p).
void logits_to_frame(const NetOutput& net, cv::Size frame, cv::Mat& labels, cv::Mat& best) {
  const int h = net.height;
  const bool same_size = frame == cv::Size(net.width, net.height);
  labels.create(frame, CV_8UC1);
  labels.setTo(cv::Scalar::all(0));
  cv::Mat plane, better;
  for (int c = 0; c < net.channels; ++c) {
    const cv::Mat src = net.logits.rowRange(c * h, (c + 1) * h);
    if (same_size) {
      plane = src;
    } else {
      cv::resize(src, plane, frame, 0, 0, cv::INTER_LINEAR);
    }
    if (c == 0) {
      plane.copyTo(best);
      continue;
    }
    cv::compare(plane, best, better, cv::CMP_GT);
    labels.setTo(cv::Scalar::all(c), better);
    cv::max(best, plane, best);
  }
}

}  // namespace

void postprocess(const NetOutput& net, cv::Size frame, cv::Mat& labels, cv::Mat& best) {
  if (net.is_logits) {
    logits_to_frame(net, frame, labels, best);
  } else if (net.labels.size() == frame) {
    net.labels.copyTo(labels);
  } else {
    // INTER_NEAREST, as the Python runtime does: identical in every OpenCV build.
    cv::resize(net.labels, labels, frame, 0, 0, cv::INTER_NEAREST);
  }
}

std::string first_line(const std::string& what) {
  const size_t nl = what.find('\n');
  return nl == std::string::npos ? what : what.substr(0, nl);
}

}  // namespace detail
}  // namespace pvtseg
