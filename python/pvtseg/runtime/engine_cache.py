"""Engine cache: hand the runtime an `.onnx`, get a TensorRT engine built once and reused.

    seg = Segmenter("models/build/x.onnx", backend="tensorrt")   # builds on first use

The engine lives beside the ONNX as `x.<precision>.trt<version>.sm<cc>.<key>.engine` (+ its
sidecar). `<key>` is the first 12 hex digits of a sha256 over everything an engine depends
on: the ONNX bytes (and its external-data file), the TensorRT version, the GPU's compute
capability, the precision and the input shape profile. A changed key gives a new file name,
so a stale engine is never loaded; an engine whose sidecar lacks the key is rebuilt.
The builder writes the engine and its sidecar atomically (temporaries renamed into place),
so a build interrupted by a crash or Ctrl-C leaves no half engine behind.

Building needs TensorRT (only `pvtseg.engine.builder` imports it); the key itself is plain
Python and is unit-tested on machines without a GPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from .. import __version__
from .. import meta as meta_mod
from ..errors import EngineError, MetaError
from ..io_utils import sha256_file

PRECISIONS = ("fp32", "fp16", "int8")
# What a build may take from the GPU's memory: enough for PVT/SegFormer segmentors at
# 512x1024, small enough to build on an 8 GB Orin Nano next to a running ROS graph.
DEFAULT_WORKSPACE_MB = 1024


def onnx_digest(onnx_path: Path, meta: Optional[Dict[str, Any]] = None) -> str:
    """sha256 of the graph and, when the weights sit in `x.onnx.data`, of those too. The graph's
    hash comes from its sidecar when the export recorded it (meta.read has just checked it)."""
    recorded = ((meta or {}).get(meta_mod.ARTIFACTS_KEY) or {}).get(onnx_path.name) or {}
    digest = recorded.get("sha256") or sha256_file(onnx_path)
    data = onnx_path.with_name(onnx_path.name + ".data")
    return digest if not data.is_file() else hashlib.sha256((digest + sha256_file(data)).encode()).hexdigest()


def shape_profile(meta: Dict[str, Any]) -> Dict[str, Any]:
    inp = meta["input"]
    return {"height": int(inp["height"]), "width": int(inp["width"]), "dynamic": inp.get("dynamic")}


def cache_key(onnx_sha256: str, trt_version: str, compute_capability: str, precision: str,
              profile: Dict[str, Any]) -> str:
    """Everything an engine depends on, hashed; any change gives a different key. pvtseg's own
    version is part of it: the graph handed to the parser comes from pvtseg's adaptations."""
    fields = {"onnx_sha256": onnx_sha256, "tensorrt": trt_version, "cc": compute_capability,
              "precision": precision, "profile": profile, "pvtseg": __version__}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def engine_path_for(onnx_path: Path, key: str, trt_version: str, compute_capability: str, precision: str) -> Path:
    cc = compute_capability.replace(".", "")
    return onnx_path.with_name(f"{onnx_path.stem}.{precision}.trt{trt_version}.sm{cc}.{key[:12]}.engine")


def _cached(engine: Path, key: str) -> bool:
    if not engine.is_file() or not meta_mod.sidecar_path(engine).is_file():
        return False
    try:
        return meta_mod.read(engine).get("engine_cache_key") == key
    except MetaError:
        return False


def _target() -> Dict[str, str]:
    """TensorRT version and compute capability of this machine (EngineError when there is none)."""
    from ..engine.builder import import_tensorrt
    from ..engine.device import gpu_info

    trt = import_tensorrt()
    name, cc, why = gpu_info(0)
    if name is None or cc is None:
        raise EngineError(f"cannot build a TensorRT engine here: {why}. Run the .onnx with ONNX Runtime instead "
                          "(backend='onnxruntime'), or build on the device that will run the engine.")
    return {"trt": str(trt.__version__), "cc": cc}


def cached_engine(onnx_path: "str | Path", *, precision: str = "fp16", workspace_mb: Optional[int] = None,
                  log: Callable[[str], None] = print, target: Optional[Dict[str, str]] = None,
                  build: Optional[Callable[..., Any]] = None) -> Path:
    """Path of an engine for `onnx_path` on this machine, building (once) when needed.

    `target` and `build` are injectable for tests; by default they come from TensorRT and
    `pvtseg.engine.builder.build_engine`.
    """
    onnx_path = Path(onnx_path)
    if precision not in PRECISIONS:
        raise EngineError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    meta = meta_mod.read(onnx_path)
    if meta.get("precision") == "int8" and precision != "int8":
        log(f"engine cache: {onnx_path.name} is a Q/DQ (INT8) graph; building INT8 (asked: {precision})")
        precision = "int8"  # TensorRT builds a Q/DQ graph in INT8 whatever flag is set
    target = target or _target()
    key = cache_key(onnx_digest(onnx_path, meta), target["trt"], target["cc"], precision, shape_profile(meta))
    engine = engine_path_for(onnx_path, key, target["trt"], target["cc"], precision)
    if _cached(engine, key):
        log(f"engine cache: reusing {engine.name}")
        return engine
    log(f"engine cache: building {engine.name} from {onnx_path.name} ({precision}, TensorRT {target['trt']}, "
        f"sm {target['cc']}); this takes minutes once, later runs reuse it")
    if build is None:
        from ..engine.builder import build_engine as build
    # The key rides in the meta the builder writes with the engine, as one atomic set.
    build(onnx_path, engine, fp16=precision == "fp16", int8=precision == "int8",
          workspace_mb=workspace_mb or DEFAULT_WORKSPACE_MB, meta=dict(meta, engine_cache_key=key), log=log)
    log(f"engine cache: wrote {engine}")
    return engine
