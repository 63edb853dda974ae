#!/usr/bin/env bash
# The project's whole test suite on a fresh machine (Python, gcc, cmake present).
# README's test command and .ci/run both run exactly this file.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q torch==2.13.0          # local CPU wheel on these machines
python3 -m pip install -q -e ".[dev]"
python3 -m pip install -q --no-deps tensorrt-stubs   # type stubs only; TensorRT itself is not installable here

# System packages for tests/test_rtsp.py (a loopback RTSP server: gst-rtsp-server through the
# system python3's python3-gi). Quiet and bounded; without them that test skips and says why.
rtsp_pkgs="python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
missing=""
for p in $rtsp_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "run_all: apt-get install$missing (for tests/test_rtsp.py)"
  if timeout 300 $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 \
      $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
    export PVTSEG_APT_UPDATED=1  # tests/run_cpp.sh need not update the package lists again
  else
    echo "run_all: could not install$missing; tests/test_rtsp.py will skip"
  fi
fi

python3 -m pytest -q tests

# C++ library: apt packages, CMake build against the pip wheel's LibTorch, ctest.
bash tests/run_cpp.sh
