"""Regenerate the sample clip: the CamVid test frames of one sequence, in name order, as mp4v.

    python -m pvtseg.training.make_clip [--data ../shared/data/camvid] \
        [--out models/samples/camvid_seq05vd.mp4] [--prefix Seq05VD] [--fps 6] [--max-frames 100]
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .datasets import PROJECT_ROOT, make_clip
from ..errors import PvtsegError


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pvtseg.training.make_clip", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="CamVid folder (default ../shared/data/camvid)")
    ap.add_argument("--out", default=str(PROJECT_ROOT / "models" / "samples" / "camvid_seq05vd.mp4"))
    ap.add_argument("--prefix", default="Seq05VD", help="sequence id the frame names start with")
    ap.add_argument("--split", default="test")
    ap.add_argument("--fps", type=float, default=6.0)
    ap.add_argument("--max-frames", type=int, default=100, help="first N frames (0: all; 100 keep it < 5 MB)")
    args = ap.parse_args(argv)
    try:
        out = make_clip(args.data, args.out, prefix=args.prefix, split=args.split, fps=args.fps,
                       max_frames=args.max_frames or None)
    except PvtsegError as e:
        print(f"make_clip: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
