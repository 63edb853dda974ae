#include "pvtseg/visualize.hpp"

#include <algorithm>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "pvtseg/error.hpp"

namespace pvtseg {

namespace {

void check_labels(const cv::Mat& labels) {
  if (labels.empty() || labels.type() != CV_8UC1) {
    throw Error(ErrorCode::kInvalidArgument, "labels must be a non-empty CV_8UC1 image.",
                "Pass the output of Segmenter::segment.");
  }
}

}  // namespace

cv::Mat colorize(const cv::Mat& labels, const Palette& palette) {
  check_labels(labels);
  cv::Mat lut(1, 256, CV_8UC3, cv::Scalar::all(0));
  for (size_t i = 0; i < palette.size() && i < 256; ++i) {
    const cv::Vec3b& rgb = palette[i];
    lut.at<cv::Vec3b>(0, static_cast<int>(i)) = cv::Vec3b(rgb[2], rgb[1], rgb[0]);  // -> BGR
  }
  cv::Mat labels3, color;
  cv::cvtColor(labels, labels3, cv::COLOR_GRAY2BGR);
  cv::LUT(labels3, lut, color);
  return color;
}

void colorize(const cv::Mat& labels, const Palette& palette, cv::Mat& bgr_inout, float alpha) {
  cv::Mat color = colorize(labels, palette);
  if (bgr_inout.empty() || alpha >= 1.0f) {
    bgr_inout = color;
    return;
  }
  if (bgr_inout.size() != labels.size() || bgr_inout.type() != CV_8UC3) {
    throw Error(ErrorCode::kInvalidArgument, "colorize: the image must be CV_8UC3 and the size of the labels.",
                "Blend over the frame that was segmented (Segmenter::segment returns labels at its size).");
  }
  alpha = std::max(0.0f, alpha);
  cv::addWeighted(bgr_inout, 1.0 - alpha, color, alpha, 0.0, bgr_inout);
}

void draw_legend(cv::Mat& bgr_inout, const std::vector<std::string>& class_names, const Palette& palette) {
  if (bgr_inout.empty()) return;
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = std::max(0.35, bgr_inout.rows / 1000.0);
  const int thick = 1;
  int base = 0;
  const cv::Size tsize = cv::getTextSize("Ag", font, scale, thick, &base);
  const int row_h = tsize.height + base + 4;
  int max_w = 0;
  for (const auto& n : class_names) max_w = std::max(max_w, cv::getTextSize(n, font, scale, thick, &base).width);
  const int sw = row_h - 4;
  const int box_w = sw + 6 + max_w + 8;
  const int n = static_cast<int>(std::min(class_names.size(), palette.size()));
  const int x0 = std::max(0, bgr_inout.cols - box_w - 4);
  cv::Rect box(x0, 4, std::min(box_w, bgr_inout.cols - x0), std::min(row_h * n + 4, bgr_inout.rows - 4));
  if (box.width <= 0 || box.height <= 0) return;
  cv::Mat roi = bgr_inout(box);
  roi.convertTo(roi, -1, 0.4, 0);  // darken the background under the legend
  for (int i = 0; i < n; ++i) {
    const int y = box.y + 2 + i * row_h;
    if (y + row_h > bgr_inout.rows) break;
    const cv::Vec3b& rgb = palette[static_cast<size_t>(i)];
    cv::rectangle(bgr_inout, cv::Rect(x0 + 4, y + 2, sw, sw), cv::Scalar(rgb[2], rgb[1], rgb[0]), cv::FILLED);
    cv::putText(bgr_inout, class_names[static_cast<size_t>(i)], cv::Point(x0 + 4 + sw + 6, y + tsize.height + 2),
                font, scale, cv::Scalar(255, 255, 255), thick, cv::LINE_AA);
  }
}

void draw_text_lines(cv::Mat& bgr_inout, const std::vector<std::string>& lines) {
  if (bgr_inout.empty() || lines.empty()) return;
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = std::max(0.4, bgr_inout.rows / 900.0);
  const int thick = 1;
  int base = 0;
  int w = 0, h = 0;
  for (const auto& l : lines) {
    cv::Size s = cv::getTextSize(l, font, scale, thick, &base);
    w = std::max(w, s.width);
    h = std::max(h, s.height + base + 4);
  }
  cv::Rect box(4, 4, std::min(w + 10, bgr_inout.cols - 4), std::min(h * static_cast<int>(lines.size()) + 6,
                                                                     bgr_inout.rows - 4));
  if (box.width <= 0 || box.height <= 0) return;
  cv::Mat roi = bgr_inout(box);
  roi.convertTo(roi, -1, 0.35, 0);
  for (size_t i = 0; i < lines.size(); ++i) {
    cv::putText(bgr_inout, lines[i], cv::Point(box.x + 5, box.y + 3 + static_cast<int>(i + 1) * h - base - 2), font,
                scale, cv::Scalar(255, 255, 255), thick, cv::LINE_AA);
  }
}

}  // namespace pvtseg
