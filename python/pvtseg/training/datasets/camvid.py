"""CamVid (SegNet split): `SPLIT/images/NAME.jpg` + `SPLIT/labels/NAME.png` (see
../shared/data/camvid/README.md). Labels are class ids 0..10, 11 = unlabelled (ignored);
255 is read as ignored too. A `classes.json` in the root replaces the 11 CamVid classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from ...errors import DataError
from ...io_utils import atomic_path
from ...models.camvid import CLASS_NAMES, IGNORE_INDEX, PALETTE
from .classes import ClassSet
from .reading import IMAGE_SUFFIXES, Layout, Pair, _cv2, check_root, match_pairs

SPLITS = ("train", "val", "test")
PROJECT_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "camvid"

CAMVID_CLASSES = ClassSet(tuple(CLASS_NAMES), tuple(tuple(c) for c in PALETTE), IGNORE_INDEX,  # type: ignore[misc]
                          ((255, IGNORE_INDEX),), "the CamVid (SegNet) table")


def find_camvid(data: Optional[str | os.PathLike] = None) -> Path:
    """Resolve the CamVid folder: `data` if given, else ../shared/data/camvid beside the project."""
    hint = "" if data is not None else " (the default, ../shared/data/camvid relative to the project root)"
    return check_root(data if data is not None else DEFAULT_DATA, "CamVid", hint)


def list_split(root: str | os.PathLike, split: str) -> List[Pair]:
    """(image, label) path pairs of a CamVid split in name order; DataError if anything is missing."""
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    sdir = root / split
    img_dir, lab_dir = sdir / "images", sdir / "labels"
    for d in (sdir, img_dir, lab_dir):
        if not d.is_dir():
            raise DataError(f"{d} is missing: a CamVid folder needs {split}/images/*.jpg and "
                            f"{split}/labels/*.png. Check --data (got {root}).")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not images:
        raise DataError(f"{img_dir} holds no .jpg/.png frames. Check --data (got {root}).")
    labels = sorted(p for p in lab_dir.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
    return match_pairs(images, labels, lambda p: p.stem, lambda p: p.stem, f"{sdir}",
                       f"{split}/images/NAME.jpg needs {split}/labels/NAME.png")


class CamVidLayout(Layout):
    name = "CamVid"
    key = "camvid"
    summary = "SPLIT/images + SPLIT/labels"
    builtin_classes = CAMVID_CLASSES

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / s / "images").is_dir() and (root / s / "labels").is_dir() for s in SPLITS)

    def pairs(self, split: str) -> List[Pair]:
        return list_split(self.root, split)


def make_clip(data: Optional[str | os.PathLike] = None, out: str | os.PathLike = "models/samples/camvid_seq05vd.mp4",
              prefix: str = "Seq05VD", split: str = "test", fps: float = 6.0, max_frames: Optional[int] = 100) -> Path:
    """Write the first `max_frames` frames of one sequence (in name order) as an mp4v clip.

    OpenCV's mp4v writer takes no bitrate setting and spends ~46 KB on each 480x360 CamVid
    frame (they are 1 s of driving apart), so 100 frames keep the clip under 5 MB.
    """
    cv2 = _cv2()
    pairs = [p for p in list_split(find_camvid(data), split) if p[0].name.startswith(prefix)]
    if not pairs:
        raise DataError(f"no frames named {prefix}* in {split}/images under {find_camvid(data)}.")
    if max_frames:
        pairs = pairs[:max_frames]
    first = cv2.imread(str(pairs[0][0]))
    h, w = first.shape[:2]
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp_mp4 = tmp.with_suffix(".mp4")  # VideoWriter picks the container from the suffix
        vw = cv2.VideoWriter(str(tmp_mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not vw.isOpened():
            raise DataError(f"OpenCV cannot write {tmp_mp4} with the mp4v codec.")
        try:
            for img, _ in pairs:
                frame = cv2.imread(str(img))
                if frame.shape[:2] != (h, w):
                    frame = cv2.resize(frame, (w, h))
                vw.write(frame)
        finally:
            vw.release()
        os.replace(tmp_mp4, tmp)
    os.chmod(out, 0o644)  # atomic temp files are created 0600
    return out
