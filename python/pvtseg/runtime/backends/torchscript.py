"""TorchScript backend: `.ts` artifacts on CPU or CUDA (the only backend that imports torch).

Options: `fp16=True` (CUDA only) runs the module in half precision; `cuda_graph=True`
(CUDA only, static input shape) captures one forward into a CUDA graph and replays it,
which removes the per-kernel launch overhead that dominates small models on a GPU.
`threads=N` sets torch's intra-op thread count (default: torch's own, = cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ...errors import DeviceError, PvtsegError
from ..io_check import TensorSpec, check_io, expected_input
from .base import Backend


class TorchScriptBackend(Backend):
    name = "torchscript"

    def __init__(self, path: Path, meta: Dict[str, Any], device: str = "cpu", *, fp16: bool = False,
                 cuda_graph: bool = False, threads: Optional[int] = None, **_: Any):
        super().__init__(path, meta, device)
        try:
            import torch
        except ImportError as e:
            raise PvtsegError(f"{path}: the TorchScript backend needs PyTorch ({e}). Install torch, or use the "
                              ".onnx (ONNX Runtime) or .engine (TensorRT) artifact.") from e
        self._torch = torch
        if self.device_type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"device {self.device} asked for, but torch sees no CUDA GPU "
                              f"(torch {torch.__version__}). Pass device='cpu' or install a CUDA build of torch.")
        if (fp16 or cuda_graph) and self.device_type != "cuda":
            raise DeviceError("fp16 and cuda_graph need device='cuda' for the TorchScript backend.")
        if threads:
            torch.set_num_threads(int(threads))
        self.fp16 = bool(fp16)
        self.cuda_graph = bool(cuda_graph)
        self.tdevice = torch.device(self.device)
        try:
            module = torch.jit.load(str(path), map_location=self.tdevice)
        except Exception as e:
            raise PvtsegError(f"{path}: torch.jit.load failed ({e}). Re-export it with `pvtseg export`.") from e
        module.eval()
        if self.fp16:
            module = module.half()
        self.module = module
        self.dtype = torch.float16 if self.fp16 else torch.float32
        self._graph: Any = None
        self._static_in: Any = None
        self._static_out: Any = None
        self._pinned: Any = None
        self._check_against_sidecar()

    def _check_against_sidecar(self) -> None:
        """A TorchScript file declares no I/O types: run one zero frame and look at what comes out."""
        shape = tuple(1 if d is None else d for d in expected_input(self.meta).shape)
        try:
            out = self.infer(np.zeros(shape, np.float32))
        except Exception as e:  # the module's own error (wrong input size, ...) says what it wanted
            raise PvtsegError(f"{self.path}: a {shape} input fails in this TorchScript module ({e}); "
                              "the sidecar's input size does not fit it. Re-export with `pvtseg export`.") from e
        inp = TensorSpec(self.input_name, shape, "float32")
        # fp16=True is this backend's own conversion: half logits stand for the float32 the sidecar names.
        dtype = "float32" if self.fp16 and out.dtype == np.float16 else out.dtype.name
        classes = getattr(self.module, "num_classes", None)  # kept through freeze by `pvtseg export`
        check_io(str(self.path), self.meta, [inp], [TensorSpec(self.output_name, tuple(out.shape), dtype)],
                 graph_meta={"num_classes": classes} if isinstance(classes, int) else None)

    def _capture(self, shape: tuple) -> None:
        torch = self._torch
        self._static_in = torch.zeros(shape, device=self.tdevice, dtype=self.dtype)
        self._pinned = torch.empty(shape, dtype=torch.float32, pin_memory=True)
        side = torch.cuda.Stream(device=self.tdevice)
        side.wait_stream(torch.cuda.current_stream(self.tdevice))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):  # let the profiling executor settle before capture
                self.module(self._static_in)
        torch.cuda.current_stream(self.tdevice).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self._graph):
            self._static_out = self.module(self._static_in)
        torch.cuda.synchronize(self.tdevice)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        if self.cuda_graph:
            if self._graph is None or tuple(self._static_in.shape) != batch.shape:
                self._capture(tuple(batch.shape))
            self._pinned.numpy()[...] = batch
            self._static_in.copy_(self._pinned, non_blocking=True)
            self._graph.replay()
            return self._static_out.cpu().numpy()
        with torch.inference_mode():
            x = torch.from_numpy(batch)
            if self.device_type == "cuda":
                x = x.to(self.tdevice, non_blocking=False)
            if self.fp16:
                x = x.half()
            out = self.module(x)
            return out.cpu().numpy()

    def describe(self) -> str:
        extra = " fp16" if self.fp16 else ""
        extra += " cuda-graph" if self.cuda_graph else ""
        return f"torchscript {self._torch.__version__} {self.device}{extra} ({self._torch.get_num_threads()} threads)"

    def close(self) -> None:
        self._graph = self._static_in = self._static_out = self._pinned = None
        self.__dict__.pop("module", None)
