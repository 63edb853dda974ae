"""`pvtseg eval`: mIoU, per-class IoU, pixel accuracy and a confusion-matrix PNG.

    pvtseg eval --model pvt_v2_b0_segformer --checkpoint models/camvid_pvt_v2_b0_segformer.pth \
        --data ../shared/data/camvid --split test [--flip] [--sliding]
    pvtseg eval --checkpoint runs/mine/best.pth --data data/mine --split val   # any layout `pvtseg train` reads
    pvtseg eval --onnx models/build/x_int8.onnx --split test      # an exported artifact (FP32 or Q/DQ INT8)

With --onnx (any artifact the runtime loads: .onnx, .ts, .engine) the frames go through
pvtseg.runtime.Segmenter, i.e. exactly the deployed path: the sidecar's preprocessing, the
backend, logits upsampled bilinearly to the frame and argmax.

Each frame is resized to the inference size (the sidecar's input height/width, e.g. 384x480),
the logits are upsampled back to the frame's own size and compared with its label there.
The dataset's ignore index (CamVid: 11) is left out of every number. `evaluate_split` is the
same code path the training loop uses for its val mIoU. --data takes every layout `pvtseg
train` does (detected, see training/datasets/); a `pvtseg train` checkpoint names its model
and classes, so --model is optional there and the class count is checked against the data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..models.camvid import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from ..errors import CheckpointError, CheckpointNotFoundError, PvtsegError
from ..io_utils import atomic_path, atomic_write_text


# ---------------------------------------------------------------------------------------------
# metrics


def confusion_matrix(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                     num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """cm[t, p] = number of pixels of true class t predicted as p; ignore_index pixels skipped."""
    p = torch.as_tensor(pred).reshape(-1).long()
    t = torch.as_tensor(target).reshape(-1).long()
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    idx = t[keep] * num_classes + p[keep].clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy().astype(np.int64)


def metrics_from_confusion(cm: np.ndarray, class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """IoU_c = TP / (TP + FP + FN); mIoU over classes present in the labels or the predictions.

    A class with TP + FP + FN == 0 (absent everywhere) has IoU NaN and is left out of the mean.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pr = cm.sum(axis=0)
    union = gt + pr - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc_c = np.where(gt > 0, tp / gt, np.nan)
    total = cm.sum()
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(tp))]
    valid = ~np.isnan(iou)
    return {
        "miou": float(np.mean(iou[valid])) if valid.any() else float("nan"),
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_acc": float(np.nanmean(acc_c)) if (~np.isnan(acc_c)).any() else float("nan"),
        "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "pixels": int(total),
    }


# ---------------------------------------------------------------------------------------------
# inference


def _to_input(rgb: np.ndarray, size: Tuple[int, int]) -> torch.Tensor:
    from .datasets import normalize, resize_image

    return torch.from_numpy(normalize(resize_image(rgb, size)))


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Model logits at the input size (the model returns stride-4 logits by default)."""
    out = model(x)
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def _sliding_logits(model: torch.nn.Module, x: torch.Tensor, window: Tuple[int, int], num_classes: int) -> torch.Tensor:
    n, _, h, w = x.shape
    wh, ww = min(window[0], h), min(window[1], w)
    sh, sw = max(1, (wh * 2) // 3), max(1, (ww * 2) // 3)
    ny = max(1, math.ceil((h - wh) / sh) + 1)
    nx = max(1, math.ceil((w - ww) / sw) + 1)
    acc = x.new_zeros((n, num_classes, h, w))
    cnt = x.new_zeros((1, 1, h, w))
    for iy in range(ny):
        for ix in range(nx):
            y0 = min(iy * sh, h - wh)
            x0 = min(ix * sw, w - ww)
            acc[:, :, y0:y0 + wh, x0:x0 + ww] += _logits(model, x[:, :, y0:y0 + wh, x0:x0 + ww]).float()
            cnt[:, :, y0:y0 + wh, x0:x0 + ww] += 1
    return acc / cnt


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, flip: bool = False, sliding: Optional[Tuple[int, int]] = None,
            num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Softmax-free logits (N, C, H, W) at the input size, optionally flip / sliding-window averaged."""
    def run(inp: torch.Tensor) -> torch.Tensor:
        if sliding is not None:
            return _sliding_logits(model, inp, sliding, num_classes)
        return _logits(model, inp).float()

    out = run(x)
    if flip:
        out = out + run(x.flip(-1)).flip(-1)
    return out


