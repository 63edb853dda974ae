#!/usr/bin/env python3
"""What this machine can run, and what to install (= `pvtseg doctor`; --json, --root DIR)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # runs from a checkout without pip install

from pvtseg.apps.doctor import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
