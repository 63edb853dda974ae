"""`pvtseg quantize`: a calibrated, accuracy-gated INT8 Q/DQ ONNX (+ sidecar) for TensorRT.

    pvtseg quantize --onnx models/build/camvid_b0.onnx --calib ../shared/data/camvid/train \\
        --calib-frames 64 --eval ../shared/data/camvid/val --max-drop 1.0 \\
        --out models/build/camvid_b0_int8.onnx
    pvtseg build-engine --onnx models/build/camvid_b0_int8.onnx --int8

Steps: pick N calibration images from --calib (evenly spaced over the sorted file names; a
folder with images/ inside is read from there), preprocess them with the Segmenter's own
preprocessing (the sidecar's size, channel order, mean / std: what inference sees), quantize
(pvtseg.engine.quantize: policy, ONNX Runtime calibrator, Q/DQ insertion, TensorRT checks),
then, with --eval, run FP32 and INT8 through the runtime on a labelled folder (images/ +
labels/) and refuse to write when mIoU drops more than --max-drop points (unless --force).
The Q/DQ ONNX and its sidecar (precision int8, calibration files and digest, method, policy,
accuracy) are written atomically, only after the gate passed.

Python API: `quantize(onnx, calib, out, ...)` returns the sidecar's `quantization` block.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import meta as meta_mod
from ..io_utils import sha256_file
from ..errors import DataError, PvtsegError, QuantizationError

PROG = "pvtseg quantize"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _images_in(folder: Path) -> List[Path]:
    sub = folder / "images"
    root = sub if sub.is_dir() else folder
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def evenly_spaced(items: Sequence[Any], n: Optional[int]) -> List[Any]:
    """n items spread over the whole (sorted) list, deterministically; all when n is None or >= len."""
    if n is None or n >= len(items):
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


def calibration_files(folder: str | Path, frames: Optional[int]) -> List[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--calib {folder} is not a folder: pass a folder of images (jpg/png) like the ones "
                        "the model will see, e.g. ../shared/data/camvid/train.")
    if frames is not None and frames < 1:
        raise QuantizationError(f"--calib-frames {frames}: must be >= 1 (64 is a good default).")
    files = _images_in(folder)
    if not files:
        raise DataError(f"--calib {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}), nor does {folder}/images.")
    return evenly_spaced(files, frames)


def calibration_record(folder: str | Path, files: Sequence[Path], available: int) -> Dict[str, Any]:
    """Which frames calibrated the model: folder, count, per-file SHA-256 and one digest over them."""
    hashes = {p.name: sha256_file(p) for p in files}
    digest = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in sorted(hashes.items())).encode()).hexdigest()
    return {"folder": str(folder), "frames": len(files), "available": available,
            "selection": "evenly spaced over the sorted file names", "sha256_digest": digest, "files": hashes}


def preprocess_files(seg: Any, files: Sequence[Path]) -> List[np.ndarray]:
    """NCHW float32 batches made by the Segmenter's own preprocessing (one copy per frame)."""
    import cv2

    out = []
    for p in files:
        frame = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if frame is None:
            raise DataError(f"cannot decode calibration image {p}: remove it or re-save it as JPEG/PNG.")
        out.append(seg.preprocess(frame).copy())
    return out


def labelled_pairs(folder: str | Path, frames: Optional[int] = None) -> List[Tuple[Path, Path]]:
    """(image, label PNG) pairs of a folder with images/ and labels/ (same file stems)."""
    folder = Path(folder)
    img_dir, lab_dir = folder / "images", folder / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise DataError(f"--eval {folder} needs images/ and labels/ inside (labels: single-channel PNG class ids "
                        "with the same names), e.g. ../shared/data/camvid/val.")
    pairs = []
    for img in _images_in(folder):
        lab = lab_dir / f"{img.stem}.png"
        if not lab.is_file():
            raise DataError(f"{img} has no label {lab}: every image in --eval needs its label PNG.")
        pairs.append((img, lab))
    if not pairs:
        raise DataError(f"--eval {folder}/images holds no images.")
    return evenly_spaced(pairs, frames)


