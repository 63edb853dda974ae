"""ONNX Runtime backend: `.onnx` artifacts, with the best execution provider present.

Provider choice: device "cpu" -> CPUExecutionProvider; device "cuda[:N]" ->
CUDAExecutionProvider (device_id N) with CPU fallback for unsupported nodes. The
TensorRT execution provider is only used when asked for with `providers=[...]`: it builds
an engine on first run (minutes), which the `.engine` path of this runtime does ahead of
time with `pvtseg build-engine`.

Session options matter on small CPUs: full graph optimisation (constant folding, node
fusions such as LayerNorm / GELU / MatMul+Add), intra-op threads = CPU cores, one
inter-op thread, sequential execution, memory-pattern planning on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ...errors import DeviceError, PvtsegError
from ..io_check import TensorSpec, check_io, normalize_dims
from .base import Backend


def cpu_cores() -> int:
    """CPUs this process may run on (cgroup / affinity aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ONNX Runtime's type strings -> numpy dtype names
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(int8)": "int8"}


def _spec(arg: Any) -> TensorSpec:
    return TensorSpec(arg.name, normalize_dims(arg.shape), _ORT_TYPES.get(arg.type, arg.type))


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, meta: Dict[str, Any], device: str = "cpu", *,
                 threads: Optional[int] = None, providers: Optional[Sequence[Any]] = None,
                 optimization: str = "all", **_: Any):
        super().__init__(path, meta, device)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise PvtsegError(
                f"{path}: the ONNX Runtime backend needs `onnxruntime` ({e}). Install it with "
                "`pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` (CUDA), or use the "
                ".engine / .ts artifact instead.") from e
        self._ort = ort
        so = ort.SessionOptions()
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        so.graph_optimization_level = levels[optimization]
        self.threads = int(threads) if threads else cpu_cores()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.enable_mem_pattern = True
        so.enable_cpu_mem_arena = True
        so.log_severity_level = 3
        self.providers = list(providers) if providers else self._pick_providers(ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph types
            raise PvtsegError(f"{path}: ONNX Runtime cannot load this model ({e}). Re-export it with "
                              "`pvtseg export` (opset >= 17).") from e
        check_io(str(path), meta, [_spec(i) for i in self.session.get_inputs()],
                 [_spec(o) for o in self.session.get_outputs()], graph_meta=self._embedded_meta())
        self._out_names: List[str] = [self.output_name]

    def _embedded_meta(self) -> Optional[Dict[str, Any]]:
        """The sidecar `pvtseg export` stores in the ONNX metadata (key "pvtseg"), if any."""
        text = self.session.get_modelmeta().custom_metadata_map.get("pvtseg")
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None

    def _pick_providers(self, available: List[str]) -> List[Any]:
        if self.device_type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise DeviceError(
                    f"device {self.device} asked for, but this onnxruntime has only {available}. "
                    "Install `onnxruntime-gpu` (or on Jetson the JetPack onnxruntime wheel), or pass device='cpu'.")
            return [("CUDAExecutionProvider", {"device_id": self.device_index}), "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._out_names, {self.input_name: batch})[0]

    def describe(self) -> str:
        prov = self.session.get_providers()[0] if getattr(self, "session", None) else "?"
        return f"onnxruntime {self._ort.__version__} {prov} ({self.threads} threads)"

    def close(self) -> None:
        self.__dict__.pop("session", None)
