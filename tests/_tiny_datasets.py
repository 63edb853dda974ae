"""Tiny datasets in every layout pvtseg reads, built from a few real CamVid frames (64x80).

The CamVid classes are merged into 5 ("remapped classes") and written with each layout's own
mask encoding; `expected_labels` says, from this file's own tables, what a reader must return.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from _camvid_synth import REAL_CAMVID

H, W = 64, 80
# CamVid id -> merged class: Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist
MERGE = [0, 1, 1, 3, 3, 2, 1, 1, 4, 4, 4]
MERGED_NAMES = ["sky", "structure", "vegetation", "ground", "object"]
MERGED_PALETTE = [[70, 130, 180], [70, 70, 70], [107, 142, 35], [128, 64, 128], [220, 20, 60]]
UNLABELLED = 11  # CamVid's ignore id

# Cityscapes label ids for the CamVid classes, and the trainIds the benchmark maps them to
# (public Cityscapes label table: sky 23->10, building 11->2, pole 17->5, road 7->0,
# sidewalk 8->1, vegetation 21->8, traffic sign 20->7, fence 13->4, car 26->13,
# person 24->11, bicycle 33->18; unlabeled 0 and parking 9 -> 255)
CITY_LABEL_ID = [23, 11, 17, 7, 8, 21, 20, 13, 26, 24, 33]
CITY_TRAIN_ID = [10, 2, 5, 0, 1, 8, 7, 4, 13, 11, 18]

needs_camvid = pytest.mark.skipif(not (REAL_CAMVID / "train" / "images").is_dir(),
                                  reason="../shared/data/camvid is not present")


def camvid_frames(split: str, n: int) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """First n (name, BGR 64x80 frame, CamVid label 64x80) of a real CamVid split."""
    import cv2

    names = sorted(p.stem for p in (REAL_CAMVID / split / "images").glob("*.jpg"))[:n]
    out = []
    for name in names:
        bgr = cv2.imread(str(REAL_CAMVID / split / "images" / f"{name}.jpg"), cv2.IMREAD_COLOR)
        lab = cv2.imread(str(REAL_CAMVID / split / "labels" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        out.append((name, cv2.resize(bgr, (W, H), interpolation=cv2.INTER_AREA),
                    cv2.resize(lab, (W, H), interpolation=cv2.INTER_NEAREST)))
    return out


def merged(lab: np.ndarray, ignore: int = 255) -> np.ndarray:
    table = np.full(256, ignore, np.uint8)
    table[:11] = MERGE
    return table[lab]


def _write(path: Path, img: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img), path


def make_generic(root: Path, n_train: int = 4, n_val: int = 2, img_ext: str = ".jpg") -> Path:
    """images/{train,val} + masks/{train,val} with raw values 10*(CamVid id + 1) (0 = unlabelled),
    classes.json merging them into 5 classes through "remap"."""
    for split, n in (("train", n_train), ("val", n_val)):
        for name, bgr, lab in camvid_frames(split, n):
            raw = np.where(lab == UNLABELLED, 0, (lab.astype(np.int32) + 1) * 10).astype(np.uint8)
            _write(root / "images" / split / f"{name}{img_ext}", bgr)
            _write(root / "masks" / split / f"{name}.png", raw)
    remap = {str((c + 1) * 10): MERGE[c] for c in range(11)}
    remap["0"] = 255
    (root / "classes.json").write_text(json.dumps({"names": MERGED_NAMES, "palette": MERGED_PALETTE,
                                                   "ignore_index": 255, "remap": remap}))
    return root


def make_camvid(root: Path, n: int = 3) -> Path:
    """CamVid layout (raw CamVid ids) + a classes.json merging them into 5 classes."""
    for split in ("train", "val"):
        for name, bgr, lab in camvid_frames(split, n):
            _write(root / split / "images" / f"{name}.jpg", bgr)
            _write(root / split / "labels" / f"{name}.png", lab)
    remap = {str(c): MERGE[c] for c in range(11)}
    remap[str(UNLABELLED)] = 255
    (root / "classes.json").write_text(json.dumps({"names": MERGED_NAMES, "remap": remap}))
    return root


def make_cityscapes(root: Path, n: int = 3) -> Path:
    """leftImg8bit/ + gtFine/ (two cities) with label ids; a parking stripe (id 9) on top."""
    ids = np.zeros(256, np.uint8)
    ids[:11] = CITY_LABEL_ID
    for split in ("train", "val"):
        for k, (name, bgr, lab) in enumerate(camvid_frames(split, n)):
            city = "aachen" if k % 2 == 0 else "bremen"
            stem = f"{city}_{k:06d}_000019"
            raw = ids[lab]  # unlabelled -> 0
            raw[:2] = 9  # parking: not one of the 19 classes
            _write(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", bgr)
            _write(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)
            _write(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", bgr)  # ignored
    return root


def make_ade(root: Path, n: int = 3) -> Path:
    """ADEChallengeData2016 style: masks hold class + 1, 0 = other (ignored)."""
    for split, sub in (("train", "training"), ("val", "validation")):
        for name, bgr, lab in camvid_frames(split, n):
            raw = np.where(lab == UNLABELLED, 0, lab.astype(np.int32) + 1).astype(np.uint8)
            _write(root / "images" / sub / f"ADE_{name}.jpg", bgr)
            _write(root / "annotations" / sub / f"ADE_{name}.png", raw)
    return root


def make_mmseg(root: Path, n: int = 3) -> Path:
    """img_dir/ + ann_dir/ with raw CamVid ids; classes.json: 11 names, ignore index 11."""
    from pvtseg.models.camvid import CLASS_NAMES

    for split in ("train", "val"):
        for name, bgr, lab in camvid_frames(split, n):
            _write(root / "img_dir" / split / f"{name}.jpg", bgr)
            _write(root / "ann_dir" / split / f"{name}.png", lab)
    (root / "classes.json").write_text(json.dumps({"names": list(CLASS_NAMES), "ignore_index": 11}))
    return root


def expected_labels(layout: str, split: str, n: int) -> Dict[str, np.ndarray]:
    """What a reader must return per frame name, from the tables above (not from pvtseg)."""
    out = {}
    for k, (name, _, lab) in enumerate(camvid_frames(split, n)):
        if layout in ("generic", "camvid"):
            out[name] = merged(lab)
        elif layout == "cityscapes":
            table = np.full(256, 255, np.uint8)
            table[:11] = CITY_TRAIN_ID
            exp = table[lab]
            exp[:2] = 255
            out[f"{'aachen' if k % 2 == 0 else 'bremen'}_{k:06d}_000019_leftImg8bit"] = exp
        elif layout == "ade20k":
            out[f"ADE_{name}"] = np.where(lab == UNLABELLED, 255, lab).astype(np.uint8)
        elif layout == "mmseg":
            out[name] = lab.copy()
    return out
