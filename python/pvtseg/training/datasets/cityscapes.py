"""Cityscapes: `leftImg8bit/SPLIT/CITY/X_leftImg8bit.png` + `gtFine/SPLIT/CITY/X_gtFine_labelIds.png`.

The masks hold the 34 Cityscapes label ids; training uses the 19 evaluation classes
("trainIds"), every other label id is ignored (255), as the benchmark does. The table
below is the public Cityscapes label definition (cityscapesScripts' labels.py), written
out here as (label id, trainId) facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from ...errors import DataError
from .classes import ClassSet
from .reading import Layout, Pair, list_files, match_pairs

# the 19 trainIds in order: (name, RGB colour of the official colour maps)
TRAIN_CLASSES = (
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)), ("fence", (190, 153, 153)), ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)), ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)), ("car", (0, 0, 142)), ("truck", (0, 0, 70)), ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)),
)
# label id -> trainId for the 19 evaluated classes; label ids 0..33 not listed are ignored
# (unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground,
# parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer)
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                  24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_LABEL_IDS = 34
IGNORE = 255

CITYSCAPES_CLASSES = ClassSet.build(
    [n for n, _ in TRAIN_CLASSES], [list(c) for _, c in TRAIN_CLASSES], IGNORE,
    {i: LABEL_TO_TRAIN.get(i, IGNORE) for i in range(NUM_LABEL_IDS)}, "the Cityscapes label table (labelIds -> trainIds)")

IMG_TAIL, MASK_TAIL = "_leftImg8bit", "_gtFine_labelIds"


def _key(folder: Path, tail: str):
    def key(p: Path) -> str:
        rel = p.relative_to(folder).with_suffix("").as_posix()
        return rel[:-len(tail)] if rel.endswith(tail) else rel
    return key


class CityscapesLayout(Layout):
    name = "Cityscapes"
    key = "cityscapes"
    summary = "leftImg8bit/ + gtFine/ labelIds -> 19 trainIds"
    builtin_classes = CITYSCAPES_CLASSES

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()

    def pairs(self, split: str) -> List[Pair]:
        sub = self.split_dir(split)
        img_dir, ann_dir = self.root / "leftImg8bit" / sub, self.root / "gtFine" / sub
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise DataError(f"{d} is missing: a Cityscapes folder needs leftImg8bit/{sub}/CITY/*_leftImg8bit.png "
                                f"and gtFine/{sub}/CITY/*_gtFine_labelIds.png.")
        images = [p for p in list_files(img_dir, (".png",)) if p.stem.endswith(IMG_TAIL)]
        masks = [p for p in list_files(ann_dir, (".png",)) if p.stem.endswith(MASK_TAIL)]
        if not images:
            raise DataError(f"{img_dir} holds no *_leftImg8bit.png frames. Check --data (got {self.root}).")
        return match_pairs(images, masks, _key(img_dir, IMG_TAIL), _key(ann_dir, MASK_TAIL), str(img_dir),
                           "CITY/X_leftImg8bit.png needs gtFine/SPLIT/CITY/X_gtFine_labelIds.png")
