"""One small interface every inference backend implements.

A backend takes the preprocessed NCHW float32 batch and returns the raw model output
as a host numpy array (labels N x H x W, or logits N x C x h x w). Everything around it
(frame checks, resize, normalisation, upsampling, argmax) lives in the Segmenter, so the
backends stay small and interchangeable.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from ...errors import DeviceError


def parse_device(device: str) -> Tuple[str, int]:
    """"cpu" -> ("cpu", 0); "cuda" -> ("cuda", 0); "cuda:1" -> ("cuda", 1)."""
    d = str(device).strip().lower()
    if d == "cpu":
        return "cpu", 0
    if d in ("cuda", "gpu"):
        return "cuda", 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N' (N = GPU index).")


class Backend(abc.ABC):
    """Runs one artifact. Subclasses set `name` and implement `infer`."""

    name: str = "base"

    def __init__(self, path: Path, meta: Dict[str, Any], device: str = "cpu"):
        self.path = Path(path)
        self.meta = meta
        self.device_type, self.device_index = parse_device(device)
        self.device = "cpu" if self.device_type == "cpu" else f"cuda:{self.device_index}"
        self.input_name: str = meta["input"]["name"]
        self.output_name: str = meta["output"]["name"]

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 (C-contiguous) -> the model's output on the host (numpy)."""

    def describe(self) -> str:
        """One line for logs and benchmark tables (backend, device, provider, precision)."""
        return f"{self.name} on {self.device}"

    def close(self) -> None:
        """Release sessions / device memory. Safe to call twice."""

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
