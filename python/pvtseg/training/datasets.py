"""CamVid reading, a uint8 numpy cache and training augmentations (numpy + OpenCV only).

Layout read (see ../shared/data/camvid/README.md): `SPLIT/images/NAME.jpg` RGB frames and
`SPLIT/labels/NAME.png` 8-bit class indices (0..10, 11 = unlabelled/ignore).

    root = find_camvid()                      # ../shared/data/camvid next to the project
    split = load_split(root, "train")        # decoded once, cached as .npy under runs/cache
    ds = CamVidTrain(split, crop=(256, 320), base_size=(384, 480))
    x, y = ds.get(0, rng)                     # float32 CHW normalised, int64 HW labels

Every bad path raises DataError naming the path and what to do about it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..models.camvid import IGNORE_INDEX, MEAN, NUM_CLASSES, STD
from ..errors import DataError
from ..io_utils import atomic_path

SPLITS = ("train", "val", "test")
PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "camvid"
DEFAULT_CACHE = PROJECT_ROOT / "runs" / "cache"


def _cv2():
    try:
        import cv2  # noqa: WPS433
    except ImportError as e:  # pragma: no cover - opencv is a dev/demo dependency
        raise DataError("OpenCV is needed to read CamVid: pip install opencv-python-headless") from e
    return cv2


def find_camvid(data: Optional[str | os.PathLike] = None) -> Path:
    """Resolve the CamVid folder: `data` if given, else ../shared/data/camvid beside the project."""
    root = Path(data) if data is not None else DEFAULT_DATA
    if not root.exists():
        hint = "" if data is not None else " (the default, ../shared/data/camvid relative to the project root)"
        raise DataError(f"CamVid folder {root}{hint} does not exist. Pass --data PATH pointing at the folder "
                        "that holds train/, val/ and test/ (each with images/ and labels/).")
    if not root.is_dir():
        raise DataError(f"CamVid path {root} is not a folder. Pass --data PATH pointing at the folder "
                        "that holds train/, val/ and test/.")
    return root


def list_split(root: str | os.PathLike, split: str) -> List[Tuple[Path, Path]]:
    """(image, label) path pairs of a split in name order; DataError if anything is missing."""
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    sdir = root / split
    img_dir, lab_dir = sdir / "images", sdir / "labels"
    for d in (sdir, img_dir, lab_dir):
        if not d.is_dir():
            raise DataError(f"{d} is missing: a CamVid folder needs {split}/images/*.jpg and "
                            f"{split}/labels/*.png. Check --data (got {root}).")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise DataError(f"{img_dir} holds no .jpg/.png frames. Check --data (got {root}).")
    pairs = []
    for img in images:
        lab = lab_dir / (img.stem + ".png")
        if not lab.is_file():
            raise DataError(f"label {lab} for frame {img.name} is missing: every frame needs "
                            f"{split}/labels/<name>.png.")
        pairs.append((img, lab))
    return pairs


@dataclass
class Split:
    """A decoded split: RGB uint8 frames (N, H, W, 3), uint8 labels (N, H, W), names."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    names: List[str]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx: Sequence[int]) -> "Split":
        idx = list(idx)
        return Split(self.name, self.images[idx], self.labels[idx], [self.names[i] for i in idx])


def read_pair(img_path: Path, lab_path: Path) -> Tuple[np.ndarray, np.ndarray]:
    cv2 = _cv2()
    bgr = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"cannot decode image {img_path}: the file is unreadable or not an image.")
    lab = cv2.imread(str(lab_path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise DataError(f"cannot decode label {lab_path}: the file is unreadable or not a PNG.")
    if lab.ndim != 2:
        raise DataError(f"label {lab_path} has shape {lab.shape}: labels must be single-channel class indices.")
    if lab.shape != bgr.shape[:2]:
        raise DataError(f"label {lab_path} is {lab.shape[1]}x{lab.shape[0]} but its frame is "
                        f"{bgr.shape[1]}x{bgr.shape[0]}: they must match.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), lab.astype(np.uint8)


def load_split(root: str | os.PathLike, split: str, cache_dir: Optional[str | os.PathLike] = DEFAULT_CACHE,
               limit: Optional[int] = None) -> Split:
    """Decode a split once into uint8 arrays; cached as .npy (keyed by file names, sizes, mtimes)."""
    pairs = list_split(root, split)
    if limit is not None:
        pairs = pairs[:limit]
    names = [p[0].stem for p in pairs]
    key = hashlib.sha1()
    for img, lab in pairs:
        for p in (img, lab):
            st = p.stat()
            key.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)};".encode())
    tag = f"camvid_{split}_{len(pairs)}_{key.hexdigest()[:12]}"
    if cache_dir is not None:
        cdir = Path(cache_dir)
        fi, fl = cdir / f"{tag}_images.npy", cdir / f"{tag}_labels.npy"
        if fi.is_file() and fl.is_file():
            try:
                return Split(split, np.load(fi), np.load(fl), names)
            except (OSError, ValueError):
                pass  # corrupt cache: rebuild below
    imgs, labs = zip(*(read_pair(i, l) for i, l in pairs))
    shapes = {im.shape for im in imgs}
    if len(shapes) != 1:
        raise DataError(f"{Path(root) / split} mixes frame sizes {sorted(shapes)}: all frames must share one size.")
    images, labels = np.stack(imgs), np.stack(labs)
    bad = labels[(labels > NUM_CLASSES) & (labels != 255)]
    if bad.size:
        raise DataError(f"{Path(root) / split}/labels hold class index {int(bad.max())}: CamVid labels must be "
                        f"0..{NUM_CLASSES - 1} or {IGNORE_INDEX} (ignore).")
    labels[labels == 255] = IGNORE_INDEX
    if cache_dir is not None:
        for path, arr in ((fi, images), (fl, labels)):
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, arr)
    return Split(split, images, labels, names)


