"""Reading a split: every pair checked once, decoded into memory when it fits, else read lazily.

    split = load_split("data/mine", "train")   # any layout; a Layout object works too
    split.images[i], split.labels[i]           # RGB uint8 HxWx3, uint8 HxW class ids / ignore
    split.class_pixels                         # pixels per class (for balanced loss weights)

A split whose decoded frames fit in `max_decoded_gb` and share one size is stacked into two
arrays and cached as .npy under `cache_dir` (keyed by the layout, the class mapping and the
files' names, sizes and mtimes). Larger or mixed-size splits stay on disk (`LazyFrames`,
decoded at each access); their check result is cached as a small JSON so the next start
does not read every file again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import DataError
from ...io_utils import atomic_path, atomic_write_text
from .camvid import PROJECT_ROOT
from .classes import INVALID, ClassSet
from .reading import (SIZE, UNREADABLE, VALUES, Layout, Pair, Problems, check_values, map_mask, problem_fixes,
                      read_raw_mask, read_rgb)

DEFAULT_CACHE = PROJECT_ROOT / "runs" / "cache"
DEFAULT_MAX_DECODED_GB = 4.0


class LazyFrames:
    """Frames (lut None: RGB images) or masks (lut given: mapped labels) decoded at each access."""

    def __init__(self, paths: Sequence[Path], lut: Optional[np.ndarray] = None):
        self.paths, self.lut = list(paths), lut

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, path: Path) -> np.ndarray:
        if self.lut is None:
            rgb = read_rgb(path)
            if rgb is None:
                raise DataError(f"cannot decode image {path} (it was readable when the split was checked): "
                                "restore the file, or delete the cache folder to re-check the split.")
            return rgb
        raw, kind, _ = read_raw_mask(path)
        if raw is None or (self.lut[raw] == INVALID).any():
            raise DataError(f"mask {path} changed since the split was checked ({kind or VALUES}): restore it, or "
                            "delete the cache folder to re-check the split.")
        return map_mask(raw, self.lut)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._read(p) for p in self.paths[i]]
        return self._read(self.paths[int(i)])

    def subset(self, idx: Sequence[int]) -> "LazyFrames":
        return LazyFrames([self.paths[i] for i in idx], self.lut)


def _take(frames: Any, idx: List[int]) -> Any:
    if isinstance(frames, np.ndarray):
        return frames[idx]
    if isinstance(frames, LazyFrames):
        return frames.subset(idx)
    return [frames[i] for i in idx]


@dataclass
class Split:
    """A split: `images` / `labels` are stacked arrays, lists of arrays, or LazyFrames."""

    name: str
    images: Any
    labels: Any
    names: List[str]
    class_pixels: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx: Sequence[int]) -> "Split":
        idx = [int(i) for i in idx]
        return Split(self.name, _take(self.images, idx), _take(self.labels, idx), [self.names[i] for i in idx])


def scan_pairs(pairs: Sequence[Pair], classes: ClassSet, where: str,
               budget_bytes: float) -> Tuple[Optional[list], Optional[list], np.ndarray]:
    """Decode and check every pair. Returns (images, labels, class pixel counts); the lists are
    None once the decoded split outgrows `budget_bytes`. Raises one DataError for all problems."""
    lut, counts, probs = classes.lut(), np.zeros(classes.num_classes, np.int64), Problems()
    imgs: Optional[list] = []
    labs: Optional[list] = []
    used = 0
    for img_p, lab_p in pairs:
        rgb = read_rgb(img_p)
        raw, kind, detail = read_raw_mask(lab_p)
        if rgb is None:
            probs.add(UNREADABLE, img_p)
        if raw is None:
            probs.add(kind, lab_p, detail)
            continue
        bad = check_values(raw, lut, counts)  # checked even beside a broken frame: one pass finds all
        if bad:
            probs.add(VALUES, lab_p, "value" + ("s " if len(bad) > 1 else " ") + ", ".join(map(str, bad[:6]))
                      + (", ..." if len(bad) > 6 else ""))
        if rgb is None:
            continue
        if raw.shape != rgb.shape[:2]:
            probs.add(SIZE, lab_p, f"{raw.shape[1]}x{raw.shape[0]} vs image {rgb.shape[1]}x{rgb.shape[0]}")
            continue
        if bad:
            continue
        used += rgb.nbytes + raw.nbytes
        if imgs is not None and labs is not None and used <= budget_bytes:
            imgs.append(rgb)
            labs.append(map_mask(raw, lut))
        else:
            imgs = labs = None  # too big to hold: read from disk at each step instead
    probs.raise_if_any(where, len(pairs), problem_fixes(classes))
    return imgs, labs, counts


def _cache_tag(layout: Layout, split: str, pairs: Sequence[Pair]) -> str:
    key = hashlib.sha1(layout.key.encode() + layout.classes.lut().tobytes())
    for img, lab in pairs:
        for p in (img, lab):
            st = p.stat()
            key.update(f"{p.relative_to(layout.root).as_posix()}:{st.st_size}:{int(st.st_mtime)};".encode())
    return f"{layout.key}_{split}_{len(pairs)}_{key.hexdigest()[:12]}"


def _counts(labels: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(labels.ravel(), minlength=256)[:n].astype(np.int64)


def _from_cache(cdir: Path, tag: str, split: str, pairs: Sequence[Pair], names: List[str],
                classes: ClassSet) -> Optional[Split]:
    fi, fl, fs = cdir / f"{tag}_images.npy", cdir / f"{tag}_labels.npy", cdir / f"{tag}_summary.json"
    try:
        if fi.is_file() and fl.is_file():
            labels = np.load(fl)
            return Split(split, np.load(fi), labels, names, _counts(labels, classes.num_classes))
        if fs.is_file():
            counts = np.asarray(json.loads(fs.read_text())["class_pixels"], np.int64)
            if counts.shape == (classes.num_classes,):
                return Split(split, LazyFrames([p[0] for p in pairs]), LazyFrames([p[1] for p in pairs], classes.lut()),
                             names, counts)
    except (OSError, ValueError, KeyError):
        pass  # unreadable cache: check and decode again
    return None


def _to_cache(cdir: Path, tag: str, split: Split) -> None:
    if isinstance(split.images, np.ndarray):
        for path, arr in ((cdir / f"{tag}_images.npy", split.images), (cdir / f"{tag}_labels.npy", split.labels)):
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, arr)
    elif isinstance(split.images, LazyFrames) and split.class_pixels is not None:
        atomic_write_text(cdir / f"{tag}_summary.json", json.dumps({"class_pixels": split.class_pixels.tolist()}))


def load_split(data: "str | os.PathLike | Layout | None", split: str,
               cache_dir: Optional[str | os.PathLike] = DEFAULT_CACHE, limit: Optional[int] = None,
               max_decoded_gb: float = DEFAULT_MAX_DECODED_GB) -> Split:
    """Check and read one split of any layout (`data`: a folder, detected, or a Layout)."""
    from .detect import open_dataset

    layout = data if isinstance(data, Layout) else open_dataset(data)
    pairs = layout.pairs(split)
    if limit is not None:
        pairs = pairs[:limit]
    names = [p[0].stem for p in pairs]
    cdir = Path(cache_dir) if cache_dir is not None else None
    tag = _cache_tag(layout, split, pairs)
    if cdir is not None:
        hit = _from_cache(cdir, tag, split, pairs, names, layout.classes)
        if hit is not None:
            return hit
    where = f"{layout.root} ({layout.name} layout, split {split})"
    imgs, labs, counts = scan_pairs(pairs, layout.classes, where, max_decoded_gb * 1e9)
    if imgs is None or labs is None:
        out = Split(split, LazyFrames([p[0] for p in pairs]), LazyFrames([p[1] for p in pairs], layout.classes.lut()),
                    names, counts)
    elif len({im.shape for im in imgs}) == 1:
        out = Split(split, np.stack(imgs), np.stack(labs), names, counts)
    else:
        out = Split(split, imgs, labs, names, counts)  # mixed sizes: kept as lists, not cached
    if cdir is not None:
        _to_cache(cdir, tag, out)
    return out
