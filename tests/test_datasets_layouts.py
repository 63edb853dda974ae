"""Dataset layouts: detection, class maps (remap / Cityscapes trainIds / ADE20K), and the errors
that list offending files with counts. Tiny datasets built from real CamVid frames (64x80)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import _tiny_datasets as TD
from pvtseg.errors import DataError, PvtsegError
from pvtseg.training import datasets as D

pytestmark = TD.needs_camvid

BUILDERS = {
    "generic": (TD.make_generic, D.GenericLayout, "generic"),
    "camvid": (TD.make_camvid, D.CamVidLayout, "CamVid"),
    "cityscapes": (TD.make_cityscapes, D.CityscapesLayout, "Cityscapes"),
    "ade20k": (TD.make_ade, D.ADE20KLayout, "ADE20K"),
    "mmseg": (TD.make_mmseg, D.MmsegLayout, "mmseg"),
}


@pytest.mark.parametrize("layout", list(BUILDERS))
def test_layout_is_detected_and_masks_map_to_the_classes(tmp_path, layout):
    build, cls, name = BUILDERS[layout]
    n = 3
    root = build(tmp_path / layout, n) if layout != "generic" else build(tmp_path / layout, n, 2)
    ds = D.open_dataset(root)
    assert type(ds) is cls
    assert ds.describe().startswith(f"{name} layout") and str(root) in ds.describe()
    split = D.load_split(ds, "train", cache_dir=tmp_path / "cache")
    expected = TD.expected_labels(layout, "train", n)
    assert split.names == sorted(expected)
    assert split.images.shape == (n, TD.H, TD.W, 3) and split.images.dtype == np.uint8
    for i, frame in enumerate(split.names):
        np.testing.assert_array_equal(split.labels[i], expected[frame], err_msg=f"{layout} {frame}")
    # per-class pixel counts (for balanced loss weights) agree with the expected labels
    ref = np.bincount(np.stack(list(expected.values())).ravel(), minlength=256)[:ds.classes.num_classes]
    np.testing.assert_array_equal(split.class_pixels, ref)
    assert len(D.load_split(ds, "val", cache_dir=None)) == (2 if layout == "generic" else n)


def test_built_in_class_tables(tmp_path):
    city = D.CITYSCAPES_CLASSES
    assert city.num_classes == 19 and city.names[0] == "road" and city.names[18] == "bicycle"
    assert city.palette[0] == (128, 64, 128) and city.ignore_index == 255
    lut = city.lut()
    # the 19 evaluated label ids, in trainId order (public Cityscapes label table)
    train_ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert [int(lut[i]) for i in train_ids] == list(range(19))
    assert all(lut[i] == 255 for i in range(34) if i not in train_ids)  # void / not evaluated
    assert lut[255] == 255 and lut[34] == -1  # 34 is no Cityscapes label id: an error, not a class
    ade = D.ADE20K_CLASSES
    assert ade.num_classes == 150 and ade.names[:3] == ("wall", "building", "sky") and ade.names[-1] == "flag"
    assert ade.lut()[0] == 255 and ade.lut()[1] == 0 and ade.lut()[150] == 149 and ade.lut()[151] == -1
    cam = D.CAMVID_CLASSES
    assert cam.num_classes == 11 and cam.ignore_index == 11 and cam.lut()[255] == 11 and cam.lut()[12] == -1


def test_checkpoint_form_of_the_classes_is_plain(tmp_path):
    root = TD.make_generic(tmp_path / "g", 1, 1)
    c = D.open_dataset(root).classes
    d = c.to_checkpoint()
    assert d == {"names": TD.MERGED_NAMES, "palette": TD.MERGED_PALETTE, "ignore_index": 255}
    assert json.loads(json.dumps(d)) == d  # plain containers: torch.load(weights_only=True) reads them back


@pytest.mark.parametrize("content, match", [
    ({"names": ["a", "b"], "pallete": [[1, 2, 3]]}, r"unknown key\(s\) 'pallete'"),
    ({"names": ["a", "b"], "palette": [[1, 2, 3]]}, r"1 colours for 2 classes"),
    ({"names": ["a", "b"], "palette": [[1, 2, 300], [0, 0, 0]]}, r"values 0\.\.255"),
    ({"names": ["a", "b"], "ignore_index": 1}, r"from 2 \(the class count\) to 255"),
    ({"names": ["a", "a"]}, r"class names repeat: a"),
    ({"names": []}, r"non-empty list"),
    ({"names": ["a", "b"], "remap": {"7": 5}}, r"maps 7 to 5: targets must be a class id 0\.\.1 or the ignore index 255"),
    ({"names": ["a", "b"], "remap": {"x": 0}}, r"key 'x' is not a mask value"),
])
def test_classes_json_mistakes_are_named(tmp_path, content, match):
    p = tmp_path / "classes.json"
    p.write_text(json.dumps(content))
    with pytest.raises(DataError, match=match) as e:
        D.load_classes_json(p)
    assert str(p) in str(e.value)


def test_missing_or_broken_classes_json(tmp_path):
    root = TD.make_generic(tmp_path / "g", 1, 1)
    (root / "classes.json").write_text('{"names": ["a",]}')
    with pytest.raises(DataError, match=r"not valid JSON \(line 1"):
        D.open_dataset(root)
    (root / "classes.json").unlink()
    with pytest.raises(DataError) as e:
        D.open_dataset(root)
    msg = str(e.value)
    assert "generic folder" in msg and "has no classes.json" in msg and '"names"' in msg


def test_unknown_folder_and_missing_split(tmp_path):
    (tmp_path / "x" / "photos").mkdir(parents=True)
    with pytest.raises(DataError) as e:
        D.open_dataset(tmp_path / "x")
    msg = str(e.value)
    assert "not a dataset folder pvtseg knows" in msg and "photos/" in msg
    for name in ("CamVid", "Cityscapes", "ADE20K", "mmseg", "generic"):
        assert name in msg
    with pytest.raises(DataError, match="does not exist"):
        D.open_dataset(tmp_path / "nope")
    root = TD.make_generic(tmp_path / "g", 1, 1)
    with pytest.raises(DataError, match=r"split 'test' .*splits present: train, val.*--val-split"):
        D.load_split(root, "test", cache_dir=None)
    with pytest.raises(DataError, match="unknown split 'validation'"):
        D.load_split(root, "validation", cache_dir=None)
    assert isinstance(e.value, PvtsegError) and isinstance(e.value, ValueError)


def test_unmatched_pairs_are_listed_with_counts(tmp_path):
    import shutil

    root = TD.make_generic(tmp_path / "g", 4, 1)
    masks = sorted((root / "masks" / "train").glob("*.png"))
    for m in masks[:2]:
        m.unlink()
    shutil.copy(masks[2], root / "masks" / "train" / "stray_frame.png")
    with pytest.raises(DataError) as e:
        D.load_split(root, "train", cache_dir=None)
    msg = str(e.value)
    assert "3 unmatched file(s) (2 pairs matched)" in msg
    assert f"2 image(s) without a mask: {masks[0].stem}.jpg, {masks[1].stem}.jpg" in msg
    assert "1 mask(s) without an image: stray_frame.png" in msg
    assert "images/train/NAME.<jpg|png> needs masks/train/NAME.png" in msg


def test_bad_files_are_listed_together_with_counts(tmp_path):
    import cv2

    root = TD.make_generic(tmp_path / "g", 10, 1)
    imgs = sorted((root / "images" / "train").glob("*.jpg"))
    masks = sorted((root / "masks" / "train").glob("*.png"))
    imgs[0].write_bytes(b"not a jpeg")                                          # unreadable frame
    cv2.imwrite(str(masks[1]), np.zeros((32, 40), np.uint8))                    # wrong size
    for m in masks[2:9]:                                                        # 7 masks: value 77
        lab = cv2.imread(str(m), cv2.IMREAD_UNCHANGED)
        lab[5:9, 5:9] = 77
        cv2.imwrite(str(m), lab)
    colour = np.zeros((TD.H, TD.W, 3), np.uint8)
    colour[..., 2] = 200
    cv2.imwrite(str(masks[9]), colour)                                          # a colour mask
    with pytest.raises(DataError) as e:
        D.load_split(root, "train", cache_dir=None)
    msg = str(e.value)
    assert "10 bad file(s) among 10 frame pairs" in msg
    assert f"cannot decode image (unreadable or not an image) (1): {imgs[0].name}" in msg
    assert f"mask size differs from its image (they must match) (1): {masks[1].name} (40x32 vs image 80x64)" in msg
    assert f"mask values outside the classes (7): {masks[2].name} (value 77)" in msg
    assert "... and 2 more" in msg and '"remap"' in msg
    assert f"mask is not single-channel 8-bit class indices (1): {masks[9].name} (3 channels)" in msg


def test_large_splits_are_read_from_disk_with_the_same_result(tmp_path):
    root = TD.make_cityscapes(tmp_path / "c", 3)
    mem = D.load_split(root, "train", cache_dir=None)
    lazy = D.load_split(root, "train", cache_dir=tmp_path / "cache", max_decoded_gb=1e-6)
    assert isinstance(lazy.images, D.LazyFrames) and len(lazy) == 3
    for i in range(3):
        np.testing.assert_array_equal(lazy.images[i], mem.images[i])
        np.testing.assert_array_equal(lazy.labels[i], mem.labels[i])
    np.testing.assert_array_equal(lazy.class_pixels, mem.class_pixels)
    assert len(list((tmp_path / "cache").glob("*_summary.json"))) == 1  # the check is not repeated
    again = D.load_split(root, "train", cache_dir=tmp_path / "cache", max_decoded_gb=1e-6)
    np.testing.assert_array_equal(again.class_pixels, mem.class_pixels)
    sub = lazy.subset([2, 0])
    np.testing.assert_array_equal(sub.labels[0], mem.labels[2])
    assert [a.shape for a in lazy.images[0:2]] == [(TD.H, TD.W, 3)] * 2
