"""Segmentation datasets: layouts detected from the folder, one reader, one augmentation.

    layout = open_dataset("data/mine")        # CamVid, Cityscapes, ADE20K, mmseg or generic
    print(layout.describe())                  # which layout was found, classes, ignore index
    train = load_split(layout, "train")       # checked once; DataError lists every bad file
    ds = SegTrain(train, TrainTransform(crop=(256, 320), ignore_index=layout.classes.ignore_index,
                                        num_classes=layout.classes.num_classes))

Layouts (camvid.py, cityscapes.py, folders.py), detection order in detect.py; classes.json
and the raw-mask-value mapping in classes.py; checking, caching and lazy reading in
splits.py; normalisation and augmentation in transforms.py.
"""

from .camvid import CAMVID_CLASSES, DEFAULT_DATA, PROJECT_ROOT, SPLITS, CamVidLayout, find_camvid, list_split, make_clip
from .cityscapes import CITYSCAPES_CLASSES, LABEL_TO_TRAIN, CityscapesLayout
from .classes import ClassSet, from_dict as classes_from_dict, load_classes_json
from .detect import LAYOUTS, detect_layout, open_dataset
from .folders import ADE20K_CLASSES, ADE20KLayout, GenericLayout, MmsegLayout
from .reading import Layout
from .splits import DEFAULT_CACHE, DEFAULT_MAX_DECODED_GB, LazyFrames, Split, load_split, scan_pairs
from .transforms import (SegTrain, TrainTransform, balanced_weights, normalize,
                         photometric_jitter, resize_image, resize_label, weights_from_counts)
from ...models.camvid import IGNORE_INDEX, MEAN, NUM_CLASSES, STD
from ...errors import DataError

__all__ = [
    "ADE20K_CLASSES", "ADE20KLayout", "CAMVID_CLASSES", "CITYSCAPES_CLASSES", "CamVidLayout",
    "CityscapesLayout", "ClassSet", "DEFAULT_CACHE", "DEFAULT_DATA", "DEFAULT_MAX_DECODED_GB", "DataError",
    "GenericLayout", "IGNORE_INDEX", "LABEL_TO_TRAIN", "LAYOUTS", "Layout", "LazyFrames", "MEAN", "MmsegLayout",
    "NUM_CLASSES", "PROJECT_ROOT", "SPLITS", "STD", "SegTrain", "Split", "TrainTransform", "balanced_weights",
    "classes_from_dict", "detect_layout", "find_camvid", "list_split", "load_classes_json",
    "load_split", "make_clip", "normalize", "open_dataset", "photometric_jitter", "resize_image", "resize_label",
    "scan_pairs", "weights_from_counts",
]
