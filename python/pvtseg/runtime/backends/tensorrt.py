"""TensorRT backend: `.engine` artifacts built by `pvtseg build-engine` / build_engine.py.

Only `tensorrt` and cuda-python are used (no pycuda, no torch), so a Jetson with
JetPack's TensorRT, numpy, OpenCV and `pip install cuda-python` runs it. Tensors are
bound by name (`set_tensor_address` + `execute_async_v3`, TensorRT >= 8.5): pinned host
buffers, one device buffer per I/O tensor, one CUDA stream, allocated once.

An engine only runs on the TensorRT version and GPU architecture it was built for; the
sidecar records both (`tensorrt_version`, `compute_capability`) and a mismatch raises
EngineError telling the user to rebuild with build_engine.py on this machine.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ...errors import EngineError
from ..io_check import TensorSpec, check_io, normalize_dims
from .base import Backend

try:  # TensorRT is imported here only: this module is loaded only for `.engine` files.
    import tensorrt as trt
except ImportError as _e:  # pragma: no cover - depends on the machine
    trt = None  # type: ignore[assignment]
    _TRT_IMPORT_ERROR: Optional[BaseException] = _e
else:
    _TRT_IMPORT_ERROR = None

try:  # cuda-python >= 12.6 names it cuda.bindings; older releases `from cuda import cudart`.
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - depends on the machine
    try:
        from cuda import cudart
    except ImportError as _e2:
        cudart = None
        _CUDA_IMPORT_ERROR: Optional[BaseException] = _e2
    else:
        _CUDA_IMPORT_ERROR = None
else:
    _CUDA_IMPORT_ERROR = None

REBUILD_HINT = ("Rebuild the engine on this machine: `python python/build_engine.py --onnx MODEL.onnx` "
                "(or `pvtseg build-engine`), from the .onnx that came with it.")


def tensorrt_available() -> Tuple[bool, str]:
    """(True, "") when both tensorrt and cuda-python import; else (False, reason)."""
    if trt is None:
        return False, f"tensorrt is not importable ({_TRT_IMPORT_ERROR})"
    if not hasattr(trt, "Runtime"):  # a bare `tensorrt/` folder, e.g. only tensorrt-stubs is installed
        return False, "`tensorrt` here is only type stubs (tensorrt-stubs), not the TensorRT library"
    if cudart is None:
        return False, f"cuda-python is not importable ({_CUDA_IMPORT_ERROR}); `pip install cuda-python`"
    return True, ""


def _check(result: Any, what: str) -> Any:
    """cuda-python calls return (err, *values): raise on error, return the values."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if err != cudart.cudaError_t.cudaSuccess:
        _, msg = cudart.cudaGetErrorString(err)
        text = msg.decode() if isinstance(msg, bytes) else str(msg)
        raise EngineError(f"CUDA error in {what}: {text} ({err}). Check that the GPU is visible (nvidia-smi / tegrastats).")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _version_key(v: str, parts: int = 3) -> Tuple[int, ...]:
    out: List[int] = []
    for p in str(v).split(".")[:parts]:
        digits = "".join(ch for ch in p if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _dims(d: "trt.Dims") -> Tuple[int, ...]:
    """TensorRT Dims -> tuple of ints (Dims indexes like a tuple but is not typed iterable)."""
    return tuple(int(d[i]) for i in range(len(d)))


class _Binding:
    """One I/O tensor: name, dtype, shape, pinned host array and device pointer."""

    def __init__(self, name: str, is_input: bool, dtype: np.dtype, shape: Tuple[int, ...]):
        self.name = name
        self.is_input = is_input
        self.dtype = dtype
        self.shape = shape
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        self.device = int(_check(cudart.cudaMalloc(self.nbytes), f"cudaMalloc({name})"))
        self.host_ptr = int(_check(cudart.cudaMallocHost(self.nbytes), f"cudaMallocHost({name})"))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.host_ptr)
        self.host = np.frombuffer(memoryview(raw).cast("B"), dtype=dtype).reshape(shape)

    def free(self) -> None:
        if self.device:
            cudart.cudaFree(self.device)
            self.device = 0
        if self.host_ptr:
            cudart.cudaFreeHost(self.host_ptr)
            self.host_ptr = 0


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Path, meta: Dict[str, Any], device: str = "cuda", **_: Any):
        super().__init__(path, meta, "cuda" if device == "cpu" else device)
        ok, why = tensorrt_available()
        if not ok:
            raise EngineError(f"{path}: cannot run a TensorRT engine: {why}. On Jetson, TensorRT comes with "
                              "JetPack; elsewhere use the .onnx or .ts artifact instead.")
        self._bindings: List[_Binding] = []
        self._stream: Any = None
        self._check_build_target(meta)
        _check(cudart.cudaSetDevice(self.device_index), "cudaSetDevice")
        self.engine, self.context = self._load(Path(path))
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        inputs, outputs = self._io_specs()
        check_io(str(path), meta, inputs, outputs)
        self._bind_all(inputs[0], [o.name for o in outputs])

    def _load(self, path: Path) -> Tuple["trt.ICudaEngine", "trt.IExecutionContext"]:
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineError(f"{path}: TensorRT {trt.__version__} could not deserialize this engine "
                              f"(built for another TensorRT version or GPU, or the file is damaged). {REBUILD_HINT}")
        context = engine.create_execution_context()
        if context is None:
            raise EngineError(f"{path}: could not create an execution context (out of GPU memory?).")
        return engine, context

    def _io_specs(self) -> Tuple[List[TensorSpec], List[TensorSpec]]:
        """Every I/O tensor of the engine as declared (dynamic axes as None)."""
        inputs: List[TensorSpec] = []
        outputs: List[TensorSpec] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            spec = TensorSpec(name, normalize_dims(_dims(self.engine.get_tensor_shape(name))),
                              np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).name)
            (inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        return inputs, outputs

    def _bind_all(self, inp: TensorSpec, outputs: List[str]) -> None:
        """Resolve the input shape, then give EVERY I/O tensor a buffer (enqueue needs all bound)."""
        h, w = int(self.meta["input"]["height"]), int(self.meta["input"]["width"])
        in_shape = (1, 3, h, w)
        if any(d is None for d in inp.shape) and not self.context.set_input_shape(inp.name, in_shape):
            raise EngineError(f"{self.path}: the engine's optimisation profile does not admit input {in_shape}. "
                              f"{REBUILD_HINT}")
        for name in [inp.name] + outputs:
            is_input = name == inp.name
            shape = in_shape if is_input else _dims(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EngineError(f"{self.path}: output {name} has an unresolved shape {shape}. {REBUILD_HINT}")
            b = _Binding(name, is_input, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))), shape)
            self._bindings.append(b)
            if not self.context.set_tensor_address(name, b.device):
                raise EngineError(f"{self.path}: set_tensor_address({name}) failed.")
        self._in = self._bindings[0]
        self._out = next(b for b in self._bindings if b.name == self.output_name)

    def _check_build_target(self, meta: Dict[str, Any]) -> None:
        built_trt = meta.get("tensorrt_version")
        if built_trt and _version_key(built_trt) != _version_key(trt.__version__):
            raise EngineError(f"{self.path}: built with TensorRT {built_trt}, this machine has {trt.__version__}; "
                              f"engines are not portable across TensorRT versions. {REBUILD_HINT}")
        built_cc = meta.get("compute_capability")
        if built_cc:
            prop = _check(cudart.cudaGetDeviceProperties(self.device_index), "cudaGetDeviceProperties")
            here = f"{prop.major}.{prop.minor}"
            if _version_key(str(built_cc), 2) != _version_key(here, 2):
                gpu = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
                raise EngineError(f"{self.path}: built for compute capability {built_cc}, this GPU ({gpu}) is {here}; "
                                  f"engines are not portable across GPU architectures. {REBUILD_HINT}")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self._in.shape:
            raise EngineError(f"input batch {batch.shape} does not match the engine's {self._in.shape}.")
        np.copyto(self._in.host, batch, casting="same_kind")
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self._in.device, self._in.host_ptr, self._in.nbytes, h2d, self._stream), "H2D copy")
        if not self.context.execute_async_v3(int(self._stream)):
            raise EngineError(f"{self.path}: execute_async_v3 failed (see the TensorRT log above).")
        _check(cudart.cudaMemcpyAsync(self._out.host_ptr, self._out.device, self._out.nbytes, d2h, self._stream), "D2H copy")
        _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return self._out.host.copy()

    def describe(self) -> str:
        version = trt.__version__ if trt is not None else "?"
        return f"tensorrt {version} {self.device} ({self.meta.get('precision', 'fp32')})"

    def close(self) -> None:
        for b in getattr(self, "_bindings", []):
            b.free()
        self._bindings = []
        if getattr(self, "_stream", None) is not None and cudart is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self.__dict__.pop("context", None)
        self.__dict__.pop("engine", None)
