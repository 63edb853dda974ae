"""Turn a training checkpoint into the shipped weights + sidecar.

    python -m pvtseg.training.ship_model --checkpoint runs/b0/best.pth \
        --out models/camvid_pvt_v2_b0_segformer.pth [--size 384 480] [--raw]

Writes a weights-only state dict in pvtseg's own keys (the EMA weights when the run kept
them, unless --raw), loadable with `create_model(arch, num_classes=N)` +
`load_state_dict`, and its sidecar `x.json` (arch, the run's class names + palette, mean/std,
input size = the inference size, stride-4 float32 logits, checkpoint_sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from .. import meta as meta_mod
from ..models.camvid import CLASS_NAMES, IGNORE_INDEX, MEAN, PALETTE, STD
from ..errors import CheckpointError, PvtsegError
from ..io_utils import atomic_write_bytes


def _classes(ck: dict) -> Tuple[List[str], List[List[int]], int, str]:
    """Names, palette, ignore index and dataset the run recorded; CamVid for runs that predate that."""
    saved = ck.get("classes") or {}
    if not saved.get("names"):
        return list(CLASS_NAMES), [list(c) for c in PALETTE], IGNORE_INDEX, "CamVid (SegNet 11-class split)"
    names = [str(n) for n in saved["names"]]
    palette = [list(map(int, c)) for c in saved.get("palette") or []] or meta_mod.default_palette(len(names))
    dataset = ck.get("dataset") or {}
    return names, palette, int(saved.get("ignore_index", 255)), str(dataset.get("layout", "") if isinstance(dataset, dict) else dataset)


def ship(checkpoint: str | Path, out: str | Path, size: tuple[int, int] = (384, 480), raw: bool = False,
         **extra) -> Path:
    from ..models import create_model
    from ..models.formats import is_training_checkpoint, read_checkpoint

    ck = read_checkpoint(checkpoint)  # the safe reader: weights_only, never a pickle fallback
    if not (is_training_checkpoint(ck) and isinstance(ck.get("model"), dict)):
        raise CheckpointError(f"{checkpoint} is not a `pvtseg train` checkpoint (no 'model' entry).")
    arch = ck.get("model_name", "pvt_v2_b0_segformer")
    sd = ck["model"] if raw or not ck.get("ema") else ck["ema"]["module"]
    sd = {k: v.detach().clone().float().contiguous() if v.is_floating_point() else v.clone() for k, v in sd.items()}
    names, palette, ignore, dataset = _classes(ck)
    model = create_model(arch, num_classes=len(names))
    model.load_state_dict(sd, strict=True)  # proves the keys are pvtseg's own
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    out = Path(out)
    atomic_write_bytes(out, data)
    m = meta_mod.make_meta(
        arch=arch, num_classes=len(names), height=int(size[0]), width=int(size[1]), output_kind="logits",
        output_dtype="float32", class_names=names, palette=palette,
        mean=list(MEAN), std=list(STD), precision="fp32", output_stride=4,
        checkpoint_sha256=hashlib.sha256(data).hexdigest(), dataset=dataset, ignore_index=ignore, **extra)
    side = meta_mod.write(out, m)
    for f in (out, side):
        os.chmod(f, 0o644)  # atomic temp files are created 0600
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pvtseg.training.ship_model", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, nargs=2, default=[384, 480], metavar=("H", "W"))
    ap.add_argument("--raw", action="store_true", help="ship the raw weights even if the run kept an EMA")
    args = ap.parse_args(argv)
    try:
        out = ship(args.checkpoint, args.out, tuple(args.size), raw=args.raw)
    except PvtsegError as e:
        print(f"ship_model: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {meta_mod.sidecar_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
