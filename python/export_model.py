#!/usr/bin/env python3
"""Export a segmentor to ONNX / TorchScript + sidecar (= `pvtseg export`; --help for options)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # runs from a checkout without pip install

from pvtseg.apps.cli import call_main  # noqa: E402
from pvtseg.export.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(call_main(main, "pvtseg export"))  # a filesystem error: one line, exit 1
