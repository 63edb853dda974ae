"""ONNX -> TensorRT engine. The only pvtseg module that imports tensorrt.

Everything decidable without TensorRT comes from prepare.py (the adapted graph, the plan:
flags, FP32 layers by name, profile); this module turns it into TensorRT API calls that
exist on 8.5, 8.6, 10.x and 11.x, and is type-checked against the `tensorrt-stubs` package
(tests/test_engine_typecheck.py). Strongly typed plans (10.12+, 11) make no deprecated call:
no FP16/INT8/OBEY_PRECISION_CONSTRAINTS flag and no per-layer precision.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set

from .. import meta as meta_mod
from ..errors import EngineError
from ..io_utils import AtomicSet, atomic_write_bytes
from ..platform_info import collect_facts
from .device import gpu_info
from .plan import BuildPlan, LayerInfo, select_fp32_layers
from .prepare import PreparedBuild, describe, prepare_build, save_graph

INSTALL_HINT = ("TensorRT is not installed for this Python: on a Jetson it comes with JetPack "
                "(`sudo apt install python3-libnvinfer`), on a desktop `pip install tensorrt`; "
                "then rerun build_engine.py")


if TYPE_CHECKING:
    import tensorrt as trt
else:
    trt = None  # bound by import_tensorrt(); mypy checks the calls below against tensorrt-stubs


def import_tensorrt() -> Any:
    """The tensorrt module, or EngineError with the install command (one line)."""
    global trt
    try:
        import tensorrt as module
    except ImportError as e:
        raise EngineError(f"{INSTALL_HINT} (import tensorrt: {e})") from None
    if not hasattr(module, "Builder"):  # e.g. only the type stubs are installed
        raise EngineError(f"{INSTALL_HINT} (found a `tensorrt` without its library: type stubs only?)")
    trt = module
    return module


def _network_flags(plan: BuildPlan) -> int:
    flags = 0
    for name in plan.network_flags:
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is None:
            if name == "EXPLICIT_BATCH":  # removed in newer TensorRT: always explicit there
                continue
            raise EngineError(f"TensorRT {plan.version} lacks NetworkDefinitionCreationFlag.{name}")
        flags |= 1 << int(flag)
    return flags


def _parse(parser: "trt.OnnxParser", prepared: PreparedBuild, log: Callable[[str], None]) -> None:
    # The path lets the parser find external weights beside the exported ONNX.
    if parser.parse(prepared.model_bytes, str(prepared.source)):
        return
    n = parser.num_errors
    for i in range(n):
        err = parser.get_error(i)
        log(f"  ONNX parser error {i + 1}/{n}: {err}")
    raise EngineError(f"TensorRT {trt.__version__}'s ONNX parser rejected the graph adapted from {prepared.source} "
                      f"({n} error(s) above); `build_engine.py --plan-only --save-onnx X.onnx` writes that graph "
                      "for inspection; re-export with `pvtseg export --opset 17` if the errors name an op")


def _pin_fp32(network: "trt.INetworkDefinition", islands: Set[str]) -> int:
    layers: List[LayerInfo] = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        dtypes = tuple(layer.get_output(j).dtype.name for j in range(layer.num_outputs))
        layers.append(LayerInfo(layer.name, layer.type.name, dtypes))
    chosen = select_fp32_layers(layers, islands)
    for i in chosen:
        layer = network.get_layer(i)
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype.name in ("FLOAT", "HALF"):
                layer.set_output_type(j, trt.float32)
    return len(chosen)


def _configure(builder: "trt.Builder", plan: BuildPlan) -> "trt.IBuilderConfig":
    config = builder.create_builder_config()
    for name in plan.builder_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise EngineError(f"TensorRT {plan.version} has no BuilderFlag.{name}; "
                              "this plan needs a different TensorRT version")
        config.set_flag(flag)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    if plan.dla_core is not None:
        if builder.num_DLA_cores <= plan.dla_core:
            raise EngineError(f"--dla-core {plan.dla_core}: this device has {builder.num_DLA_cores} DLA core(s) "
                              "(DLA exists on Jetson Xavier / Orin AGX and NX only)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    if plan.profile is not None:
        p = plan.profile
        profile = builder.create_optimization_profile()
        profile.set_shape(p.input_name, trt.Dims(list(p.min)), trt.Dims(list(p.opt)), trt.Dims(list(p.max)))
        config.add_optimization_profile(profile)
    if plan.timing_cache:
        blob = Path(plan.timing_cache).read_bytes() if Path(plan.timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, False)
    return config


def _build_serialized(prepared: PreparedBuild, verbose: bool, log: Callable[[str], None]) -> Any:
    """Parse the prepared graph and build the serialized engine (the plan is applied here, once)."""
    plan = prepared.plan
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(plan))
    parser = trt.OnnxParser(network, logger)
    _parse(parser, prepared, log)
    if plan.pin_fp32_layers:
        n = _pin_fp32(network, set(plan.fp32_layers))
        log(f"plan: {n} TensorRT layer(s) pinned to FP32")
    config = _configure(builder, plan)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine (its log above says why); try --workspace 2048 "
                          "or --verbose")
    if plan.timing_cache:
        atomic_write_bytes(plan.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return serialized


def _write_engine_set(engine_path: Path, data: bytes, meta: Dict[str, Any]) -> None:
    """Engine + sidecar as one set, sidecar first: it records the engine's sha256, so a reader
    that looks between the two renames refuses the pair instead of running a mismatched one."""
    with AtomicSet() as files:
        files.write_bytes(meta_mod.sidecar_path(engine_path), meta_mod.dumps(meta).encode("utf-8"))
        files.write_bytes(engine_path, data)
        files.commit()


def build_engine(onnx_path: "str | os.PathLike[str]", engine_path: "str | os.PathLike[str]", *,
                 fp16: bool = False, int8: bool = False, workspace_mb: Optional[int] = None,
                 timing_cache: Optional[str] = None, min_shape: Optional[str] = None,
                 opt_shape: Optional[str] = None, max_shape: Optional[str] = None,
                 dla_core: Optional[int] = None, verbose: bool = False, meta: Optional[Dict[str, Any]] = None,
                 save_onnx: "str | os.PathLike[str] | None" = None,
                 log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Build `engine_path` and its sidecar `engine_path.with_suffix(".json")`. Returns the sidecar.

    The graph handed to the parser is the ONNX adapted to the installed TensorRT (see
    prepare.py; `save_onnx` writes it too). A Q/DQ graph builds INT8 whatever `int8` says;
    `int8=True` on a float graph raises EngineError pointing to `pvtseg quantize`. The
    workspace is capped at plan.DEFAULT_WORKSPACE_MB unless `workspace_mb` says otherwise.
    Both files are written atomically; nothing is written when the build fails.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    import_tensorrt()
    name, cc, why = gpu_info(0)
    if name is None:
        raise EngineError(f"no CUDA GPU to build on: {why}. Build the engine on the device that will run it "
                          "(an engine is tied to its GPU and TensorRT version)")
    prepared = prepare_build(onnx_path, str(trt.__version__), fp16=fp16, int8=int8, workspace_mb=workspace_mb,
                             dla_core=dla_core, timing_cache=timing_cache, min_shape=min_shape,
                             opt_shape=opt_shape, max_shape=max_shape, meta=meta)
    for line in describe(prepared):
        log(line)
    if save_onnx is not None:
        log(f"wrote {save_graph(prepared, save_onnx)} (the graph handed to the parser)")
    t0 = time.perf_counter()
    data = bytes(memoryview(_build_serialized(prepared, verbose, log)))
    build_s = time.perf_counter() - t0
    out = dict(prepared.meta, tensorrt_version=str(trt.__version__), compute_capability=cc, gpu_name=name,
               build_seconds=round(build_s, 1), dla_core=prepared.plan.dla_core,
               platform=collect_facts(imports=False))
    out[meta_mod.ARTIFACTS_KEY] = {engine_path.name: meta_mod.bytes_digest(data)}
    _write_engine_set(engine_path, data, out)
    log(f"wrote {engine_path} ({engine_path.stat().st_size / 1e6:.1f} MB, {prepared.plan.precision}, "
        f"TensorRT {trt.__version__}, sm {cc}, {build_s:.0f} s)")
    return out