@torch.no_grad()
def evaluate_split(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, size: Tuple[int, int],
                   device: str | torch.device = "cpu", batch_size: int = 4, flip: bool = False,
                   sliding: Optional[Tuple[int, int]] = None, num_classes: int = NUM_CLASSES,
                   progress: bool = False) -> np.ndarray:
    """Confusion matrix of `model` over frames (N, H, W, 3 RGB uint8) vs labels (N, H, W).

    Frames are resized to `size` (H, W); logits are upsampled to the label size.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    cm = np.zeros((num_classes, num_classes), np.int64)
    idx = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        idx = tqdm(idx, desc="eval", unit="batch", dynamic_ncols=True, file=sys.stderr)
    try:
        for i in idx:
            xs = torch.stack([_to_input(im, size) for im in images[i:i + batch_size]]).to(device)
            if device.type == "cuda":
                xs = xs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                logits = predict(model, xs, flip=flip, sliding=sliding, num_classes=num_classes)
            for k in range(logits.shape[0]):
                lab = labels[i + k]
                up = F.interpolate(logits[k:k + 1], size=lab.shape[:2], mode="bilinear", align_corners=False)
                cm += confusion_matrix(up.argmax(1)[0].cpu(), torch.from_numpy(np.ascontiguousarray(lab)),
                                       num_classes)
    finally:
        model.train(was_training)
    return cm


def evaluate_artifact(seg: Any, frames: Iterable[Tuple[np.ndarray, np.ndarray]], num_classes: int,
                      progress: bool = False, total: Optional[int] = None) -> np.ndarray:
    """Confusion matrix of an exported artifact over (BGR uint8 frame, label) pairs.

    `seg` is a pvtseg.runtime.Segmenter (anything that maps a BGR frame to uint8 labels at the
    frame's size): the deployed frame -> labels path is what gets measured.
    """
    it: Iterable[Tuple[np.ndarray, np.ndarray]] = frames
    if progress:
        from tqdm import tqdm

        it = tqdm(frames, desc="eval", unit="frame", total=total, dynamic_ncols=True, file=sys.stderr)
    cm = np.zeros((num_classes, num_classes), np.int64)
    for bgr, lab in it:
        cm += confusion_matrix(seg(bgr), np.ascontiguousarray(lab), num_classes)
    return cm


# ---------------------------------------------------------------------------------------------
# reporting


def confusion_png(cm: np.ndarray, path: str | Path, class_names: Sequence[str] = CLASS_NAMES,
                  title: str = "") -> Path:
    """Row-normalised confusion matrix drawn with OpenCV (rows: truth, columns: prediction)."""
    import cv2

    n = cm.shape[0]
    cell, left, top = 56, 130, 150
    img = np.full((top + n * cell + 40, left + n * cell + 20, 3), 255, np.uint8)
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=np.float64), where=rows > 0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in range(n):
        for p in range(n):
            v = norm[t, p]
            # white -> dark blue
            colour = (255, int(255 * (1 - 0.8 * v)), int(255 * (1 - v)))
            x0, y0 = left + p * cell, top + t * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), colour, -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), (200, 200, 200), 1)
            txt = f"{100 * v:.0f}"
            tc = (255, 255, 255) if v > 0.5 else (0, 0, 0)
            (tw, th), _ = cv2.getTextSize(txt, font, 0.45, 1)
            cv2.putText(img, txt, (x0 + (cell - tw) // 2, y0 + (cell + th) // 2), font, 0.45, tc, 1, cv2.LINE_AA)
    for i, name in enumerate(class_names[:n]):
        cv2.putText(img, name[:14], (6, top + i * cell + cell // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        # column labels, rotated: draw on a strip then rotate
        strip = np.full((cell, top - 10, 3), 255, np.uint8)
        cv2.putText(strip, name[:14], (4, cell // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rot = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
        x0 = left + i * cell
        img[0:top - 10, x0:x0 + cell] = np.minimum(img[0:top - 10, x0:x0 + cell], rot)
    cv2.putText(img, title or "confusion (% of true class); rows: truth, cols: prediction",
                (6, top + n * cell + 25), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise PvtsegError(f"OpenCV could not encode the confusion-matrix PNG for {path}.")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return path


def format_table(m: Dict[str, Any]) -> str:
    lines = ["| class | IoU (%) |", "|---|---|"]
    for name, v in m["per_class_iou"].items():
        lines.append(f"| {name} | {'n/a' if v is None else f'{100 * v:.1f}'} |")
    lines.append(f"| **mIoU** | **{100 * m['miou']:.1f}** |")
    lines.append(f"| pixel accuracy | {100 * m['pixel_acc']:.1f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI


def read_weights_file(path: str | Path) -> Any:
    """The checkpoint's contents, read once through the safe reader (weights_only, never a pickle
    fallback); CheckpointNotFoundError with the fix when the path does not exist."""
    from ..models.formats import read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist. Pass --checkpoint PATH to a .pth "
                                      "written by `pvtseg train` (runs/X/best.pth) or the shipped models/*.pth.")
    return read_checkpoint(path)


def load_weights(model: torch.nn.Module, path: str | Path, raw: Any = None) -> None:
    """Load weights in any format pvtseg reads: a state dict, or a `pvtseg train` checkpoint
    (runs/X/last.pth, best.pth), which gives its EMA weights when the run kept an EMA.
    `raw`: the file's contents when the caller has already read them (read_weights_file)."""
    from ..models.formats import load_checkpoint, trained_model_name

    path = Path(path)
    raw = read_weights_file(path) if raw is None else raw
    trained_as, name = trained_model_name(raw), getattr(model, "pvtseg_name", None)
    if trained_as is not None and name is not None and trained_as != name:
        raise CheckpointError(f"checkpoint {path} was trained as {trained_as!r}, not {name!r}: pass --model {trained_as}.")
    report = load_checkpoint(model, raw, strict=True)
    if report.missing:
        raise CheckpointError(f"checkpoint {path} has no weights for {', '.join(report.missing[:4])}"
                              f"{', ...' if len(report.missing) > 4 else ''}: it is not a trained {name or 'model'} "
                              "(ImageNet backbone weights?); evaluate a checkpoint written by `pvtseg train` or the "
                              "shipped models/*.pth.")


