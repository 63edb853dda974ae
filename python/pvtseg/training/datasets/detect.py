"""Which layout a dataset folder has: the first whose folders are there, in this order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Type

from ...errors import DataError
from .camvid import DEFAULT_DATA, CamVidLayout
from .cityscapes import CityscapesLayout
from .folders import ADE20KLayout, GenericLayout, MmsegLayout
from .reading import Layout, check_root

# ADE20K before generic: both keep frames in images/, they differ in the mask folder
LAYOUTS: List[Type[Layout]] = [CityscapesLayout, ADE20KLayout, GenericLayout, MmsegLayout, CamVidLayout]


def detect_layout(root: Path) -> Type[Layout]:
    for layout in LAYOUTS:
        if layout.detect(root):
            return layout
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not p.name.startswith("."))
    shown = ", ".join(found[:10]) + (f", ... ({len(found) - 10} more)" if len(found) > 10 else "")
    known = "; ".join(f"{layout.name}: {layout.summary}" for layout in LAYOUTS)
    raise DataError(f"{root} is not a dataset folder pvtseg knows (it holds: {shown or 'nothing'}). "
                    f"Layouts: {known}. Point --data at the folder that holds those.")


def open_dataset(data: Optional[str | os.PathLike] = None) -> Layout:
    """The Layout of `data` (default: CamVid at ../shared/data/camvid), classes read."""
    if data is None:
        root = check_root(DEFAULT_DATA, "CamVid", " (the default, ../shared/data/camvid relative to the project root)")
    else:
        root = check_root(data)
    return detect_layout(root).open(root)
