"""Class definitions: names, palette, ignore index, and how raw mask values map to class ids.

A mask pixel holds a raw value 0..255. `ClassSet.lut()` turns it into a training label:
a `remap` entry wins; otherwise a value below the class count is its own class id; the
ignore index stays ignored; anything else is an error the loader reports (with the files).
The ignore index must lie outside the classes (>= the class count, <= 255).

`classes.json` (generic folders, mmseg `img_dir/` + `ann_dir/` folders):

    {"names": ["road", "grass", "obstacle"],        # required: one name per class id
     "palette": [[128, 64, 128], [0, 200, 0], [220, 20, 60]],   # optional RGB per class
     "ignore_index": 255,                          # optional, default 255
     "remap": {"7": 0, "8": 1, "0": 255}}          # optional: raw mask value -> class id / ignore
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...errors import DataError
from ...meta import default_palette

INVALID = -1  # lut() entry for a raw value that is neither a class nor ignored
_KEYS = ("names", "palette", "ignore_index", "remap")


@dataclass(frozen=True)
class ClassSet:
    """Classes of a dataset; `remap` is a tuple of (raw mask value, class id or ignore_index)."""

    names: Tuple[str, ...]
    palette: Tuple[Tuple[int, int, int], ...]
    ignore_index: int = 255
    remap: Tuple[Tuple[int, int], ...] = ()
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def lut(self) -> np.ndarray:
        """int16[256]: raw mask value -> class id, ignore_index, or INVALID."""
        table = np.full(256, INVALID, np.int16)
        table[:self.num_classes] = np.arange(self.num_classes)
        table[self.ignore_index] = self.ignore_index
        for raw, cls in self.remap:
            table[raw] = cls
        return table

    def to_checkpoint(self) -> Dict[str, Any]:
        """Plain containers only, so a checkpoint holding them loads with weights_only=True."""
        return {"names": list(self.names), "palette": [list(c) for c in self.palette],
                "ignore_index": int(self.ignore_index)}

    @classmethod
    def build(cls, names: Sequence[str], palette: Optional[Sequence[Sequence[int]]] = None,
              ignore_index: int = 255, remap: Optional[Mapping[int, int]] = None, source: str = "") -> "ClassSet":
        return from_dict({"names": list(names), "palette": None if palette is None else [list(c) for c in palette],
                          "ignore_index": ignore_index, "remap": {str(k): v for k, v in (remap or {}).items()}},
                         source or "classes")


def _fail(where: str, msg: str) -> DataError:
    return DataError(f"{where}: {msg}. Fix the file (see `pvtseg train --help`, 'classes.json').")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _names(d: Mapping[str, Any], where: str) -> List[str]:
    names = d.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise _fail(where, '"names" must be a non-empty list of class names, e.g. ["road", "grass"]')
    if len(names) > 255:
        raise _fail(where, f"{len(names)} classes: labels are 8-bit, so at most 255 classes (+ the ignore index)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _fail(where, f"class names repeat: {', '.join(dup[:5])}")
    return [n.strip() for n in names]


def _palette(d: Mapping[str, Any], n: int, where: str) -> List[List[int]]:
    pal = d.get("palette")
    if pal is None:
        return default_palette(n)
    ok = isinstance(pal, list) and all(isinstance(c, list) and len(c) == 3 and all(_int(v) and 0 <= v <= 255 for v in c)
                                       for c in pal)
    if not ok:
        raise _fail(where, '"palette" must be a list of [r, g, b] colours with values 0..255')
    if len(pal) != n:
        raise _fail(where, f'"palette" has {len(pal)} colours for {n} classes: give one per class (or leave it out)')
    return [[int(v) for v in c] for c in pal]


def _remap(d: Mapping[str, Any], n: int, ignore: int, where: str) -> List[Tuple[int, int]]:
    raw = d.get("remap") or {}
    if not isinstance(raw, dict):
        raise _fail(where, '"remap" must be an object {"<mask value>": <class id>, ...}')
    out = []
    for k, v in raw.items():
        try:
            key = int(k)
        except (TypeError, ValueError):
            raise _fail(where, f'"remap" key {k!r} is not a mask value (an integer 0..255 written as a string)') from None
        if not 0 <= key <= 255:
            raise _fail(where, f'"remap" key {k!r}: mask values are 0..255')
        if not _int(v) or not (0 <= v < n or v == ignore):
            raise _fail(where, f'"remap" maps {k} to {v!r}: targets must be a class id 0..{n - 1} or the ignore '
                               f"index {ignore}")
        out.append((key, int(v)))
    return sorted(out)


def from_dict(d: Any, where: str = "classes") -> ClassSet:
    """Validate a classes.json-style dict (every problem named, with the fix)."""
    if not isinstance(d, dict):
        raise _fail(where, 'the file must hold a JSON object like {"names": ["road", "grass"]}')
    unknown = [k for k in d if k not in _KEYS]
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(map(repr, unknown))}: the keys are {', '.join(_KEYS)}")
    names = _names(d, where)
    ignore = d.get("ignore_index", 255)
    if ignore is None:
        ignore = 255
    if not _int(ignore) or not len(names) <= ignore <= 255:
        raise _fail(where, f'"ignore_index" {ignore!r} must be an integer from {len(names)} (the class count) to 255, '
                           "so it never collides with a class id")
    palette = _palette(d, len(names), where)
    remap = _remap(d, len(names), ignore, where)
    return ClassSet(tuple(names), tuple(tuple(c) for c in palette), int(ignore), tuple(remap), where)  # type: ignore[misc]


def load_classes_json(path: str | os.PathLike) -> ClassSet:
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}. Check the file's permissions.") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). Fix the file; "
                        'it should look like {"names": ["road", "grass"], "ignore_index": 255}.') from e
    return from_dict(d, str(path))
