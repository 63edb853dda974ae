#!/usr/bin/env bash
# The C++ runtime's tests on a fresh machine: apt packages, a CMake build against the
# LibTorch inside the pip torch wheel, the test artifacts + Python reference labels, ctest
# (which also installs the package to a prefix and builds cpp/examples/minimal_app
# against it). tests/run_all.sh calls this after pytest.
#
#   bash tests/run_cpp.sh                      # build dir build/cpp, 2 jobs
#   PVTSEG_CPP_BUILD=build/x PVTSEG_CPP_JOBS=8 bash tests/run_cpp.sh
#   PVTSEG_CUDA=1 bash tests/run_cpp.sh        # GPU machine (tests/run_gpu.sh): see below
#
# PVTSEG_CUDA=1: a separate build (build/cpp_cuda, all cores) with -DPVTSEG_CUDA_TESTS=ON for
# the GPU's architecture, and only the GPU checks: the CUDA preprocessing kernel vs its
# host reference (preprocess_cuda) and C++ LibTorch on CUDA vs the Python runtime
# (parity_*, PVTSEG_TEST_DEVICE=cuda). Needs nvcc and a CUDA build of the pip torch.
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA=${PVTSEG_CUDA:-0}
BUILD=${PVTSEG_CPP_BUILD:-build/cpp}
JOBS=${PVTSEG_CPP_JOBS:-2}
CMAKE_EXTRA=()
CTEST_EXTRA=()
if [ "$CUDA" = 1 ]; then
  BUILD=${PVTSEG_CPP_BUILD:-build/cpp_cuda}
  JOBS=${PVTSEG_CPP_JOBS:-$(nproc)}
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ' || true)
  CMAKE_EXTRA=(-DPVTSEG_CUDA_TESTS=ON "-DCMAKE_CUDA_ARCHITECTURES=${arch:-native}" -DPVTSEG_BUILD_DEMO=OFF)
  CTEST_EXTRA=(-R '^(preprocess_cuda|preprocess_reference|parity_camvid|parity_logits|parity_logits4)$')
  export PVTSEG_TEST_DEVICE=cuda
fi
start=$(date +%s)
say() { echo "run_cpp: $* ($(( $(date +%s) - start ))s)"; }

# 1. System packages: OpenCV (core, imgproc, imgcodecs, videoio, highgui) and nlohmann-json.
pkgs="libopencv-dev nlohmann-json3-dev cmake make g++"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  say "apt-get install$missing"
  [ "${PVTSEG_APT_UPDATED:-}" = 1 ] || $sudo apt-get update -qq  # run_all.sh may have updated already
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# 2. LibTorch from the pip torch wheel (plus what the Python reference needs).
python3 -c 'import torch' 2>/dev/null || python3 -m pip install -q torch==2.13.0
python3 -c 'import cv2, numpy' 2>/dev/null || python3 -m pip install -q "opencv-python-headless>=4.8" numpy
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
if [ "$CUDA" = 1 ] && ! python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "run_cpp: PVTSEG_CUDA=1 but this torch sees no CUDA device; install a CUDA build of torch (pip install torch)"
  exit 1
fi

# 3. Configure + build (the LibTorch backend is the only torch translation unit).
say "configure $BUILD"
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" ${CMAKE_EXTRA[@]+"${CMAKE_EXTRA[@]}"} \
  >"$BUILD/configure.log" 2>&1 \
  || { cat "$BUILD/configure.log"; exit 1; }
grep -E "pvtseg|OpenCV|nlohmann" "$BUILD/configure.log" || true
say "build -j$JOBS"
cmake --build "$BUILD" -j"$JOBS"

# 4. Test artifacts (one random-weights pvt_v2_b0_segformer at 128x160 exported as TorchScript
#    three ways: labels, logits at stride 1, logits at stride 4; each with its sidecar), real
#    CamVid frames (full size, crops, odd sizes) and the Python Segmenter's reference labels.
say "test data"
python3 cpp/tests/make_test_data.py --out "$BUILD/test_data"

# 5. ctest: sidecar validation, sidecar-vs-graph checks (unit and on real TorchScript graphs),
#    the output contract's postprocess, the engine cache key / files, the CUDA preprocessing
#    math's host reference vs OpenCV, C++ vs Python parity (labels, logits stride 1 and 4),
#    frames, headless demo, install + minimal_app.
say "ctest"
ctest --test-dir "$BUILD" --output-on-failure ${CTEST_EXTRA[@]+"${CTEST_EXTRA[@]}"}
say "done"
