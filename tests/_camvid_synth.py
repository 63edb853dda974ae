"""Helpers for the data / train / eval tests: a tiny synthetic CamVid folder + the real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REAL_CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def colour_frame(lab: np.ndarray) -> np.ndarray:
    """An RGB frame whose colour encodes its label (class c -> a fixed colour), so a
    'model' reading colours is exact and flips/crops can be checked pixel by pixel."""
    rgb = np.zeros(lab.shape + (3,), np.uint8)
    rgb[..., 0] = (lab.astype(np.int32) * 20) % 256
    rgb[..., 1] = 255 - (lab.astype(np.int32) * 20) % 256
    rgb[..., 2] = 60
    return rgb


def make_synth_camvid(root: Path, n: int = 5, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    """root/{train,val,test}/{images,labels}: PNG frames (lossless) + PNG labels, blocky classes 0..11."""
    import cv2

    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            small = rng.integers(0, 12, size=(h // 8, w // 8)).astype(np.uint8)
            lab = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
            name = f"Seq05VD_f{i:05d}" if split == "test" and i % 2 == 0 else f"0001TP_{i:06d}"
            cv2.imwrite(str(root / split / "images" / f"{name}.png"), cv2.cvtColor(colour_frame(lab), cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / split / "labels" / f"{name}.png"), lab)
    return root
