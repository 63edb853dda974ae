// minimal_app MODEL IMAGE [OUT.png]: segment one image with pvtseg and print what it found.
#include <cstdio>
#include <iostream>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <pvtseg/segmenter.hpp>
#include <pvtseg/visualize.hpp>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: minimal_app MODEL.ts|MODEL.engine IMAGE [OUT.png]\n";
    return 2;
  }
  try {
    pvtseg::SegmenterOptions options;
    options.model_path = argv[1];
    options.log = [](pvtseg::LogLevel level, const std::string& msg) {
      if (level >= pvtseg::LogLevel::kWarning) std::cerr << "pvtseg: " << msg << "\n";
    };
    auto segmenter = pvtseg::Segmenter::create(options);

    cv::Mat frame = cv::imread(argv[2], cv::IMREAD_COLOR);
    cv::Mat labels;
    segmenter->segment(frame, labels);  // throws pvtseg::Error on an empty frame (unreadable file)

    std::vector<int> counts(segmenter->num_classes(), 0);
    for (int y = 0; y < labels.rows; ++y)
      for (int x = 0; x < labels.cols; ++x) ++counts[labels.at<uchar>(y, x)];
    int present = 0;
    for (int c = 0; c < segmenter->num_classes(); ++c) {
      if (counts[c] == 0) continue;
      ++present;
      std::printf("  %-12s %6.2f%%\n", segmenter->class_name(c).c_str(), 100.0 * counts[c] / labels.total());
    }
    const pvtseg::Timings& t = segmenter->last_timings();
    std::printf("minimal_app: %dx%d labels, %d classes present, pre %.2f / infer %.2f / post %.2f ms on %s\n",
                labels.cols, labels.rows, present, t.pre_ms, t.infer_ms, t.post_ms,
                segmenter->device_name().c_str());
    if (argc > 3) {
      pvtseg::colorize(labels, segmenter->palette(), frame, 0.5f);
      cv::imwrite(argv[3], frame);
    }
    return 0;
  } catch (const pvtseg::Error& e) {
    std::cerr << "minimal_app: [" << pvtseg::to_string(e.code()) << "] " << e.what() << "\n";
    return 1;
  }
}
