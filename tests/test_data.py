"""CamVid reading, cache, augmentations, the sample clip, and clear DataErrors for bad paths."""

from __future__ import annotations

import numpy as np
import pytest

from _camvid_synth import REAL_CAMVID, colour_frame, make_synth_camvid
from pvtseg.training import datasets as D
from pvtseg.errors import DataError, PvtsegError


# ---------------------------------------------------------------------------------------------
# bad paths


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as e:
        D.find_camvid(tmp_path / "no_such_dir")
    msg = str(e.value)
    assert "no_such_dir" in msg and "does not exist" in msg and "--data" in msg
    assert isinstance(e.value, PvtsegError) and isinstance(e.value, ValueError)


def test_path_is_a_file(tmp_path):
    f = tmp_path / "camvid.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        D.find_camvid(f)


def test_missing_split_and_subfolders(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"train[/\\]images is missing"):
        D.list_split(tmp_path, "train")
    with pytest.raises(DataError, match=r"val is missing"):
        D.list_split(tmp_path, "val")
    with pytest.raises(DataError, match="unknown split"):
        D.list_split(tmp_path, "training")


def test_empty_images_and_missing_label(tmp_path):
    import cv2

    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "labels").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no"):
        D.list_split(tmp_path, "train")
    cv2.imwrite(str(tmp_path / "train" / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"1 image\(s\) without a mask: a\.png") as e:
        D.list_split(tmp_path, "train")
    assert "train/labels/NAME.png" in str(e.value)


def test_unreadable_and_mismatched_files(tmp_path):
    import cv2

    root = tmp_path
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "labels").mkdir(parents=True)
    (root / "val" / "images" / "a.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(root / "val" / "labels" / "a.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"cannot decode image .*\(1\): a\.jpg"):
        D.load_split(root, "val", cache_dir=None)
    cv2.imwrite(str(root / "val" / "images" / "a.jpg"), np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(DataError, match=r"must match\) \(1\): a\.png \(8x8 vs image 10x8\)"):
        D.load_split(root, "val", cache_dir=None)
    cv2.imwrite(str(root / "val" / "labels" / "a.png"), np.full((8, 10), 40, np.uint8))
    with pytest.raises(DataError, match=r"outside the classes \(1\): a\.png \(value 40\)"):
        D.load_split(root, "val", cache_dir=None)


# ---------------------------------------------------------------------------------------------
# reading + cache


def test_load_split_and_cache(tmp_path):
    root = make_synth_camvid(tmp_path / "camvid", n=4, h=48, w=64)
    cache = tmp_path / "cache"
    s = D.load_split(root, "train", cache_dir=cache)
    assert s.images.shape == (4, 48, 64, 3) and s.images.dtype == np.uint8
    assert s.labels.shape == (4, 48, 64) and s.labels.max() <= 11
    assert s.names == sorted(s.names)
    # RGB order: the red channel encodes the class in the synthetic frames
    np.testing.assert_array_equal(s.images[0], colour_frame(s.labels[0]))
    assert len(list(cache.glob("*.npy"))) == 2
    s2 = D.load_split(root, "train", cache_dir=cache)
    np.testing.assert_array_equal(s.images, s2.images)
    np.testing.assert_array_equal(s.labels, s2.labels)
    assert len(D.load_split(root, "train", cache_dir=None, limit=2)) == 2


@pytest.mark.skipif(not (REAL_CAMVID / "test" / "images").is_dir(), reason="../shared/data/camvid is not present")
def test_real_camvid_layout():
    root = D.find_camvid(REAL_CAMVID)
    counts = {s: len(D.list_split(root, s)) for s in D.SPLITS}
    assert counts == {"train": 367, "val": 101, "test": 233}
    seq = [p[0].name for p in D.list_split(root, "test") if p[0].name.startswith("Seq05VD")]
    assert len(seq) == 171


# ---------------------------------------------------------------------------------------------
# augmentation


def test_train_transform_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 11, (6, 8)).astype(np.uint8)
    import cv2

    lab = cv2.resize(small, (160, 120), interpolation=cv2.INTER_NEAREST)
    img = colour_frame(lab)
    tf = D.TrainTransform(crop=(64, 96), base_size=(96, 128), scale_range=(0.5, 2.0), jitter=False)
    for seed in range(20):
        im, lb = tf(img, lab, np.random.default_rng(seed))
        assert im.shape == (64, 96, 3) and lb.shape == (64, 96)
        valid = lb != 11
        # away from block borders the colour still encodes the label (flip / scale / crop applied to both)
        red = im[..., 0].astype(int)
        match = np.abs(red - (lb.astype(int) * 20) % 256) <= 2
        assert match[valid].mean() > 0.8  # a label flipped or shifted against its frame scores ~0.1


def test_train_transform_pads_small_images_with_ignore():
    tf = D.TrainTransform(crop=(64, 64), base_size=(32, 32), scale_range=(1.0, 1.0), flip=False, jitter=False)
    img = np.full((32, 32, 3), 100, np.uint8)
    lab = np.zeros((32, 32), np.uint8)
    im, lb = tf(img, lab, np.random.default_rng(0))
    assert im.shape == (64, 64, 3)
    assert (lb == 11).sum() == 64 * 64 - 32 * 32
    # another dataset's ignore index pads the same way
    tf = D.TrainTransform(crop=(64, 64), base_size=(32, 32), scale_range=(1.0, 1.0), flip=False, jitter=False,
                          ignore_index=255, num_classes=5)
    _, lb = tf(img, lab, np.random.default_rng(0))
    assert (lb == 255).sum() == 64 * 64 - 32 * 32 and (lb == 0).sum() == 32 * 32


def test_augmentation_is_deterministic_per_seed():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    lab = rng.integers(0, 11, (60, 80)).astype(np.uint8)
    tf = D.TrainTransform(crop=(32, 48), base_size=(64, 96))
    a = tf(img, lab, np.random.default_rng(7))
    b = tf(img, lab, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    outs = {tf(img, lab, np.random.default_rng(s))[0].tobytes() for s in range(5)}
    assert len(outs) == 5


def test_photometric_jitter_changes_colours_only():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    outs = [D.photometric_jitter(img, np.random.default_rng(s)) for s in range(10)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, img) for o in outs)


def test_normalize_contract():
    x = D.normalize(np.full((2, 3, 3), 255, np.uint8))
    assert x.shape == (3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], (1 - np.array(D.MEAN)) / np.array(D.STD), rtol=1e-6)


def test_balanced_weights():
    lab = np.zeros((10, 10), np.uint8)
    lab[0, :2] = 1
    lab[5:, :] = 11  # ignored
    w = D.balanced_weights(lab, num_classes=3)
    assert w.mean() == pytest.approx(1.0)
    assert w[1] > w[0]


# ---------------------------------------------------------------------------------------------
# sample clip


def test_make_clip(tmp_path):
    import cv2

    root = make_synth_camvid(tmp_path / "camvid", n=6, h=48, w=64)
    out = D.make_clip(root, tmp_path / "clip.mp4")
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        frames += 1
    cap.release()
    assert frames == 3  # Seq05VD_* frames only
    with pytest.raises(DataError, match="no frames named"):
        D.make_clip(root, tmp_path / "x.mp4", prefix="Nope")