def _model_and_classes(raw: Any, ckpt: Path, layout: Any, model_arg: Optional[str]) -> Tuple[str, List[str]]:
    """(model name, class names) of an eval: --model, else the training checkpoint's model; the
    dataset's classes, which must be as many as the checkpoint was trained for."""
    from ..models.formats import is_training_checkpoint

    info: Dict[str, Any] = dict(raw) if is_training_checkpoint(raw) else {}
    arch = model_arg or info.get("model_name") or "pvt_v2_b0_segformer"
    names = list(layout.classes.names)
    saved = list((info.get("classes") or {}).get("names") or [])
    if saved and len(saved) != len(names):
        raise CheckpointError(f"{ckpt} was trained for {len(saved)} classes ({', '.join(saved[:4])}, ...) but --data "
                              f"{layout.root} ({layout.name} layout) has {len(names)} ({', '.join(names[:4])}, ...): "
                              "evaluate on the dataset the model was trained for (or one with the same classes).")
    if saved and saved != names:
        print(f"pvtseg eval: note: the checkpoint names its classes {saved}, the dataset {names}; reporting the "
              "dataset's names", file=sys.stderr)
    return arch, names


def _parse_size(vals: Optional[List[int]]) -> Optional[Tuple[int, int]]:
    return None if vals is None else (int(vals[0]), int(vals[1]))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pvtseg eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None,
                    help="registered segmentor name (default: the training checkpoint's, else pvt_v2_b0_segformer)")
    ap.add_argument("--checkpoint", default=None, help="weights .pth (state dict or training checkpoint)")
    ap.add_argument("--onnx", "--artifact", dest="artifact", default=None,
                    help="evaluate an exported artifact instead of --model/--checkpoint: .onnx (FP32 or Q/DQ "
                         "INT8, ONNX Runtime), .ts or .engine, run by pvtseg.runtime.Segmenter")
    ap.add_argument("--data", default=None,
                    help="dataset folder in any layout `pvtseg train` reads (CamVid, Cityscapes, ADE20K, mmseg, "
                         "images/ + masks/ + classes.json); default ../shared/data/camvid")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="inference size; default: the checkpoint's sidecar, else 384 480")
    ap.add_argument("--flip", action="store_true", help="average with the horizontally flipped frame")
    ap.add_argument("--sliding", type=int, nargs="*", metavar="HW", default=None,
                    help="sliding-window inference; optional window H W (default 3/4 of --size, stride 2/3 window)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=0, help="torch / ONNX Runtime CPU threads (0: leave default)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N frames (quick checks)")
    ap.add_argument("--out", default=None, help="folder for metrics.json + confusion.png (default beside checkpoint)")
    ap.add_argument("--no-cache", action="store_true", help="do not read/write the decoded-frames cache")
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except PvtsegError as e:
        print(f"pvtseg eval: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .. import meta as meta_mod
    from .datasets import DEFAULT_CACHE, load_split, open_dataset
    from ..models import create_model

    if (args.artifact is None) == (args.checkpoint is None):
        raise PvtsegError("pass either --checkpoint PATH (with --model) or --onnx PATH (an exported artifact), "
                          "not both and not neither.")
    if args.artifact is not None:
        return _run_artifact(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = _parse_size(args.size)
    ckpt = Path(args.checkpoint)
    if size is None:
        side = meta_mod.sidecar_path(ckpt)
        if side.is_file():
            m = meta_mod.read(ckpt)
            size = (m["input"]["height"], m["input"]["width"])
        else:
            size = (384, 480)
    for v in size:
        if v % 32:
            raise PvtsegError(f"--size {size[0]} {size[1]}: both must be multiples of 32 (the model's stride).")
    sliding = None
    if args.sliding is not None:
        r32 = lambda v: max(32, int(round(v * 0.75 / 32)) * 32)  # noqa: E731
        sliding = (r32(size[0]), r32(size[1])) if len(args.sliding) == 0 else tuple(args.sliding[:2])
        if len(sliding) != 2:
            raise PvtsegError("--sliding takes no value or two (window H W).")

    layout = open_dataset(args.data)
    raw = read_weights_file(ckpt)
    arch, names = _model_and_classes(raw, ckpt, layout, args.model)
    split = load_split(layout, args.split, cache_dir=None if args.no_cache else DEFAULT_CACHE, limit=args.limit)
    model = create_model(arch, num_classes=len(names))
    load_weights(model, ckpt, raw)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    t0 = time.time()
    cm = evaluate_split(model, split.images, split.labels, size, device=device, batch_size=args.batch,
                        flip=args.flip, sliding=sliding, num_classes=len(names), progress=True)
    dt = time.time() - t0
    m = metrics_from_confusion(cm, names)
    m.update({"model": arch, "checkpoint": str(ckpt), "dataset": layout.name, "data": str(layout.root),
              "split": args.split, "frames": len(split),
              "size": list(size), "flip": args.flip, "sliding": list(sliding) if sliding else None,
              "seconds": round(dt, 1), "device": str(device), "confusion": cm.tolist()})

    out = Path(args.out) if args.out else ckpt.parent / f"eval_{ckpt.stem}_{args.split}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(m, indent=2) + "\n")
    confusion_png(cm, out / "confusion.png", class_names=names,
                  title=f"{arch} {args.split}: mIoU {100 * m['miou']:.1f}, pixel acc {100 * m['pixel_acc']:.1f}")
    print(f"{arch} on {layout.name} {args.split} ({len(split)} frames at {size[0]}x{size[1]}"
          f"{', flip' if args.flip else ''}{', sliding' if sliding else ''}; {dt:.0f} s on {device}):")
    print(format_table(m))
    print(f"wrote {out / 'metrics.json'} and {out / 'confusion.png'}")
    return 0


def _run_artifact(args: argparse.Namespace) -> int:
    """`pvtseg eval --onnx X`: the exported artifact through the runtime, on a split of any layout."""
    from ..runtime import Segmenter
    from .datasets import DEFAULT_CACHE, load_split, open_dataset

    if args.flip or args.sliding is not None or args.size is not None:
        raise PvtsegError("--flip, --sliding and --size apply to --checkpoint only: an artifact runs at its "
                          "sidecar's input size, one pass per frame, as deployed.")
    path = Path(args.artifact)
    seg = Segmenter(path, args.device or "cpu", threads=args.threads or None)
    layout = open_dataset(args.data)
    if len(layout.classes.names) != seg.num_classes:
        raise PvtsegError(f"{path.name} has {seg.num_classes} classes, the {layout.name} data at {layout.root} "
                          f"has {len(layout.classes.names)}: evaluate on data with the model's classes.")
    split = load_split(layout, args.split, cache_dir=None if args.no_cache else DEFAULT_CACHE, limit=args.limit)
    names = seg.class_names
    t0 = time.time()
    frames = ((np.ascontiguousarray(split.images[i][:, :, ::-1]), split.labels[i]) for i in range(len(split)))
    cm = evaluate_artifact(seg, frames, seg.num_classes, progress=True, total=len(split))
    dt = time.time() - t0
    m = metrics_from_confusion(cm, names)
    m.update({"artifact": str(path), "arch": seg.meta["arch"], "precision": seg.meta["precision"],
              "backend": seg.backend.describe(), "split": args.split, "frames": len(split),
              "size": list(seg.input_size), "seconds": round(dt, 1), "confusion": cm.tolist()})
    out = Path(args.out) if args.out else path.parent / f"eval_{path.stem}_{args.split}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(m, indent=2) + "\n")
    title = f"{path.name} {args.split}: mIoU {100 * m['miou']:.1f}, pixel acc {100 * m['pixel_acc']:.1f}"
    confusion_png(cm, out / "confusion.png", class_names=names, title=title)
    print(f"{path.name} ({seg.meta['precision']}, {seg.backend.describe()}) on {layout.name} {args.split} "
          f"({len(split)} frames at {seg.input_size[0]}x{seg.input_size[1]}; {dt:.0f} s):")
    print(format_table(m))
    print(f"wrote {out / 'metrics.json'} and {out / 'confusion.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
