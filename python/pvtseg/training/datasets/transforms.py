"""Preprocessing (the sidecar's normalisation) and training augmentation, numpy + OpenCV only.

    tf = TrainTransform(crop=(256, 320), base_size=(384, 480), ignore_index=255, num_classes=19)
    ds = SegTrain(split, tf)                  # split from load_split, any layout
    x, y = ds.batch([3, 7], seed=(0, epoch))  # float32 NCHW normalised, int64 NHW labels
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from ...models.camvid import IGNORE_INDEX, MEAN, NUM_CLASSES, STD
from .reading import _cv2
from .splits import Split


def normalize(rgb: np.ndarray) -> np.ndarray:
    """HWC RGB uint8 -> CHW float32, (x/255 - mean) / std (the sidecar contract)."""
    x = rgb.astype(np.float32) * (1.0 / 255.0)
    x -= np.asarray(MEAN, np.float32)
    x /= np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _resize(a: np.ndarray, size: Tuple[int, int], nearest: bool) -> np.ndarray:
    cv2 = _cv2()
    h, w = size
    if a.shape[:2] == (h, w):
        return a
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def resize_image(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    return _resize(rgb, size, nearest=False)


def resize_label(lab: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest neighbour: class ids must not be blended."""
    return _resize(lab, size, nearest=True)


def photometric_jitter(rgb: np.ndarray, rng: np.random.Generator, brightness: float = 32.0,
                       contrast: Tuple[float, float] = (0.5, 1.5), saturation: Tuple[float, float] = (0.5, 1.5),
                       hue: int = 18) -> np.ndarray:
    """mmseg PhotoMetricDistortion: each of brightness / contrast / saturation / hue w.p. 0.5."""
    cv2 = _cv2()
    img = rgb.astype(np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-brightness, brightness)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        img *= rng.uniform(*contrast)
    do_sat, do_hue = rng.random() < 0.5, rng.random() < 0.5
    if do_sat or do_hue:
        hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        if do_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(*saturation), 0, 255)
        if do_hue:
            hsv[..., 0] = (hsv[..., 0] + rng.integers(-hue, hue + 1)) % 180
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if not contrast_first and rng.random() < 0.5:
        img *= rng.uniform(*contrast)
    return np.clip(img, 0, 255).astype(np.uint8)


class TrainTransform:
    """Resize to `base_size`, random scale, pad, random crop, h-flip, photometric jitter.

    `cat_max_ratio` (mmseg): retry the crop up to 10 times while one class covers more
    than this share of its labelled pixels, so crops are not all road or all sky.
    """

    def __init__(self, crop: Tuple[int, int], base_size: Tuple[int, int] = (384, 480),
                 scale_range: Tuple[float, float] = (0.5, 2.0), flip: bool = True, jitter: bool = True,
                 cat_max_ratio: float = 0.75, ignore_index: int = IGNORE_INDEX, num_classes: int = NUM_CLASSES):
        self.crop = (int(crop[0]), int(crop[1]))
        self.ignore_index, self.num_classes = int(ignore_index), int(num_classes)
        self.base_size = (int(base_size[0]), int(base_size[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip, self.jitter, self.cat_max_ratio = flip, jitter, cat_max_ratio

    def __call__(self, rgb: np.ndarray, lab: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        cv2 = _cv2()
        s = rng.uniform(*self.scale_range)
        h, w = max(1, round(self.base_size[0] * s)), max(1, round(self.base_size[1] * s))
        img = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
        ch, cw = self.crop
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        if ph or pw:
            mean_px = [int(round(m * 255)) for m in MEAN]
            img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=mean_px)
            lab = cv2.copyMakeBorder(lab, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=self.ignore_index)
            h, w = lab.shape
        for _ in range(10):
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            lc = lab[y0:y0 + ch, x0:x0 + cw]
            if self.cat_max_ratio >= 1.0:
                break
            cnt = np.bincount(lc.ravel(), minlength=256)[:self.num_classes]
            if cnt.sum() == 0 or cnt.max() / cnt.sum() < self.cat_max_ratio:
                break
        img = img[y0:y0 + ch, x0:x0 + cw]
        lab = lc
        if self.flip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        if self.jitter:
            img = photometric_jitter(np.ascontiguousarray(img), rng)
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)


class SegTrain:
    """Indexable training set: sample i under an explicit RNG (so resume replays exactly)."""

    def __init__(self, split: Split, transform: TrainTransform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def get(self, i: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        img, lab = self.transform(self.split.images[i], self.split.labels[i], rng)
        return normalize(img), lab.astype(np.int64)

    def batch(self, indices: Sequence[int], seed: Sequence[int]):
        """Stack samples; sample k uses RNG seeded by (*seed, indices[k])."""
        import torch

        xs, ys = [], []
        for i in indices:
            rng = np.random.default_rng([*seed, int(i)])
            x, y = self.get(int(i), rng)
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def balanced_weights(labels: np.ndarray, num_classes: int = NUM_CLASSES, power: float = 0.5) -> np.ndarray:
    """Median-frequency balancing (SegNet) softened by `power`; normalised to mean 1."""
    return weights_from_counts(np.bincount(labels.ravel(), minlength=256)[:num_classes], power)


def weights_from_counts(class_pixels: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Median-frequency weights from per-class pixel counts (load_split measures them); a class
    with no pixels gets the rarest present class's weight."""
    f = np.asarray(class_pixels, np.float64)
    f = f / max(f.sum(), 1.0)
    f = np.where(f > 0, f, f[f > 0].min() if (f > 0).any() else 1.0)
    w = (np.median(f) / f) ** power
    return (w / w.mean()).astype(np.float32)