# ---------------------------------------------------------------------------------------------
# preprocessing + augmentation


def normalize(rgb: np.ndarray) -> np.ndarray:
    """HWC RGB uint8 -> CHW float32, (x/255 - mean) / std (the sidecar contract)."""
    x = rgb.astype(np.float32) * (1.0 / 255.0)
    x -= np.asarray(MEAN, np.float32)
    x /= np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def resize_image(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    cv2 = _cv2()
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)


def resize_label(lab: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    cv2 = _cv2()
    h, w = size
    if lab.shape[:2] == (h, w):
        return lab
    return cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)


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
                 cat_max_ratio: float = 0.75):
        self.crop = (int(crop[0]), int(crop[1]))
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
            lab = cv2.copyMakeBorder(lab, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
            h, w = lab.shape
        for _ in range(10):
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            lc = lab[y0:y0 + ch, x0:x0 + cw]
            if self.cat_max_ratio >= 1.0:
                break
            cnt = np.bincount(lc.ravel(), minlength=256)[:NUM_CLASSES]
            if cnt.sum() == 0 or cnt.max() / cnt.sum() < self.cat_max_ratio:
                break
        img = img[y0:y0 + ch, x0:x0 + cw]
        lab = lc
        if self.flip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        if self.jitter:
            img = photometric_jitter(np.ascontiguousarray(img), rng)
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)


class CamVidTrain:
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


def class_frequencies(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    cnt = np.bincount(labels.ravel(), minlength=256)[:num_classes].astype(np.float64)
    return cnt / max(cnt.sum(), 1.0)


def balanced_weights(labels: np.ndarray, num_classes: int = NUM_CLASSES, power: float = 0.5) -> np.ndarray:
    """Median-frequency balancing (SegNet) softened by `power`; normalised to mean 1."""
    f = class_frequencies(labels, num_classes)
    f = np.where(f > 0, f, f[f > 0].min() if (f > 0).any() else 1.0)
    w = (np.median(f) / f) ** power
    return (w / w.mean()).astype(np.float32)


def make_clip(data: Optional[str | os.PathLike] = None, out: str | os.PathLike = "models/samples/camvid_seq05vd.mp4",
              prefix: str = "Seq05VD", split: str = "test", fps: float = 6.0, max_frames: Optional[int] = 100) -> Path:
    """Write the first `max_frames` frames of one sequence (in name order) as an mp4v clip.

    OpenCV's mp4v writer takes no bitrate setting and spends ~46 KB on each 480x360 CamVid
    frame (they are 1 s of driving apart), so 100 frames keep the clip under 5 MB.
    """
    cv2 = _cv2()
    pairs = [p for p in list_split(find_camvid(data), split) if p[0].name.startswith(prefix)]
    if not pairs:
        raise DataError(f"no frames named {prefix}* in {split}/images under {find_camvid(data)}.")
    if max_frames:
        pairs = pairs[:max_frames]
    first = cv2.imread(str(pairs[0][0]))
    h, w = first.shape[:2]
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp_mp4 = tmp.with_suffix(".mp4")  # VideoWriter picks the container from the suffix
        vw = cv2.VideoWriter(str(tmp_mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not vw.isOpened():
            raise DataError(f"OpenCV cannot write {tmp_mp4} with the mp4v codec.")
        try:
            for img, _ in pairs:
                frame = cv2.imread(str(img))
                if frame.shape[:2] != (h, w):
                    frame = cv2.resize(frame, (w, h))
                vw.write(frame)
        finally:
            vw.release()
        os.replace(tmp_mp4, tmp)
    os.chmod(out, 0o644)  # atomic temp files are created 0600
    return out
