"""What every layout shares: the Layout base, frame/mask pairing by name, decoding, problem reports.

Problems are collected over a whole split and raised as one DataError that names each kind
of problem, a few offending files and how many there are, so a broken dataset is fixed in
one pass instead of one file per run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type

import numpy as np

from ...errors import DataError
from .classes import INVALID, ClassSet

Pair = Tuple[Path, Path]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png",)
SHOW = 5  # offenders named per kind of problem


def _cv2():
    try:
        import cv2  # noqa: WPS433
    except ImportError as e:  # pragma: no cover - opencv is a dev/demo dependency
        raise DataError("OpenCV is needed to read datasets: pip install opencv-python-headless") from e
    return cv2


def check_root(data: str | os.PathLike, what: str = "dataset", default_hint: str = "") -> Path:
    """`data` as a Path when it is an existing folder, else a DataError saying what to pass."""
    root = Path(data)
    if not root.exists():
        raise DataError(f"{what} folder {root}{default_hint} does not exist. Pass --data PATH pointing at the "
                        "dataset folder (CamVid, Cityscapes, ADE20K / mmseg, or images/ + masks/ + classes.json).")
    if not root.is_dir():
        raise DataError(f"{what} path {root} is not a folder. Pass --data PATH pointing at the dataset folder.")
    return root


def list_files(folder: Path, suffixes: Sequence[str]) -> List[Path]:
    """Files under `folder` (recursively) with one of `suffixes`, hidden files skipped, in name order."""
    out = [p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file()
           and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(out)


def _shown(names: Sequence[str]) -> str:
    more = f", ... and {len(names) - SHOW} more" if len(names) > SHOW else ""
    return ", ".join(names[:SHOW]) + more


def match_pairs(images: Iterable[Path], masks: Iterable[Path], image_key: Callable[[Path], str],
                mask_key: Callable[[Path], str], where: str, rule: str) -> List[Pair]:
    """Pair frames with masks by key; DataError listing the unmatched ones of both sides."""
    by_key: Dict[str, Path] = {mask_key(m): m for m in masks}
    pairs, lonely = [], []
    for img in images:
        m = by_key.pop(image_key(img), None)
        if m is None:
            lonely.append(img)
        else:
            pairs.append((img, m))
    if lonely or by_key:
        lines = [f"{where}: {len(lonely) + len(by_key)} unmatched file(s) ({len(pairs)} pairs matched)"]
        if lonely:
            lines.append(f"  {len(lonely)} image(s) without a mask: {_shown([p.name for p in lonely])}")
        if by_key:
            lines.append(f"  {len(by_key)} mask(s) without an image: {_shown([p.name for p in by_key.values()])}")
        lines.append(f"Every frame needs its mask: {rule}. Add the missing files or remove the strays.")
        raise DataError("\n".join(lines))
    return pairs


class Problems:
    """Per-kind lists of offending files, raised together."""

    def __init__(self) -> None:
        self.kinds: Dict[str, List[str]] = {}
        self.files: set = set()

    def add(self, kind: str, path: Path, detail: str = "") -> None:
        self.kinds.setdefault(kind, []).append(path.name + (f" ({detail})" if detail else ""))
        self.files.add(path)

    def raise_if_any(self, where: str, frames: int, fixes: Dict[str, str]) -> None:
        if not self.kinds:
            return
        lines = [f"{where}: {len(self.files)} bad file(s) among {frames} frame pairs"]
        for kind, names in self.kinds.items():
            lines.append(f"  {kind} ({len(names)}): {_shown(names)}")
            if fixes.get(kind):
                lines.append(f"    fix: {fixes[kind]}")
        raise DataError("\n".join(lines))


UNREADABLE = "cannot decode image (unreadable or not an image)"
UNREADABLE_MASK = "cannot decode mask (unreadable or not a PNG)"
NOT_INDEX = "mask is not single-channel 8-bit class indices"
SIZE = "mask size differs from its image (they must match)"
VALUES = "mask values outside the classes"


def read_rgb(path: Path) -> Optional[np.ndarray]:
    cv2 = _cv2()
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_raw_mask(path: Path) -> Tuple[Optional[np.ndarray], str, str]:
    """(uint8 HxW raw values, "", "") or (None, problem kind, detail). Grey masks saved with
    3 equal channels, and 16-bit masks whose values fit 8 bits, are accepted as they are."""
    cv2 = _cv2()
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        return None, UNREADABLE_MASK, ""
    if m.ndim == 3:
        if m.shape[2] >= 3 and np.array_equal(m[..., 0], m[..., 1]) and np.array_equal(m[..., 0], m[..., 2]):
            m = m[..., 0]
        else:
            return None, NOT_INDEX, f"{m.shape[2]} channels"
    if m.dtype != np.uint8:
        if m.dtype == np.uint16 and int(m.max(initial=0)) <= 255:
            m = m.astype(np.uint8)
        else:
            return None, NOT_INDEX, f"{m.dtype} values up to {int(m.max(initial=0))}"
    return m, "", ""


def map_mask(raw: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Raw values -> uint8 training labels (callers have checked there is no INVALID value)."""
    return lut[raw].astype(np.uint8)


