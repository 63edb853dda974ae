// GPU ctest (built with -DPVTSEG_CUDA_TESTS=ON): the CUDA preprocessing kernel
// (preprocess.cu) vs its host reference (preprocess_math.hpp) on real CamVid frames,
// downscaled and upscaled, odd sizes included. Both run the same per-pixel code with
// every float operation rounded on its own, so float32 outputs must be bit-identical and
// float16 outputs equal to the reference rounded to half. Also checks the kernel against
// the OpenCV path (cv::resize + normalize): at most 1 u8 level anywhere (measured on the
// CPU reference: exact; see the `preprocess_reference` ctest for why 1 level is allowed).
//
//   pvtseg_cuda_tests DATA     (DATA from cpp/tests/make_test_data.py; 77 = skipped)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include <cuda_runtime_api.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "backend.hpp"
#include "preprocess.cuh"
#include "preprocess_math.hpp"
#include "test_util.hpp"

namespace {

using namespace pvtseg_test;

struct GpuRun {
  std::vector<float> f32;
  std::vector<std::uint16_t> f16;
};

// The kernel on `bgr` at `size`, float32 and float16 outputs copied back.
GpuRun run_kernel(const cv::Mat& bgr, cv::Size size, const pvtseg::Normalization& norm) {
  const size_t row = static_cast<size_t>(bgr.cols) * 3, n = 3 * static_cast<size_t>(size.area());
  void *src = nullptr, *dst32 = nullptr, *dst16 = nullptr;
  CHECK(cudaMalloc(&src, row * bgr.rows) == cudaSuccess);
  CHECK(cudaMalloc(&dst32, n * 4) == cudaSuccess && cudaMalloc(&dst16, n * 2) == cudaSuccess);
  CHECK(cudaMemcpy2D(src, row, bgr.data, bgr.step[0], row, bgr.rows, cudaMemcpyHostToDevice) == cudaSuccess);
  for (bool half : {false, true}) {
    CHECK(pvtseg::detail::cuda::resize_normalize(static_cast<const std::uint8_t*>(src), bgr.cols, bgr.rows, row,
                                                 half ? dst16 : dst32, half, size.width, size.height,
                                                 norm.scale.data(), norm.bias.data(), true, nullptr) == cudaSuccess);
  }
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  GpuRun out{std::vector<float>(n), std::vector<std::uint16_t>(n)};
  CHECK(cudaMemcpy(out.f32.data(), dst32, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(cudaMemcpy(out.f16.data(), dst16, n * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  cudaFree(src);
  cudaFree(dst32);
  cudaFree(dst16);
  return out;
}

// Returns the kernel's max difference from the OpenCV path, in u8 levels.
double check_frame(const std::string& name, const cv::Mat& bgr, cv::Size size) {
  pvtseg::InputSpec in;
  in.height = size.height;
  in.width = size.width;
  const pvtseg::Normalization norm = pvtseg::normalization(in);
  const size_t plane = static_cast<size_t>(size.area()), n = 3 * plane;
  std::vector<float> ref(n), ocv(n);
  pvtseg::detail::pp::preprocess_reference(bgr.data, bgr.cols, bgr.rows, bgr.step[0], ref.data(), size.width,
                                           size.height,
                                           pvtseg::detail::pp::make_params(norm.scale.data(), norm.bias.data(), true));
  cv::Mat scratch;
  pvtseg::detail::preprocess_cpu(bgr, in, scratch, ocv.data());
  const GpuRun gpu = run_kernel(bgr, size, norm);
  cv::Mat ref_half;
  cv::Mat(1, static_cast<int>(n), CV_32F, ref.data()).convertTo(ref_half, CV_16F);
  const bool f32_same = std::memcmp(gpu.f32.data(), ref.data(), n * 4) == 0;
  const bool f16_same = std::memcmp(gpu.f16.data(), ref_half.data, n * 2) == 0;
  double vs_opencv = 0;
  for (size_t i = 0; i < n; ++i) {
    vs_opencv = std::max(vs_opencv, std::abs(static_cast<double>(gpu.f32[i]) - ocv[i]) / norm.scale[i / plane]);
  }
  std::printf("%-24s %4dx%-4d -> %3dx%-3d kernel == host reference: float32 %s, float16 %s; vs OpenCV max %.3f "
              "u8 levels\n",
              name.c_str(), bgr.cols, bgr.rows, size.width, size.height, f32_same ? "yes" : "NO",
              f16_same ? "yes" : "NO", vs_opencv);
  CHECK(f32_same && f16_same);
  CHECK(vs_opencv <= 1.0 + 1e-3);
  return vs_opencv;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "";
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP: no CUDA device visible (check nvidia-smi / CUDA_VISIBLE_DEVICES)\n");
    return 77;
  }
  if (!have_data(dir)) return 77;
  double worst = 0;
  for (const auto& name : case_names(dir)) {
    const cv::Mat bgr = cv::imread(dir + "/frames/" + name + ".png", cv::IMREAD_COLOR);
    CHECK(!bgr.empty());
    if (bgr.empty()) continue;
    const cv::Mat roi = bgr(cv::Rect(1, 1, bgr.cols - 2, bgr.rows - 2));  // a pitched (non-contiguous) frame
    for (const cv::Size size : {cv::Size(160, 128), cv::Size(161, 97), cv::Size(480, 384), cv::Size(701, 523)}) {
      worst = std::max(worst, check_frame(name, bgr, size));
      worst = std::max(worst, check_frame(name + "_roi", roi, size));
    }
  }
  std::printf("preprocess_cuda: kernel vs OpenCV max %.3f u8 levels\n", worst);
  return finish("preprocess_cuda");
}
