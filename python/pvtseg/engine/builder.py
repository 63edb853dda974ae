"""ONNX -> TensorRT engine. The only pvtseg module that imports tensorrt.

Everything decidable without TensorRT comes from plan.py (flags, FP32 layers, profile);
this module turns the plan into TensorRT API calls that exist on 8.5, 8.6, 10.x and 11.x,
and is type-checked against the `tensorrt-stubs` package (tests/test_engine_typecheck.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set

from .. import meta as meta_mod
from ..errors import EngineError
from ..io_utils import atomic_path, atomic_write_bytes
from .device import gpu_info
from .plan import BuildPlan, LayerInfo, make_plan, make_profile, select_fp32_layers

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


def _parse(parser: "trt.OnnxParser", path: Path, log: Callable[[str], None]) -> None:
    data = path.read_bytes()
    if parser.parse(data, str(path)):
        return
    n = parser.num_errors
    for i in range(n):
        err = parser.get_error(i)
        log(f"  ONNX parser error {i + 1}/{n}: {err}")
    raise EngineError(f"TensorRT {trt.__version__}'s ONNX parser rejected {path} ({n} error(s) above); "
                      "re-export with `pvtseg export --opset 17` and check the op warnings it prints")


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
    if plan.workspace_bytes is not None:
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


def build_engine(onnx_path: "str | os.PathLike[str]", engine_path: "str | os.PathLike[str]", *,
                 fp16: bool = False, workspace_mb: Optional[int] = None, timing_cache: Optional[str] = None,
                 min_shape: Optional[str] = None, opt_shape: Optional[str] = None,
                 max_shape: Optional[str] = None, dla_core: Optional[int] = None, verbose: bool = False,
                 meta: Optional[Dict[str, Any]] = None, island_names: Optional[Set[str]] = None,
                 log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Build `engine_path` (+ its .json sidecar) from an exported ONNX. Returns the sidecar.

    `meta` defaults to the ONNX's sidecar; `island_names` (the FP32 ONNX nodes, from
    fp16_onnx.island_node_names) is computed from the graph when the onnx package is present.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if meta is None:
        meta = meta_mod.read(onnx_path)
    import_tensorrt()
    name, cc, why = gpu_info(0)
    if name is None:
        raise EngineError(f"no CUDA GPU to build on: {why}. Build the engine on the device that will run it "
                          "(an engine is tied to its GPU and TensorRT version)")
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plan0 = make_plan(trt.__version__, fp16=fp16, workspace_mb=workspace_mb, dla_core=dla_core,
                      timing_cache=timing_cache)
    parse_path = onnx_path
    tmp_fp16: Optional[Path] = None
    if plan0.convert_onnx_to_fp16 or (plan0.pin_fp32_layers and island_names is None):
        try:
            import onnx
            have_onnx = True
        except ImportError:
            have_onnx = False
        if not have_onnx:
            if plan0.convert_onnx_to_fp16:
                raise EngineError("FP16 on TensorRT >= 11 converts the ONNX graph first: `pip install onnx`")
            log("note: `onnx` is not installed; FP32 layers are chosen by TensorRT layer type only")
            island_names = set()
        else:
            from .fp16_onnx import convert_to_fp16, island_node_names

            model = onnx.load(str(onnx_path))
            if plan0.convert_onnx_to_fp16:
                tmp_fp16 = engine_path.with_name(f".{engine_path.name}.fp16.onnx.tmp")
                onnx.save(convert_to_fp16(model), str(tmp_fp16))
                parse_path = tmp_fp16
            else:
                island_names = island_node_names(model)
    try:
        network = builder.create_network(_network_flags(plan0))
        parser = trt.OnnxParser(network, logger)
        _parse(parser, parse_path, log)
    finally:
        if tmp_fp16 is not None and tmp_fp16.exists():
            tmp_fp16.unlink()
    inp = network.get_input(0)
    dims = [inp.shape[i] for i in range(len(inp.shape))]
    profile = make_profile(inp.name, [d if d >= 0 else None for d in dims], min_shape=min_shape,
                           opt_shape=opt_shape, max_shape=max_shape, meta=meta)
    plan = make_plan(trt.__version__, fp16=fp16, workspace_mb=workspace_mb, dla_core=dla_core,
                     timing_cache=timing_cache, profile=profile)
    for note in plan.notes:
        log(f"plan: {note}")
    if plan.pin_fp32_layers:
        n = _pin_fp32(network, island_names or set())
        log(f"plan: {n} layer(s) pinned to FP32")
    config = _configure(builder, plan)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine (its log above says why); try --workspace 2048 "
                          "or --verbose")
    with atomic_path(engine_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(memoryview(serialized))
    if plan.timing_cache:
        atomic_write_bytes(plan.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    build_s = time.perf_counter() - t0
    out = dict(meta)
    out["input"] = dict(meta["input"])
    if profile is not None:
        axes = {"batch": 0, "height": 2, "width": 3}
        out["input"]["dynamic"] = {a: [profile.min[i], profile.max[i]] for a, i in axes.items()
                                   if profile.min[i] != profile.max[i]} or None
    out.update(precision=plan.precision, tensorrt_version=str(trt.__version__), compute_capability=cc,
               gpu_name=name, build_seconds=round(build_s, 1), fp16_mechanism=plan.fp16_mechanism,
               dla_core=plan.dla_core)
    meta_mod.write(engine_path, out)
    log(f"wrote {engine_path} ({engine_path.stat().st_size / 1e6:.1f} MB, {plan.precision}, "
        f"TensorRT {trt.__version__}, sm {cc}, {build_s:.0f} s)")
    return out
