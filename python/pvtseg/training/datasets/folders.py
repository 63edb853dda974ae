"""Two-folder layouts: frames in one tree, masks (PNG, same relative name) in another.

- generic:  images/{train,val,test}/... + masks/{train,val,test}/....png + classes.json
- ADE20K:   images/{training,validation}/... + annotations/{training,validation}/....png
            (ADEChallengeData2016: mask 0 = "other", ignored; 1..150 -> classes 0..149)
- mmseg:    img_dir/{train,val,test}/... + ann_dir/{train,val,test}/....png + classes.json

A frame and its mask are matched by their path below the split folder without the suffix
(`images/train/a/b.jpg` <-> `masks/train/a/b.png`). A `classes.json` in the root is required
for generic and mmseg folders and replaces the built-in classes of ADE20K.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from ...errors import DataError
from ...meta import default_palette
from .classes import ClassSet
from .reading import IMAGE_SUFFIXES, MASK_SUFFIXES, Layout, Pair, list_files, match_pairs

# ADE20K SceneParsing (150 classes), in class-id order (mask value - 1); the public class list
ADE20K_NAMES = tuple(n.strip() for n in """
wall, building, sky, floor, tree, ceiling, road, bed, windowpane, grass, cabinet, sidewalk, person, earth, door,
table, mountain, plant, curtain, chair, car, water, painting, sofa, shelf, house, sea, mirror, rug, field, armchair,
seat, fence, desk, rock, wardrobe, lamp, bathtub, railing, cushion, base, box, column, signboard, chest of drawers,
counter, sand, sink, skyscraper, fireplace, refrigerator, grandstand, path, stairs, runway, case, pool table, pillow,
screen door, stairway, river, bridge, bookcase, blind, coffee table, toilet, flower, book, hill, bench, countertop,
stove, palm, kitchen island, computer, swivel chair, boat, bar, arcade machine, hovel, bus, towel, light, truck,
tower, chandelier, awning, streetlight, booth, television receiver, airplane, dirt track, apparel, pole, land,
bannister, escalator, ottoman, bottle, buffet, poster, stage, van, ship, fountain, conveyer belt, canopy, washer,
plaything, swimming pool, stool, barrel, basket, waterfall, tent, bag, minibike, cradle, oven, ball, food, step,
tank, trade name, microwave, pot, animal, bicycle, lake, dishwasher, screen, blanket, sculpture, hood, sconce, vase,
traffic light, tray, ashcan, fan, pier, crt screen, plate, monitor, bulletin board, shower, radiator, glass, clock,
flag""".replace("\n", " ").split(","))

ADE20K_CLASSES = ClassSet.build(ADE20K_NAMES, default_palette(len(ADE20K_NAMES)), 255,
                                {0: 255, **{v: v - 1 for v in range(1, len(ADE20K_NAMES) + 1)}},
                                "the ADE20K table (mask value - 1; 0 ignored)")


def _rel_key(folder: Path):
    return lambda p: p.relative_to(folder).with_suffix("").as_posix()


class FolderLayout(Layout):
    """Base of the two-folder layouts: subclasses name the folders."""

    image_dir = "images"
    mask_dir = "masks"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / cls.image_dir).is_dir() and (root / cls.mask_dir).is_dir()

    def available(self) -> List[str]:
        return [s for s, d in self.split_dirs.items() if (self.root / self.image_dir / d).is_dir()]

    def pairs(self, split: str) -> List[Pair]:
        sub = self.split_dir(split)
        img_dir, ann_dir = self.root / self.image_dir / sub, self.root / self.mask_dir / sub
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                have = ", ".join(self.available()) or "none"
                raise DataError(f"{d} is missing: a {self.name} folder keeps split {split!r} in "
                                f"{self.image_dir}/{sub}/ and {self.mask_dir}/{sub}/ (splits present: {have}). "
                                f"Add it, or pick another split (e.g. --val-split train).")
        images = list_files(img_dir, IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{img_dir} holds no image files ({', '.join(IMAGE_SUFFIXES)}). Check --data "
                            f"(got {self.root}).")
        masks = list_files(ann_dir, MASK_SUFFIXES)
        return match_pairs(images, masks, _rel_key(img_dir), _rel_key(ann_dir), str(img_dir),
                           f"{self.image_dir}/{sub}/NAME.<jpg|png> needs {self.mask_dir}/{sub}/NAME.png")


class GenericLayout(FolderLayout):
    name = "generic"
    key = "generic"
    summary = "images/SPLIT + masks/SPLIT + classes.json"


class MmsegLayout(FolderLayout):
    name = "mmseg"
    key = "mmseg"
    summary = "img_dir/SPLIT + ann_dir/SPLIT + classes.json"
    image_dir, mask_dir = "img_dir", "ann_dir"


class ADE20KLayout(FolderLayout):
    name = "ADE20K"
    key = "ade20k"
    summary = "images/training|validation + annotations/training|validation"
    image_dir, mask_dir = "images", "annotations"
    builtin_classes = ADE20K_CLASSES
    split_dirs = {"train": "training", "val": "validation"}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / "images" / "training").is_dir() and (root / "annotations" / "training").is_dir()