def read_labelled(img: Path, lab: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(BGR uint8 frame, uint8 class-id label) of one pair; DataError when either is unusable."""
    import cv2

    frame = cv2.imread(str(img), cv2.IMREAD_COLOR)
    label = cv2.imread(str(lab), cv2.IMREAD_UNCHANGED)
    if frame is None or label is None:
        raise DataError(f"cannot decode {img if frame is None else lab}: re-save it as JPEG/PNG or remove the pair.")
    if label.ndim != 2 or label.shape != frame.shape[:2]:
        raise DataError(f"label {lab} is {label.shape} but its frame is {frame.shape[:2]}: labels must be "
                        "single-channel class ids at the frame's size.")
    return frame, label.astype(np.uint8)


def evaluate_onnx(path: Path, pairs: Sequence[Tuple[Path, Path]], threads: Optional[int]) -> Dict[str, Any]:
    """mIoU (fraction) and per-class IoU of an artifact through the runtime (`pvtseg eval`'s code).

    Label ids >= the model's class count (CamVid's 11 = Unlabelled, 255) are ignored.
    """
    from ..runtime import Segmenter
    from ..training.evaluate import evaluate_artifact, metrics_from_confusion

    with Segmenter(path, "cpu", threads=threads) as seg:
        cm = evaluate_artifact(seg, (read_labelled(i, l) for i, l in pairs), seg.num_classes)
        return metrics_from_confusion(cm, seg.class_names)


def _gate(src: Path, qmodel: Any, int8_meta: Dict[str, Any], eval_dir: str | Path, eval_frames: Optional[int],
          max_drop: float, force: bool, threads: Optional[int], log: Callable[[str], None]) -> Dict[str, Any]:
    """FP32 vs INT8 mIoU on a labelled folder; AccuracyGateError (nothing written) past max_drop."""
    from ..engine.quantize import accuracy_gate, save_model

    pairs = labelled_pairs(eval_dir, eval_frames)
    log(f"accuracy gate: FP32 vs INT8 on {len(pairs)} labelled frames of {eval_dir}")
    t0 = time.time()
    fp32 = evaluate_onnx(src, pairs, threads)
    with tempfile.TemporaryDirectory(prefix="pvtseg_int8_") as d:
        cand = Path(d) / "candidate.onnx"
        save_model(qmodel, cand)
        meta_mod.write(cand, int8_meta)
        int8 = evaluate_onnx(cand, pairs, threads)
    rec = accuracy_gate(fp32["miou"], int8["miou"], max_drop, force)
    pct = lambda v: None if v is None else round(100 * v, 2)  # noqa: E731
    rec.update({"dataset": str(eval_dir), "frames": len(pairs), "evaluated_with": "onnxruntime CPU (pvtseg.runtime)",
                "per_class_iou_fp32_int8": {n: [pct(a), pct(int8["per_class_iou"][n])]
                                            for n, a in fp32["per_class_iou"].items()}})
    log(f"  mIoU FP32 {rec['fp32_miou']:.2f} -> INT8 {rec['int8_miou']:.2f} (drop {rec['drop_points']:.2f}, "
        f"allowed {max_drop:g}{', FORCED' if rec['forced'] else ''}; {time.time() - t0:.0f} s)")
    return rec


def quantize(onnx: str | Path, calib: str | Path, out: str | Path, *, calib_frames: Optional[int] = 64,
             method: str = "minmax", policy: str = "transformer-safe", exclude: Sequence[str] = (),
             eval_dir: Optional[str | Path] = None, eval_frames: Optional[int] = None, max_drop: float = 1.0,
             force: bool = False, threads: Optional[int] = None,
             log: Callable[[str], None] = _log) -> Dict[str, Any]:
    """Write `out` (Q/DQ INT8 ONNX) + its sidecar from the float `onnx`; returns the `quantization` block.

    Raises AccuracyGateError (and writes nothing) when `eval_dir` is given and INT8 loses more
    than `max_drop` mIoU points, unless `force`.
    """
    from ..engine import quantize as q
    from ..runtime import Segmenter

    src, out = Path(onnx), Path(out)
    if out.suffix.lower() != ".onnx" or out.resolve() == src.resolve():
        raise QuantizationError(f"--out {out}: give a new .onnx path (the float model {src} is kept).")
    fp32_meta = meta_mod.read(src)
    files = calibration_files(calib, calib_frames)
    pol = q.get_policy(policy, exclude)
    with Segmenter(src, "cpu", threads=threads) as seg:
        batches = preprocess_files(seg, files)
    log(f"calibrating {src.name} on {len(files)} frames of {calib} ({method}, policy {pol.name})")
    t0 = time.time()
    res = q.quantize_model(q.load_float_model(src), batches, pol, method)
    log(f"  {res.summary['int8_weighted_ops']} of {res.summary['weighted_ops']} weighted ops INT8, "
        f"{res.summary['quantize_linear']} Q / {res.summary['dequantize_linear']} DQ ({time.time() - t0:.0f} s)")
    record = res.record()
    record["calibration"] = calibration_record(calib, files, len(_images_in(Path(calib))))
    recorded = (fp32_meta.get(meta_mod.ARTIFACTS_KEY) or {}).get(src.name) or {}  # checked by meta.read
    record["source"] = {"onnx": src.name, "sha256": recorded.get("sha256") or sha256_file(src)}
    record["accuracy"] = None
    if eval_dir is not None:
        record["accuracy"] = _gate(src, res.model, q.int8_sidecar(fp32_meta, record), eval_dir, eval_frames,
                                   max_drop, force, threads, log)
    q.save_model(res.model, out)
    # the sidecar records the new graph's sha256: a reader refuses a graph it was not written with
    side = meta_mod.write(out, q.int8_sidecar(fp32_meta, record), digest=True)
    log(f"wrote {out} and {side}")
    return record


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--onnx", required=True, help="float ONNX written by `pvtseg export` (its .json beside it)")
    p.add_argument("--calib", required=True, help="folder of calibration images (or with images/ inside)")
    p.add_argument("--calib-frames", type=int, default=64, help="images used, evenly spaced (default 64)")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="activation range calibration (ONNX Runtime calibrators; default minmax)")
    p.add_argument("--policy", default="transformer-safe",
                   help="which weighted ops get INT8: transformer-safe (default), weights-only, all-weighted")
    p.add_argument("--exclude", action="append", default=[], metavar="OPS|NODES",
                   help="comma list of op types, node names or patterns ('/head/*') kept float; repeatable")
    p.add_argument("--eval", dest="eval_dir", help="labelled folder (images/ + labels/) for the accuracy gate")
    p.add_argument("--eval-frames", type=int, default=None, help="use N evenly spaced frames of --eval")
    p.add_argument("--max-drop", type=float, default=1.0, help="largest mIoU drop allowed, in points (default 1.0)")
    p.add_argument("--force", action="store_true", help="write even when the gate fails (recorded in the sidecar)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads for the evaluation")
    p.add_argument("--out", required=True, help="the Q/DQ .onnx to write (sidecar .json beside it)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    exclude = [t for v in args.exclude for t in v.split(",") if t.strip()]
    try:
        quantize(args.onnx, args.calib, args.out, calib_frames=args.calib_frames, method=args.method,
                 policy=args.policy, exclude=exclude, eval_dir=args.eval_dir, eval_frames=args.eval_frames,
                 max_drop=args.max_drop, force=args.force, threads=args.threads)
    except PvtsegError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