def check_values(raw: np.ndarray, lut: np.ndarray, counts: np.ndarray) -> List[int]:
    """Raw values with no class; adds the class pixel counts of the valid ones to `counts`."""
    hist = np.bincount(raw.ravel(), minlength=256)
    present = np.nonzero(hist)[0]
    bad = [int(v) for v in present if lut[v] == INVALID]
    n = len(counts)
    for v in present:
        c = int(lut[v])
        if 0 <= c < n:
            counts[c] += hist[v]
    return bad


def value_fix(classes: ClassSet) -> str:
    return (f"the classes ({classes.source or 'built in'}) are ids 0..{classes.num_classes - 1} and ignore "
            f"{classes.ignore_index}; map other mask values with \"remap\" in classes.json "
            '(e.g. {"remap": {"40": 3, "0": 255}}) or fix the masks')


def problem_fixes(classes: ClassSet) -> Dict[str, str]:
    return {
        UNREADABLE: "re-export or delete these frames (and their masks)",
        UNREADABLE_MASK: "re-export these masks as PNG",
        NOT_INDEX: "save masks as 8-bit single-channel PNGs whose pixel values are class ids (a colour-coded "
                   "or paletted mask must be converted to ids first)",
        SIZE: "resize each mask to its frame with nearest-neighbour, or re-export the pair",
        VALUES: value_fix(classes),
    }


class Layout:
    """A dataset folder layout. Subclasses set `name`, `split_dirs`, `builtin_classes` and implement
    detect/pairs."""

    name = "?"
    key = "?"
    summary = ""
    # canonical split -> folder name in this layout
    split_dirs: Dict[str, str] = {"train": "train", "val": "val", "test": "test"}
    # the classes of a folder without classes.json; None: the layout needs one
    builtin_classes: Optional[ClassSet] = None

    def __init__(self, root: Path, classes: ClassSet):
        self.root, self.classes = Path(root), classes

    @classmethod
    def detect(cls, root: Path) -> bool:  # pragma: no cover - every layout overrides it
        raise NotImplementedError

    @classmethod
    def open(cls, root: Path) -> "Layout":
        """The layout at `root`: ROOT/classes.json when present, else `builtin_classes`."""
        classes = classes_override(root) or cls.builtin_classes
        if classes is None:
            raise DataError(_classes_missing(root, cls))
        return cls(root, classes)

    def pairs(self, split: str) -> List[Pair]:  # pragma: no cover - every layout overrides it
        raise NotImplementedError

    def split_dir(self, split: str) -> str:
        if split not in self.split_dirs:
            raise DataError(f"unknown split {split!r}: a {self.name} folder has "
                            f"{', '.join(self.split_dirs)}. Pass one of those.")
        return self.split_dirs[split]

    def describe(self) -> str:
        c = self.classes
        return (f"{self.name} layout ({self.summary}) at {self.root}: {c.num_classes} classes"
                f"{' from ' + c.source if c.source else ''}, ignore index {c.ignore_index}")


def _classes_missing(root: Path, layout: Type[Layout]) -> str:
    example = json.dumps({"names": ["background", "road", "obstacle"], "ignore_index": 255})
    return (f"{root} is a {layout.name} folder ({layout.summary}) but has no classes.json. Write "
            f"{root / 'classes.json'} naming one class per mask value 0..N-1, e.g. {example} "
            '(optional: "palette": [[r, g, b], ...], "remap": {"<mask value>": <class id>}).')


def classes_override(root: Path) -> Optional[ClassSet]:
    """ROOT/classes.json when present (it replaces a layout's built-in classes)."""
    from .classes import load_classes_json

    p = root / "classes.json"
    return load_classes_json(p) if p.is_file() else None
