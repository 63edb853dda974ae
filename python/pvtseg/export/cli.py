"""`pvtseg export` (= python/export_model.py): the command line over export_model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .. import meta as meta_mod
from ..errors import PvtsegError
from ..io_utils import describe_os_error
from ..models import camvid
from .artifacts import FORMATS, export_model, sha256_file


PROG = "pvtseg export"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a segmentor to ONNX / TorchScript + sidecar, "
                                                       "with a parity self-check against PyTorch.")
    p.add_argument("--model", help="registered segmentor, e.g. pvt_v2_b0_segformer (default: the one a "
                                   "`pvtseg train` checkpoint was trained as)")
    p.add_argument("--checkpoint", help="weights (any format pvtseg reads); omitted: random weights (testing only)")
    p.add_argument("--num-classes", type=int,
                   help="classes (default: the sidecar's, else a `pvtseg train` checkpoint's, else 11 = CamVid)")
    p.add_argument("--height", type=int, help="input height, multiple of 32 (default: sidecar's, else 384)")
    p.add_argument("--width", type=int, help="input width, multiple of 32 (default: sidecar's, else 480)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch/height/width where the model allows")
    p.add_argument("--output", choices=("labels", "logits", "logits_4x"), default="labels")
    p.add_argument("--label-dtype", choices=("uint8", "int32"), default="uint8")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--formats", default="onnx,torchscript", help="comma list of: onnx, torchscript")
    p.add_argument("--out", required=True, help="output base path, e.g. models/build/camvid_b0 (no suffix)")
    p.add_argument("--sidecar", "--meta", dest="sidecar",
                   help="JSON sidecar to copy class names, palette, mean/std (and defaults) from")
    p.add_argument("--no-fuse", action="store_true", help="skip the exact inference rewrites (export/fuse.py)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity self-check (not recommended)")
    p.add_argument("--sample-image", help="image for the real-frame check (default: a CamVid val frame)")
    p.add_argument("--force-size", action="store_true",
                   help="export even when the input size's estimated memory exceeds the available memory")
    return p


def _fail(msg: str) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def _trained_classes(raw: Any) -> Dict[str, Any]:
    """A `pvtseg train` checkpoint's model name and classes, as sidecar fields ({} otherwise):
    the run recorded them, so its export needs no --model / --num-classes / --sidecar."""
    from ..models.formats import is_training_checkpoint

    if not is_training_checkpoint(raw):
        return {}
    out: Dict[str, Any] = {"arch": raw.get("model_name")}
    classes = raw.get("classes") or {}
    if classes.get("names"):
        out.update(num_classes=len(classes["names"]), class_names=list(classes["names"]))
        if classes.get("palette"):
            out["palette"] = [list(c) for c in classes["palette"]]
    return out


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        return _fail(f"--formats {args.formats!r}: choose from {', '.join(FORMATS)} (comma separated)")
    src: Dict[str, Any] = {}
    if args.sidecar:
        try:
            src = meta_mod.read(args.sidecar)
        except PvtsegError as e:
            return _fail(str(e))
    raw = None  # the checkpoint, read once (safe reader) for its classes and its weights
    try:
        if args.checkpoint and Path(args.checkpoint).is_file():
            from ..models.formats import read_checkpoint

            raw = read_checkpoint(args.checkpoint)
        src = {**_trained_classes(raw), **src}  # an explicit --sidecar wins
    except PvtsegError as e:
        return _fail(str(e))
    args.model = args.model or src.get("arch")
    if not args.model:
        return _fail("--model is required (a `pvtseg train` checkpoint names its own model)")
    inp = src.get("input", {})
    def pick(arg: Optional[int], key: str, default: int) -> int:
        return arg if arg is not None else int(inp.get(key) or src.get(key) or default)

    height, width = pick(args.height, "height", 384), pick(args.width, "width", 480)
    num_classes = pick(args.num_classes, "num_classes", camvid.NUM_CLASSES)
    if num_classes < 1:
        return _fail(f"--num-classes {num_classes}: must be >= 1")
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        return _fail(f"--height {height} --width {width}: both must be positive multiples of 32 "
                     f"(e.g. {max(32, round(height / 32) * 32)}x{max(32, round(width / 32) * 32)})")
    if args.batch < 1:
        return _fail(f"--batch {args.batch}: must be >= 1")
    if src and src.get("num_classes") not in (None, num_classes):
        return _fail(f"--num-classes {num_classes} but {args.sidecar or args.checkpoint} lists {src['num_classes']} "
                     "classes")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        return _fail(f"checkpoint {args.checkpoint} does not exist")
    try:
        from ..models import create_model, model_kind

        if model_kind(args.model) != "segmentor":
            return _fail(f"{args.model} is a classifier; export a segmentor such as {args.model}_segformer "
                         f"or {args.model}_fpn")
        model = create_model(args.model, num_classes=num_classes)
        sha = None
        if args.checkpoint:
            from ..models import load_checkpoint

            load_checkpoint(model, raw, strict=True)  # a training checkpoint gives its EMA weights
            sha = sha256_file(args.checkpoint)
        else:
            print(f"{PROG}: warning: no --checkpoint: exporting RANDOM weights (for testing the pipeline only)",
                  file=sys.stderr)
        export_model(model, args.out, arch=args.model, height=height, width=width, formats=formats,
                     output=args.output, label_dtype=args.label_dtype, batch=args.batch, dynamic=args.dynamic,
                     opset=args.opset, class_names=src.get("class_names"), palette=src.get("palette"),
                     mean=inp.get("mean"), std=inp.get("std"), checkpoint_sha256=sha,
                     verify=not args.no_verify, sample_image=args.sample_image, fuse=not args.no_fuse,
                     check_memory=not args.force_size)
    except OSError as e:  # disk full, read-only, no permission (WriteError) or an unreadable input
        print(f"{PROG}: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except PvtsegError as e:
        return _fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
