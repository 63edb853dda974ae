"""Segmenter: BGR frame in, uint8 labels at the frame's own size out.

    from pvtseg.runtime import Segmenter
    seg = Segmenter("models/build/x.onnx")           # .engine / .ts / .onnx
    labels = seg(frame_bgr)                          # uint8 HxW, same H, W as the frame
    seg.timings                                      # Timings(pre=.., infer=.., post=..) in ms

Everything the model needs is read from the artifact's sidecar (`x.json`): input size,
channel order, mean / std, output kind (labels or logits), stride, class names, palette.
Nothing here imports torch or pvtseg.models; the backend module is imported only for the
artifact's own extension.

Pipeline:
- pre: validate / convert the frame (gray, BGRA -> BGR), resize (bilinear) to the
  sidecar's input size, BGR -> RGB, (x / 255 - mean) / std, NCHW float32, in a buffer
  reused across frames.
- infer: the backend (TensorRT / TorchScript / ONNX Runtime).
- post: `labels` output (argmax done in the graph, at the input size): nearest resize
  back to the frame size. `logits` output (stride 1 or 4): each class map is resized
  bilinearly to the frame size and a running max / argmax is kept, one class at a time
  (default `logits_upsample="bilinear"`). This is exactly "upsample logits, then argmax",
  the same as the reference implementation and the model's own in-graph labels, and with
  streaming it costs ~2 ms at 480x360 x 11 classes on one CPU core, several times less
  than torch's interpolate + argmax. `logits_upsample="nearest"` (argmax at the output stride,
  then nearest) is ~0.4 ms but gives blocky 4-pixel edges.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from .. import meta as meta_mod
from ..errors import ArtifactMismatchError, ConfigError, FrameError, MetaError
from .backends import Backend, backend_for, backend_class

# Plain INTER_NEAREST: bit-identical across OpenCV builds (pip wheel, Debian, JetPack), so the
# C++ runtime reproduces these labels exactly; INTER_NEAREST_EXACT rounds ties differently.
_NEAREST = cv2.INTER_NEAREST


@dataclass
class Timings:
    """Per-stage wall time of the last call, in milliseconds."""

    pre: float = 0.0
    infer: float = 0.0
    post: float = 0.0

    @property
    def total(self) -> float:
        return self.pre + self.infer + self.post

    def as_dict(self) -> Dict[str, float]:
        d = asdict(self)
        d["total"] = self.total
        return d

    def __str__(self) -> str:
        return f"pre {self.pre:.1f} ms | infer {self.infer:.1f} ms | post {self.post:.1f} ms"


def as_bgr(frame: Any) -> np.ndarray:
    """Validate a frame and return it as a C-contiguous HxWx3 uint8 BGR array.

    Accepts BGR (HxWx3), grayscale (HxW or HxWx1) and BGRA (HxWx4), all uint8. Anything
    else raises FrameError saying how to fix it.
    """
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"a frame must be a numpy array (OpenCV image), got {type(frame).__name__}. "
                         "Read frames with cv2.imread / cv2.VideoCapture.read().")
    if frame.dtype != np.uint8:
        raise FrameError(f"frames must be uint8 BGR, got dtype {frame.dtype}. Convert first, e.g. "
                         "np.clip(x * 255, 0, 255).astype(np.uint8) for [0, 1] floats.")
    if frame.ndim not in (2, 3):
        raise FrameError(f"frames must be HxW (gray), HxWx1, HxWx3 (BGR) or HxWx4 (BGRA); got shape {frame.shape}. "
                         "For a batch, call the segmenter once per frame.")
    if frame.shape[0] == 0 or frame.shape[1] == 0 or (frame.ndim == 3 and frame.shape[2] == 0):
        raise FrameError(f"empty frame (shape {frame.shape}): the source returned no image. "
                         "Check that the camera / file delivers frames (cap.read() returned ok?).")
    if frame.ndim == 2 or frame.shape[2] == 1:
        gray = frame if frame.ndim == 2 else frame[:, :, 0]
        return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)
    c = frame.shape[2]
    if c == 4:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
    if c != 3:
        raise FrameError(f"frames must have 1, 3 or 4 channels, got {c} (shape {frame.shape}).")
    return np.ascontiguousarray(frame)


def argmax_channels(logits: np.ndarray, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Argmax over classes of CxHxW logits, optionally resizing each class map bilinearly to
    `size` = (h, w) first; one class at a time, so no CxHxW float image is ever allocated."""
    c = logits.shape[0]

    def plane(i: int) -> np.ndarray:
        p = logits[i]
        if p.dtype != np.float32:
            p = p.astype(np.float32)
        if size is not None and p.shape != size:
            p = cv2.resize(p, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return p

    best = plane(0)
    if np.shares_memory(best, logits):
        best = best.copy()
    labels = np.zeros(best.shape, np.uint8)
    for i in range(1, c):
        p = plane(i)
        better = p > best
        labels[better] = i
        np.maximum(best, p, out=best)
    return labels


def _artifact_for_backend(path: Path, backend: Optional[str], precision: str) -> Path:
    """The file to load: `path` itself, or for an .onnx run with TensorRT, its cached engine."""
    if backend is None or backend == backend_for(path):
        return path
    if backend == "tensorrt" and path.suffix.lower() == ".onnx":
        from .engine_cache import cached_engine

        return cached_engine(path, precision=precision)
    raise ConfigError(f"{path.name} cannot run on backend {backend!r}: .onnx runs on onnxruntime or tensorrt "
                      "(engine built and cached on first use), .ts on torchscript, .engine on tensorrt.")


class Segmenter:
    """Run one exported artifact on BGR frames.

    Args:
        path: `.engine` (TensorRT), `.ts` (TorchScript) or `.onnx` (ONNX Runtime); its
            sidecar `.json` must sit beside it.
        device: "cpu", "cuda" or "cuda:N". TensorRT always runs on a GPU.
        logits_upsample: for logits artifacts, "bilinear" (exact, default) or "nearest".
        backend: None (from the extension) or a backend name; "tensorrt" on an `.onnx` builds
            an engine once and caches it beside the ONNX (see engine_cache.py).
        precision: the cached engine's precision ("fp16", "fp32", or "int8" for a Q/DQ ONNX).
        **backend_options: passed to the backend: `threads` (CPU threads), `providers`
            (ONNX Runtime), `fp16` and `cuda_graph` (TorchScript on CUDA).
    """

    def __init__(self, path: str | Path, device: str = "cpu", *, logits_upsample: str = "bilinear",
                 backend: Optional[str] = None, precision: str = "fp16", **backend_options: Any):
        self.path = Path(path)
        if not self.path.is_file():
            raise MetaError(f"no model file {self.path}. Export one with `pvtseg export` (makes .onnx/.ts + .json) "
                            "or build an engine with `pvtseg build-engine`.")
        self.path = _artifact_for_backend(self.path, backend, precision)
        self.meta: Dict[str, Any] = meta_mod.read(self.path)
        if logits_upsample not in ("bilinear", "nearest"):
            raise ConfigError("logits_upsample must be 'bilinear' or 'nearest'")
        self.logits_upsample = logits_upsample
        inp, out = self.meta["input"], self.meta["output"]
        self.input_size: Tuple[int, int] = (int(inp["height"]), int(inp["width"]))
        self.output_kind: str = out["kind"]
        self.output_stride: int = int(out["stride"])
        self.num_classes: int = int(self.meta["num_classes"])
        self.class_names: List[str] = list(self.meta["class_names"])
        self.palette: List[List[int]] = [list(c) for c in self.meta["palette"]]
        # Channel c of the model input comes from BGR channel src[c].
        self._src = (2, 1, 0) if inp.get("channel_order", "RGB") == "RGB" else (0, 1, 2)
        std = np.asarray(inp["std"], np.float64)
        mean = np.asarray(inp["mean"], np.float64)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._bias = (-mean / std).astype(np.float32)
        h, w = self.input_size
        self._batch = np.empty((1, 3, h, w), np.float32)
        if int(self.meta.get("batch", 1)) != 1 and "batch" not in (inp.get("dynamic") or {}):
            raise ArtifactMismatchError(
                f"{self.path}: the artifact takes a batch of {self.meta['batch']} frames; the Segmenter runs one "
                "frame per call. Export with --batch 1 (or --dynamic) for the runtime.")
        self.backend_name = backend_for(self.path)
        self.backend: Backend = backend_class(self.backend_name)(self.path, self.meta, device, **backend_options)
        self.device = self.backend.device
        self.timings = Timings()

    # -- stages ---------------------------------------------------------------------------
    def preprocess(self, frame: Any) -> np.ndarray:
        """Frame -> the reused NCHW float32 input batch (see the module docstring)."""
        bgr = as_bgr(frame)
        h, w = self.input_size
        if bgr.shape[0] != h or bgr.shape[1] != w:
            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
        buf = self._batch
        for c in range(3):
            plane = buf[0, c]
            np.multiply(bgr[:, :, self._src[c]], self._scale[c], out=plane, casting="unsafe")
            plane += self._bias[c]
        return buf

    def postprocess(self, out: np.ndarray, frame_hw: Tuple[int, int]) -> np.ndarray:
        """Backend output -> uint8 labels at `frame_hw` = (height, width)."""
        fh, fw = frame_hw
        if self.output_kind == "labels":
            lab = out[0] if out.ndim == 3 else out
            if lab.ndim == 3:  # N x 1 x H x W
                lab = lab[0]
            if lab.dtype != np.uint8:
                lab = lab.astype(np.uint8)
            if lab.shape != (fh, fw):
                lab = cv2.resize(lab, (fw, fh), interpolation=_NEAREST)
            return np.ascontiguousarray(lab)
        logits = out[0] if out.ndim == 4 else out
        if self.logits_upsample == "nearest":
            lab = argmax_channels(logits)
            return lab if lab.shape == (fh, fw) else cv2.resize(lab, (fw, fh), interpolation=_NEAREST)
        return argmax_channels(logits, (fh, fw))

    def __call__(self, frame: Any) -> np.ndarray:
        t0 = time.perf_counter()
        batch = self.preprocess(frame)
        t1 = time.perf_counter()
        out = self.backend.infer(batch)
        t2 = time.perf_counter()
        labels = self.postprocess(out, (frame.shape[0], frame.shape[1]))
        t3 = time.perf_counter()
        self.timings = Timings((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return labels

    segment = __call__

    # -- misc -----------------------------------------------------------------------------
    def describe(self) -> str:
        h, w = self.input_size
        return (f"{self.path.name}: {self.meta['arch']} {w}x{h} -> {self.output_kind}"
                f"{'' if self.output_kind == 'labels' else f' (stride {self.output_stride})'}; "
                f"{self.backend.describe()}")

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Segmenter({str(self.path)!r}, device={self.device!r}, backend={self.backend_name!r})"
