"""Inference backends behind one interface (`base.Backend`).

Each backend module imports its framework lazily (inside `__init__` of its class or at
the top of its own module, which is only imported when that backend is chosen), so
`pvtseg.runtime` never pulls torch, onnxruntime or tensorrt in by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Type

from ...errors import DeviceError, UnknownArtifactError  # noqa: F401
from .base import Backend, parse_device  # noqa: F401


#: artifact suffix -> backend name
SUFFIX_BACKEND = {".engine": "tensorrt", ".plan": "tensorrt", ".ts": "torchscript", ".pt": "torchscript",
                  ".onnx": "onnxruntime"}
BACKENDS = ("tensorrt", "torchscript", "onnxruntime")


def backend_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKEND:
        raise UnknownArtifactError(
            f"{path}: cannot tell the backend from the extension {suffix or '(none)'!r}. "
            "Pass an exported artifact: .engine (TensorRT), .ts (TorchScript) or .onnx (ONNX Runtime); "
            "`pvtseg export` makes .ts/.onnx and `pvtseg build-engine` makes .engine.")
    return SUFFIX_BACKEND[suffix]


def backend_class(name: str) -> Type[Backend]:
    """Import only the chosen backend's module."""
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend
    if name == "torchscript":
        from .torchscript import TorchScriptBackend

        return TorchScriptBackend
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend
    raise UnknownArtifactError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")


def create_backend(path: str | Path, meta: Dict[str, Any], device: str = "cpu", **options: Any) -> Backend:
    return backend_class(backend_for(path))(Path(path), meta, device, **options)

