"""From an exported ONNX to exactly what one TensorRT version's parser is handed (no TensorRT).

    prepared = prepare_build("x.onnx", "10.3.0", fp16=True)
    prepared.model   # the graph builder.py parses (and `--save-onnx` writes)
    prepared.plan    # flags, FP32 layers by name, profile, adaptations, problems left
    prepared.meta    # the engine's sidecar, before the build facts (GPU, time) are added

Steps: refuse `--int8` on a float graph (it needs `pvtseg quantize` first); adapt the graph
to the version's parser contract (adapt.py); on strongly typed versions convert it to FP16
with FP32 islands (fp16_onnx.py); the optimization profile from the graph's input; the plan.
builder.py and `build_engine.py --plan-only` both call this, so the plan printed and the
graph saved are the ones a real build uses.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import meta as meta_mod
from ..errors import EngineError
from .adapt import adapt
from .contract import CONTRACTS, check, contract_key, is_quantized, require_onnx
from .plan import (FP32_LAYER_TYPES, MECH_STRONGLY_TYPED, BuildPlan, TrtVersion, make_plan, make_profile,
                   parse_trt_version, precision_mechanism)

ONNX_2GB = 2 ** 31 - 1


@dataclass
class PreparedBuild:
    plan: BuildPlan
    model: Any                      # onnx.ModelProto handed to the parser
    meta: Dict[str, Any]            # the engine's sidecar (without GPU / build time)
    source: Path                    # the exported ONNX (external weights resolve beside it)
    version_text: str
    input_shape: List[Any] = field(default_factory=list)
    _bytes: Optional[bytes] = None

    @property
    def model_bytes(self) -> bytes:
        if self._bytes is None:
            self._bytes = self.model.SerializeToString()
        return self._bytes


def load_model(onnx_path: Path) -> Any:
    onnx = require_onnx()
    model = onnx.load(str(onnx_path))
    if model.ByteSize() > ONNX_2GB:
        raise EngineError(f"{onnx_path} holds over 2 GB of weights: the graph handed to TensorRT is rewritten in "
                          "memory and protobuf cannot serialize it; export a smaller model or input size")
    return model


def resolve_precision(model: Any, onnx_path: Path, *, fp16: bool, int8: bool) -> Tuple[bool, bool, List[str]]:
    """(fp16, int8, notes): a Q/DQ graph builds INT8; --int8 on a float graph is refused."""
    quantized = is_quantized(model)
    if int8 and not quantized:
        stem = onnx_path.with_suffix("")
        raise EngineError(
            f"--int8 builds explicitly quantized (QuantizeLinear/DequantizeLinear) graphs only, and {onnx_path.name} "
            f"has none: make one with `pvtseg quantize --onnx {onnx_path} --calib DIR --out {stem}_int8.onnx`, then "
            f"`build_engine.py --onnx {stem}_int8.onnx --int8`; or build FP16 with --fp16")
    notes = []
    if quantized and not int8:
        notes.append("the graph has QuantizeLinear/DequantizeLinear nodes: building INT8 (explicit quantization)")
    if quantized and fp16:
        notes.append("--fp16 with a Q/DQ graph: the INT8 plan already runs unquantized layers in FP16 where the "
                     "version uses builder flags")
    return fp16 and not quantized, quantized, notes


def _input(model: Any) -> Tuple[str, List[Any]]:
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inp.type.tensor_type.shape.dim]
    return inp.name, dims


def engine_meta(meta: Dict[str, Any], plan: BuildPlan) -> Dict[str, Any]:
    """The engine's sidecar from the ONNX's: precision, output dtype and profile as built."""
    out = copy.deepcopy(meta)
    out.pop(meta_mod.ARTIFACTS_KEY, None)  # digests describe the ONNX files, not the engine
    out["precision"] = plan.precision
    if out["output"]["name"] in plan.output_dtypes:
        out["output"]["dtype"] = plan.output_dtypes[out["output"]["name"]]
    if plan.profile is not None:
        p = plan.profile
        axes = {"batch": 0, "height": 2, "width": 3}
        out["input"]["dynamic"] = {a: [p.min[i], p.max[i]] for a, i in axes.items() if p.min[i] != p.max[i]} or None
    out["fp16_mechanism"] = plan.mechanism
    out["tensorrt_build"] = {"contract": plan.contract, "mechanism": plan.mechanism,
                             "adaptations": list(plan.adaptations), "workspace_mb": plan.workspace_bytes >> 20}
    return out


def _graph_for_parser(adapted: Any, version: TrtVersion, precision: str) -> Tuple[Any, List[str]]:
    """(graph, FP32 ONNX nodes): FP16-converted on strongly typed versions; islands by name."""
    from .fp16_onnx import convert_to_fp16, island_node_names

    mech = precision_mechanism(version, precision)
    if precision == "fp32" or (mech == MECH_STRONGLY_TYPED and precision == "int8"):
        return adapted.model, []  # no pinning: every layer keeps the graph's own type
    islands = sorted(island_node_names(adapted.model) | adapted.fp32_nodes)
    if mech == MECH_STRONGLY_TYPED:
        return convert_to_fp16(adapted.model, keep_fp32=islands), islands
    return adapted.model, islands


def prepare_build(onnx_path: "str | Path", version: "str | TrtVersion", *, fp16: bool = False, int8: bool = False,
                  workspace_mb: Optional[int] = None, dla_core: Optional[int] = None,
                  timing_cache: Optional[str] = None, min_shape: Optional[str] = None,
                  opt_shape: Optional[str] = None, max_shape: Optional[str] = None,
                  meta: Optional[Dict[str, Any]] = None, model: Any = None) -> PreparedBuild:
    """Everything a build of `onnx_path` for TensorRT `version` does before TensorRT (module doc)."""
    onnx_path = Path(onnx_path)
    v = version if isinstance(version, TrtVersion) else parse_trt_version(str(version))
    key = contract_key(v)
    meta = meta if meta is not None else meta_mod.read(onnx_path)
    model = model if model is not None else load_model(onnx_path)
    fp16, int8, notes = resolve_precision(model, onnx_path, fp16=fp16, int8=int8)
    adapted = adapt(model, key)
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    graph, islands = _graph_for_parser(adapted, v, precision)
    problems = adapted.problems if graph is adapted.model else check(graph, key)
    name, dims = _input(graph)
    profile = make_profile(name, dims, min_shape=min_shape, opt_shape=opt_shape, max_shape=max_shape, meta=meta)
    plan = make_plan(v, fp16=fp16, int8=int8, workspace_mb=workspace_mb, dla_core=dla_core,
                     timing_cache=timing_cache, profile=profile, fp32_layers=islands,
                     adaptations=adapted.changes, output_dtypes=adapted.output_dtypes,
                     problems=[str(p) for p in problems], contract=key)
    plan.notes = notes + plan.notes
    return PreparedBuild(plan, graph, engine_meta(meta, plan), onnx_path, str(version), dims)


def _fmt(shape: Any) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def describe(prepared: PreparedBuild) -> List[str]:
    """The whole plan, one fact per line (printed by --plan-only and before a build)."""
    p = prepared.plan
    lines = [f"TensorRT {prepared.version_text} (parser contract {p.contract}: {CONTRACTS[p.contract].jetpack}): "
             f"precision {p.precision}",
             f"  mechanism: {p.mechanism or 'fp32 (no precision flags)'}",
             f"  network flags: {', '.join(p.network_flags) or '-'}",
             f"  builder flags: {', '.join(p.builder_flags) or '-'}",
             f"  workspace: {p.workspace_bytes >> 20} MiB" + (f", DLA core {p.dla_core}" if p.dla_core is not None
                                                               else "")]
    if p.profile is None:
        lines.append(f"  profile: static input {_fmt(prepared.input_shape)}")
    else:
        lines.append(f"  profile {p.profile.input_name}: min {_fmt(p.profile.min)} opt {_fmt(p.profile.opt)} "
                     f"max {_fmt(p.profile.max)}")
    out = prepared.meta["output"]
    lines.append(f"  output {out['name']}: {out['kind']} {out['dtype']}"
                 + (" (changed for this TensorRT: the engine's sidecar says so)" if p.output_dtypes else ""))
    lines.append(f"  adaptations ({len(p.adaptations)}):" + ("" if p.adaptations else " none, the graph parses as is"))
    lines += [f"    - {a}" for a in p.adaptations]
    if p.fp32_layers:
        how = ("kept FP32 in the FP16 graph by explicit Casts" if p.convert_onnx_to_fp16 else
               "pinned by per-layer precision, with every TensorRT layer of type "
               + ", ".join(sorted(FP32_LAYER_TYPES)))
        lines.append(f"  FP32 layers ({len(p.fp32_layers)} ONNX nodes, {how}):")
        lines += [f"    - {n}" for n in p.fp32_layers]
    lines.append("  contract: the graph handed to the parser passes it" if not p.problems else
                 f"  contract: {len(p.problems)} problem(s) left (the parser will likely refuse the graph):")
    lines += [f"    - {x}" for x in p.problems]
    lines += [f"  note: {n}" for n in p.notes]
    return lines


def save_graph(prepared: PreparedBuild, path: "str | os.PathLike[str]") -> Path:
    """Write the graph handed to the parser (atomically) and its sidecar beside it."""
    from ..io_utils import atomic_write_bytes

    path = Path(path)
    if path.suffix != ".onnx":
        raise EngineError(f"--save-onnx {path}: use the .onnx suffix")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, prepared.model_bytes)
    meta_mod.write(path, {k: v for k, v in prepared.meta.items() if k != "fp16_mechanism"})
    return path
