#!/usr/bin/env bash
# The project's whole test suite on a fresh machine (Python, gcc, cmake present).
# README's test command and .ci/run both run exactly this file.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q torch==2.13.0          # local CPU wheel on these machines
python3 -m pip install -q -e ".[dev]"
python3 -m pip install -q --no-deps tensorrt-stubs   # type stubs only; TensorRT itself is not installable here

python3 -m pytest -q tests

# C++ library: apt packages, CMake build against the pip wheel's LibTorch, ctest.
bash tests/run_cpp.sh
