"""CamVid (SegNet 11-class split) constants: class names, SegNet palette, ignore index."""

CLASS_NAMES = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
]
# RGB colours used by SegNet (see shared/data/camvid/README.md).
PALETTE = [
    [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222],
    [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192],
]
IGNORE_INDEX = 11
NUM_CLASSES = 11
# ImageNet statistics on [0, 1] pixels: the convention every PVT / SegFormer checkpoint uses.
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
