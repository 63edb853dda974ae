"""Test helper: small exported artifacts (TorchScript + ONNX + sidecar) for runtime tests.

`output`: "labels" (uint8 at the input size), "logits" (stride 1) or "logits_4x" (stride 4).
Made with pvtseg.export.export_model (self-check off: the export tests check parity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def make_artifacts(out_dir: Path, name: str = "tiny", *, arch: str = "pvt_v2_b0_segformer", height: int = 128,
                   width: int = 160, output: str = "labels", seed: int = 0, verify: bool = False,
                   formats=("onnx", "torchscript")) -> Dict[str, Path]:
    import torch

    from pvtseg.export import export_model
    from pvtseg.models import camvid, create_model

    torch.manual_seed(seed)
    model = create_model(arch, num_classes=11).eval()
    out = Path(out_dir) / name
    return {k: Path(v) for k, v in export_model(
        model, out=str(out), arch=arch, height=height, width=width, formats=tuple(formats), output=output,
        class_names=camvid.CLASS_NAMES, palette=camvid.PALETTE, mean=camvid.MEAN, std=camvid.STD,
        verify=verify, log=lambda *a, **k: None).items()}


_CACHE: Dict[tuple, Dict[str, Path]] = {}
_TMP = None


def cached_artifacts(name: str = "tiny", **kw) -> Dict[str, Path]:
    """make_artifacts once per process (several test modules share the same small models)."""
    import atexit
    import shutil
    import tempfile

    global _TMP
    key = (name,) + tuple(sorted(kw.items()))
    if key not in _CACHE:
        if _TMP is None:
            _TMP = Path(tempfile.mkdtemp(prefix="pvtseg_rt_"))
            atexit.register(shutil.rmtree, _TMP, True)
        _CACHE[key] = make_artifacts(_TMP, f"{name}_{len(_CACHE)}", **kw)
    return _CACHE[key]


def camvid_frames(n: int = 8, split: str = "test"):
    """The first n CamVid frames of a split (BGR), or [] when shared/ is absent."""
    import cv2

    d = CAMVID / split / "images"
    if not d.is_dir():
        return []
    paths = sorted(d.glob("*.jpg"))
    step = max(1, len(paths) // n)
    return [cv2.imread(str(p)) for p in paths[::step][:n]]


def write_video(path: Path, n: int = 20, h: int = 96, w: int = 128, fps: float = 10.0) -> Path:
    """A small mp4 whose frame i has blue channel = 10 * i (so order can be checked)."""
    import cv2
    import numpy as np

    wr = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    assert wr.isOpened(), "OpenCV cannot write mp4 here"
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :, 0] = (10 * i) % 256
        img[:, :, 1] = 60
        cv2.circle(img, (8 + (i * 5) % (w - 16), h // 2), min(h, w) // 5, (0, 200, 255), -1)
        wr.write(img)
    wr.release()
    return path
