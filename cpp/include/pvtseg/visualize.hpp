// pvtseg: drawing helpers (palette colours, blend, legend, text box).
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "pvtseg/meta.hpp"

namespace pvtseg {

// labels (CV_8UC1) -> BGR colour image (CV_8UC3); ids without a palette entry are black.
cv::Mat colorize(const cv::Mat& labels, const Palette& palette);

// Blend the colourized labels over bgr_inout (same size, CV_8UC3) in place:
// out = (1 - alpha) * bgr + alpha * colour. alpha = 1 gives the bare mask.
void colorize(const cv::Mat& labels, const Palette& palette, cv::Mat& bgr_inout, float alpha);

// A class legend (colour swatch + name per class) in the top-right corner.
void draw_legend(cv::Mat& bgr_inout, const std::vector<std::string>& class_names, const Palette& palette);

// Lines of text on a dark box in the top-left corner (FPS, per-stage ms).
void draw_text_lines(cv::Mat& bgr_inout, const std::vector<std::string>& lines);

}  // namespace pvtseg
