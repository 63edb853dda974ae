#!/usr/bin/env python3
"""Live segmentation demo (same as `pvtseg demo`); see `python demo_camera.py --help`.

    python python/demo_camera.py --model models/build/x.engine --source csi://0 --device cuda
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pvtseg.apps.cli import call_main  # noqa: E402
from pvtseg.apps.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(call_main(main, "pvtseg demo"))  # a filesystem error: one line, exit 1
