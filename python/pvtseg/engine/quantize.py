"""INT8 for TensorRT: an explicit Q/DQ ONNX from a float ONNX, calibrated with ONNX Runtime.

Why explicit Q/DQ: transformer segmenters collapse under TensorRT's implicit INT8 calibration,
the implicit calibrators are deprecated since TensorRT 10.1 and gone in 11, and a Q/DQ graph
states exactly which tensors are INT8. TensorRT 8.6 .. 10.11 build it with the INT8 + FP16
flags; 10.12+ and 11 build it strongly typed (see engine/plan.py).

The graph this module writes follows TensorRT's placement rules for explicit quantization:
- Q/DQ only on the *inputs* of the weighted ops the policy quantizes (Conv, Gemm, MatMul):
  activation -> QuantizeLinear -> DequantizeLinear -> op, and weights stored as INT8
  initializers -> DequantizeLinear, per output channel. TensorRT fuses DQ -> op into an INT8
  kernel. Outputs are not quantized, so the float ops after them (LayerNormalization, Softmax,
  GELU, residual Add) read float tensors.
- symmetric INT8 with zero point 0 everywhere (TensorRT's only scheme); scale = amax / 127.
- biases stay float: TensorRT adds them inside the kernel, and an INT32 bias behind a
  DequantizeLinear (ONNX Runtime's default) is not a type TensorRT's DequantizeLinear takes.
- a tensor read by several quantized ops gets one shared Q/DQ pair; float readers of the same
  tensor keep the original, unquantized tensor.
- the opset stays as exported (>= 13 is needed for the per-channel `axis`).

Which ops stay float is a `QuantPolicy` (default "transformer-safe", chosen from CamVid val
measurements, see README): attention MatMuls (two activations), the op reading the image and
the op producing the output stay float; LayerNormalization, Softmax and GELU never get Q/DQ.

Activation ranges come from ONNX Runtime's calibrators (minmax / entropy / percentile) run on
preprocessed frames that the caller supplies (apps/quantize.py preprocesses them with the
Segmenter itself, so calibration sees exactly what inference sees). This module reads ONNX
files only: it imports neither torch, pvtseg.models nor pvtseg.runtime.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import io
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from .. import meta as meta_mod
from ..errors import AccuracyGateError, QuantizationError
from ..io_utils import atomic_path

QUANTIZABLE_OP_TYPES = ("Conv", "Gemm", "MatMul")
CALIB_METHODS = ("minmax", "entropy", "percentile")
QMAX = 127  # symmetric INT8: [-127, 127] for weights; activations clamp to [-128, 127] in Q
MIN_OPSET = 13  # per-channel DequantizeLinear (`axis`)
# Ops a tensor may pass through between the image and the first weighted op, or between the
# last weighted op and the graph output, without changing what that op is (stem / classifier).
PASS_THROUGH = frozenset({"Resize", "Upsample", "Reshape", "Transpose", "Identity", "Cast", "ArgMax", "Squeeze",
                          "Unsqueeze", "Flatten", "Softmax", "Relu", "Pad", "Slice", "Split", "Concat"})


@dataclass(frozen=True)
class QuantPolicy:
    """Which weighted ops get INT8 inputs; everything else stays float.

    name: preset name (recorded in the sidecar).
    op_types: weighted op types that may be quantized.
    attention_matmuls: quantize MatMul/Gemm whose inputs are both activations (Q.K^T, attn.V).
    first_op: quantize the weighted op(s) that read the image (the stem / patch embedding).
    output_op: quantize the weighted op(s) that produce the graph output (the classifier).
    exclude: op types, node names or fnmatch patterns (`/head/*`) kept float.
    """

    name: str = "transformer-safe"
    op_types: Tuple[str, ...] = QUANTIZABLE_OP_TYPES
    attention_matmuls: bool = False
    first_op: bool = False
    output_op: bool = False
    exclude: Tuple[str, ...] = ()

    def with_exclude(self, tokens: Iterable[str]) -> "QuantPolicy":
        extra = tuple(t for t in (s.strip() for s in tokens) if t)
        return replace(self, exclude=self.exclude + extra) if extra else self

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["op_types"], d["exclude"] = list(self.op_types), list(self.exclude)
        return d


POLICIES: Dict[str, QuantPolicy] = {
    # Every weighted op, attention MatMuls, stem and classifier included.
    "all-weighted": QuantPolicy("all-weighted", attention_matmuls=True, first_op=True, output_op=True),
    # All weight GEMMs / convs, stem and classifier included; attention MatMuls float.
    "weights-only": QuantPolicy("weights-only", first_op=True, output_op=True),
    # Default: weight GEMMs / convs except the stem and the classifier; attention MatMuls float.
    "transformer-safe": QuantPolicy("transformer-safe"),
}
DEFAULT_POLICY = "transformer-safe"


def get_policy(name: str, exclude: Iterable[str] = ()) -> QuantPolicy:
    if name not in POLICIES:
        raise QuantizationError(f"unknown quantization policy {name!r}: choose one of {', '.join(POLICIES)} "
                                f"(default {DEFAULT_POLICY}), and keep more ops float with --exclude.")
    return POLICIES[name].with_exclude(exclude)


@dataclass
class NodeChoice:
    """The decision for one weighted node: quantize it or keep it float, and why."""

    name: str
    op_type: str
    quantize: bool
    reason: str
    activations: List[str] = field(default_factory=list)  # inputs that get a Q/DQ pair
    weight: Optional[str] = None  # constant input stored as INT8 + DequantizeLinear
    weight_axis: Optional[int] = None  # per-channel axis, None = per tensor


# ---------------------------------------------------------------------------------------------
# graph helpers


def _onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is part of the int8 / export extras
        raise QuantizationError(f"quantization needs the `onnx` package ({e}): pip install 'pvtseg[int8]'") from e
    return onnx


def opset_of(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _constants(model: Any) -> Dict[str, Any]:
    """name -> TensorProto of every initializer and Constant-node output (weights)."""
    out = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = n.attribute[0].t
    return out


def name_unnamed_nodes(model: Any) -> None:
    """Give every node a unique name (policies and the sidecar refer to nodes by name)."""
    seen: Set[str] = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{i}"
        seen.add(n.name)


def _consumers(model: Any) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for n in model.graph.node:
        for t in n.input:
            out.setdefault(t, []).append(n)
    return out


def _reached(start: Iterable[str], step, consts: Dict[str, Any], op_types: Sequence[str]) -> Set[str]:
    """Names of weighted nodes reached from `start` tensors through PASS_THROUGH ops only."""
    found: Set[str] = set()
    todo, seen = list(start), set()
    while todo:
        t = todo.pop()
        if t in seen or t in consts:
            continue
        seen.add(t)
        for node, next_tensors in step(t):
            if node.op_type in op_types:
                found.add(node.name)
            elif node.op_type in PASS_THROUGH:
                todo.extend(next_tensors)
    return found


def stem_and_output_nodes(model: Any, op_types: Sequence[str] = QUANTIZABLE_OP_TYPES) -> Tuple[Set[str], Set[str]]:
    """(weighted nodes reading the graph input, weighted nodes producing a graph output)."""
    consts = _constants(model)
    consumers = _consumers(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    inputs = [i.name for i in model.graph.input if i.name not in consts]
    stem = _reached(inputs, lambda t: [(n, list(n.output)) for n in consumers.get(t, [])], consts, op_types)
    outs = [o.name for o in model.graph.output]
    head = _reached(outs, lambda t: [(producer[t], list(producer[t].input))] if t in producer else [], consts,
                    op_types)
    return stem, head


# ---------------------------------------------------------------------------------------------
# policy -> per-node decisions


def _weight_axis(node: Any, weight: Any) -> Optional[int]:
    """Per-channel axis = the output-channel axis of the weight, or None for per tensor."""
    rank = len(weight.dims)
    if node.op_type == "Conv":
        return 0 if rank >= 2 else None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return rank - 1 if rank == 2 else None  # MatMul: B is [K, N], N = output channels


def _split_inputs(node: Any, consts: Dict[str, Any]) -> Tuple[List[str], Optional[str]]:
    """(activation inputs to quantize, weight input) of a Conv / Gemm / MatMul."""
    data = [t for t in node.input[:2] if t]
    weight = data[1] if len(data) > 1 and data[1] in consts else None
    acts = [t for t in data if t != weight and t not in consts]
    return acts, weight


def _excluded_by(model: Any, tokens: Sequence[str]) -> Dict[str, str]:
    """node name -> the --exclude token that keeps it float; unknown tokens are an error."""
    hits: Dict[str, str] = {}
    for tok in tokens:
        matched = [n.name for n in model.graph.node
                   if n.op_type == tok or n.name == tok or fnmatch.fnmatchcase(n.name, tok)]
        if not matched:
            ops = sorted({n.op_type for n in model.graph.node})
            example = next((n.name for n in model.graph.node if n.op_type in QUANTIZABLE_OP_TYPES), "")
            raise QuantizationError(f"--exclude {tok!r} matches no op type or node name in this graph. "
                                    f"Op types here: {', '.join(ops)}; node names look like {example!r} "
                                    "(patterns such as '/head/*' work too).")
        for name in matched:
            hits.setdefault(name, tok)
    return hits


def choose_nodes(model: Any, policy: QuantPolicy) -> List[NodeChoice]:
    """One NodeChoice per weighted node of the policy's op types, in graph order."""
    consts = _constants(model)
    name_unnamed_nodes(model)
    excluded = _excluded_by(model, policy.exclude)
    stem, head = stem_and_output_nodes(model, policy.op_types)
    choices = []
    for n in model.graph.node:
        if n.op_type not in QUANTIZABLE_OP_TYPES:
            continue
        acts, weight = _split_inputs(n, consts)
        c = NodeChoice(n.name, n.op_type, False, "", acts, weight,
                       _weight_axis(n, consts[weight]) if weight else None)
        if n.op_type not in policy.op_types:
            c.reason = f"op type {n.op_type} not in the policy's {list(policy.op_types)}"
        elif n.name in excluded:
            c.reason = f"excluded by {excluded[n.name]!r}"
        elif not acts:
            c.reason = "no activation input"
        elif weight is None and not policy.attention_matmuls:
            c.reason = "attention MatMul (two activations) kept float"
        elif n.name in stem and not policy.first_op:
            c.reason = "reads the image (stem) kept float"
        elif n.name in head and not policy.output_op:
            c.reason = "produces the output (classifier) kept float"
        else:
            c.quantize, c.reason = True, "int8"
        choices.append(c)
    return choices


# ---------------------------------------------------------------------------------------------
# calibration (ONNX Runtime's calibrators)


class _Frames:
    """A CalibrationDataReader (duck-typed: ORT only calls get_next) over preprocessed batches."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]):
        self._it = iter([{input_name: np.ascontiguousarray(b, np.float32)} for b in batches])

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._it, None)


def _calibrator(model_path: Path, tmp: Path, op_types: Sequence[str], method: str, percentile: float):
    try:
        from onnxruntime.quantization import CalibrationMethod, create_calibrator
    except ImportError as e:
        raise QuantizationError(f"calibration needs onnxruntime ({e}): pip install 'pvtseg[int8]'") from e
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    # symmetric histograms / ranges: TensorRT only takes zero point 0. 512 bins give the entropy
    # search ~200 candidate thresholds (ORT's default of 128 bins leaves it a single one).
    opts: Dict[str, Any] = {"symmetric": True}
    if method == "entropy":
        opts.update(num_bins=512, num_quantized_bins=128)
    elif method == "percentile":
        opts.update(num_bins=2048, percentile=percentile)
    return create_calibrator(model_path, list(op_types), augmented_model_path=str(tmp / "augmented.onnx"),
                             calibrate_method=methods[method], extra_options=opts)


def calibrate(model: Any, batches: Sequence[np.ndarray], tensors: Set[str], method: str = "minmax", *,
              op_types: Sequence[str] = QUANTIZABLE_OP_TYPES, percentile: float = 99.99,
              chunk: int = 4) -> Dict[str, float]:
    """amax (max |value| over the calibration batches, or the method's clipped range) per tensor.

    Batches go through ONNX Runtime `chunk` at a time, so histogram methods never hold every
    frame's activations at once.
    """
    if method not in CALIB_METHODS:
        raise QuantizationError(f"unknown calibration method {method!r}: choose one of {', '.join(CALIB_METHODS)}.")
    if not batches:
        raise QuantizationError("no calibration frames: pass a folder of images with --calib.")
    onnx = _onnx()
    input_name = next(i.name for i in model.graph.input if i.name not in _constants(model))
    with tempfile.TemporaryDirectory(prefix="pvtseg_calib_") as d:
        tmp = Path(d)
        onnx.save(model, str(tmp / "float.onnx"))
        # ORT's histogram calibrators print progress on stdout for every chunk: keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            cal = _calibrator(tmp / "float.onnx", tmp, op_types, method, percentile)
            for i in range(0, len(batches), max(1, chunk)):
                cal.collect_data(_Frames(input_name, batches[i:i + chunk]))
            ranges = cal.compute_data()
        del cal  # releases the ORT session before the temp folder goes
    out = {}
    for name in tensors:
        if name in ranges:
            lo, hi = ranges[name].range_value
            out[name] = float(max(np.abs(lo).max(), np.abs(hi).max()))
    return out


# ---------------------------------------------------------------------------------------------
# Q/DQ insertion


def _scale_of(amax: np.ndarray) -> np.ndarray:
    """Symmetric INT8 scale; a zero range still gets a tiny positive scale (TensorRT needs > 0)."""
    return (np.maximum(amax.astype(np.float64), 1e-12) / QMAX).astype(np.float32)


class _QdqBuilder:
    """Collects the new initializers / nodes and which original tensors they replace."""

    def __init__(self, model: Any):
        self.onnx = _onnx()
        self.model = model
        self.inits: List[Any] = []
        self.before: Dict[str, List[Any]] = {}  # node name -> Q/DQ nodes to emit right before it
        self.dq_of: Dict[str, str] = {}  # original tensor -> its dequantized tensor

    def _init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def activation(self, tensor: str, amax: float, first_reader: str) -> str:
        if tensor not in self.dq_of:
            h = self.onnx.helper
            scale = self._init(f"{tensor}_qdq_scale", _scale_of(np.asarray(amax)))
            zp = self._init(f"{tensor}_qdq_zero_point", np.zeros((), np.int8))
            q_out, dq_out = f"{tensor}_quantized", f"{tensor}_dequantized"
            self.before.setdefault(first_reader, []).extend([
                h.make_node("QuantizeLinear", [tensor, scale, zp], [q_out], name=f"{tensor}_QuantizeLinear"),
                h.make_node("DequantizeLinear", [q_out, scale, zp], [dq_out], name=f"{tensor}_DequantizeLinear")])
            self.dq_of[tensor] = dq_out
        return self.dq_of[tensor]

    def weight(self, name: str, tensor: Any, axis: Optional[int], first_reader: str) -> str:
        if name not in self.dq_of:
            w = self.onnx.numpy_helper.to_array(tensor).astype(np.float32)
            if axis is None:
                scale = _scale_of(np.abs(w).max(keepdims=False))
                q = np.clip(np.rint(w / scale), -QMAX, QMAX).astype(np.int8)
                zp = np.zeros((), np.int8)
            else:
                other = tuple(i for i in range(w.ndim) if i != axis)
                scale = _scale_of(np.abs(w).max(axis=other))
                shape = [1] * w.ndim
                shape[axis] = -1
                q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
                zp = np.zeros(scale.shape, np.int8)
            names = [self._init(f"{name}_int8", q), self._init(f"{name}_scale", scale),
                     self._init(f"{name}_zero_point", zp)]
            kw = {} if axis is None else {"axis": axis}
            self.before.setdefault(first_reader, []).append(self.onnx.helper.make_node(
                "DequantizeLinear", names, [f"{name}_dequantized"], name=f"{name}_DequantizeLinear", **kw))
            self.dq_of[name] = f"{name}_dequantized"
        return self.dq_of[name]


def insert_qdq(model: Any, choices: Sequence[NodeChoice], amax: Dict[str, float]) -> Any:
    """A copy of `model` with Q/DQ on the inputs of the chosen nodes (see the module docstring).

    A chosen node whose activation has no calibrated range is kept float and its choice says so.
    """
    model = copy.deepcopy(model)
    consts = _constants(model)
    b = _QdqBuilder(model)
    by_name = {n.name: n for n in model.graph.node}
    for c in choices:
        if not c.quantize:
            continue
        missing = [t for t in c.activations if t not in amax]
        if missing:
            c.quantize, c.reason = False, f"no calibration range for {missing[0]} (kept float)"
            continue
        node = by_name[c.name]
        new_inputs = list(node.input)
        for i, t in enumerate(node.input[:2]):
            if t in c.activations:
                new_inputs[i] = b.activation(t, amax[t], c.name)
            elif t and t == c.weight:
                new_inputs[i] = b.weight(t, consts[t], c.weight_axis, c.name)
        del node.input[:]
        node.input.extend(new_inputs)
    nodes = []
    for n in model.graph.node:
        nodes.extend(b.before.get(n.name, []))
        nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(b.inits)
    _drop_unused_initializers(model)
    return model


def _drop_unused_initializers(model: Any) -> None:
    """Float weights replaced by their INT8 copies are no longer read: drop them."""
    used = {t for n in model.graph.node for t in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


# ---------------------------------------------------------------------------------------------
# checks and summary


def _node_problems(n: Any, consts: Dict[str, Any], shapes: Dict[str, Tuple[int, ...]]) -> List[str]:
    onnx = _onnx()
    where = f"{n.op_type} {n.name}"
    if len(n.input) < 3 or n.input[2] not in consts:
        return [f"{where}: no constant zero point (TensorRT needs an explicit INT8 zero point of 0)"]
    zp = onnx.numpy_helper.to_array(consts[n.input[2]])
    scale = onnx.numpy_helper.to_array(consts[n.input[1]]) if n.input[1] in consts else None
    out = []
    if zp.dtype != np.int8 or np.any(zp != 0):
        out.append(f"{where}: zero point must be INT8 zeros (symmetric), got {zp.dtype} {zp.ravel()[:4]}")
    if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        out.append(f"{where}: scale must be a constant, finite and > 0")
    elif scale.size > 1:
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        dims = shapes.get(n.input[0])
        if dims is None or not -len(dims) <= axis < len(dims) or dims[axis] != scale.size:
            out.append(f"{where}: per-channel scale of {scale.size} does not match axis {axis} of {dims}")
    if n.op_type == "DequantizeLinear" and n.input[0] in consts:
        if onnx.numpy_helper.to_array(consts[n.input[0]]).dtype != np.int8:
            out.append(f"{where}: quantized weights must be INT8")
    return out


def check_qdq(model: Any) -> List[str]:
    """TensorRT's explicit-quantization constraints on every Q/DQ node; [] when all hold."""
    consts = _constants(model)
    shapes = {k: tuple(t.dims) for k, t in consts.items()}
    problems = []
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if qdq and opset_of(model) < MIN_OPSET:
        problems.append(f"opset {opset_of(model)} < {MIN_OPSET}: per-channel Q/DQ needs opset >= {MIN_OPSET}")
    for n in qdq:
        problems.extend(_node_problems(n, consts, shapes))
    return problems


def summarize(model: Any) -> Dict[str, int]:
    """Counts of Q/DQ nodes, per-channel weights and weighted ops reading a DequantizeLinear."""
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    per_channel = sum(1 for n in model.graph.node if n.op_type == "DequantizeLinear"
                      and any(a.name == "axis" for a in n.attribute))
    weighted = [n for n in model.graph.node if n.op_type in QUANTIZABLE_OP_TYPES]
    return {"quantize_linear": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
            "dequantize_linear": len(dq_out), "per_channel_weights": per_channel,
            "weighted_ops": len(weighted),
            "int8_weighted_ops": sum(1 for n in weighted if any(t in dq_out for t in n.input))}


# ---------------------------------------------------------------------------------------------
# the whole step


@dataclass
class QuantResult:
    model: Any  # the Q/DQ onnx.ModelProto
    choices: List[NodeChoice]
    policy: QuantPolicy
    method: str
    summary: Dict[str, int]

    def record(self) -> Dict[str, Any]:
        """The sidecar's `quantization` block (without calibration files / accuracy)."""
        kept = [f"{c.name} ({c.reason})" for c in self.choices if not c.quantize]
        return {"format": "qdq", "scheme": "int8 symmetric, zero point 0, per-channel weights, per-tensor "
                "activations, Q/DQ on inputs of weighted ops only", "method": self.method,
                "policy": self.policy.as_dict(), "graph": self.summary, "kept_float": kept}


def load_float_model(path: str | os.PathLike) -> Any:
    """Load an ONNX to quantize; refuse ones that are already quantized or too old an opset."""
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise QuantizationError(f"no ONNX file {path}: export one with `pvtseg export --formats onnx`.")
    model = onnx.load(str(path))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise QuantizationError(f"{path} already holds QuantizeLinear/DequantizeLinear nodes: quantize the float "
                                "ONNX that `pvtseg export` wrote, not a quantized one.")
    if opset_of(model) < MIN_OPSET:
        raise QuantizationError(f"{path} is opset {opset_of(model)}; per-channel Q/DQ needs >= {MIN_OPSET}. "
                                "Re-export with `pvtseg export --opset 17`.")
    return model


def quantize_model(model: Any, batches: Sequence[np.ndarray], policy: QuantPolicy, method: str = "minmax", *,
                   percentile: float = 99.99) -> QuantResult:
    """Float ONNX model + preprocessed NCHW batches -> checked Q/DQ model (nothing written)."""
    onnx = _onnx()
    model = copy.deepcopy(model)
    choices = choose_nodes(model, policy)
    wanted = {t for c in choices if c.quantize for t in c.activations}
    if not wanted:
        raise QuantizationError(f"policy {policy.name!r} (exclude {list(policy.exclude)}) leaves no op to "
                                "quantize: exclude fewer ops.")
    amax = calibrate(model, batches, wanted, method, op_types=policy.op_types, percentile=percentile)
    bad = sorted(t for t, v in amax.items() if not math.isfinite(v))
    if bad:
        raise QuantizationError(f"calibration gave a non-finite range for {bad[0]} (and {len(bad) - 1} more): "
                                "the frames or the float model produce inf/NaN; check the calibration images.")
    qmodel = insert_qdq(model, choices, amax)
    problems = check_qdq(qmodel)
    if problems:
        raise QuantizationError("the Q/DQ graph breaks TensorRT's rules (a pvtseg bug, please report): "
                                + "; ".join(problems[:5]))
    onnx.checker.check_model(qmodel)
    return QuantResult(qmodel, choices, policy, method, summarize(qmodel))


def save_model(model: Any, path: str | os.PathLike) -> Path:
    """Write an ONNX model atomically (nothing half-written survives an error)."""
    onnx = _onnx()
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


# ---------------------------------------------------------------------------------------------
# accuracy gate and sidecar


def accuracy_gate(fp32_miou: float, int8_miou: float, max_drop: float, force: bool = False) -> Dict[str, Any]:
    """The accuracy record; AccuracyGateError when INT8 loses more than `max_drop` mIoU points.

    mIoU values are fractions (0..1); `max_drop` is in points (0..100), as printed.
    """
    if not (math.isfinite(fp32_miou) and math.isfinite(int8_miou)):
        raise QuantizationError("the evaluation set gave no mIoU (no labelled pixels?): check --eval points at a "
                                "folder with images/ and labels/ whose class ids match the model.")
    drop = 100.0 * (fp32_miou - int8_miou)
    rec = {"fp32_miou": round(100.0 * fp32_miou, 3), "int8_miou": round(100.0 * int8_miou, 3),
           "drop_points": round(drop, 3), "max_drop_points": max_drop, "passed": drop <= max_drop,
           "forced": bool(force and drop > max_drop)}
    if drop > max_drop and not force:
        err = AccuracyGateError(
            f"INT8 mIoU {100 * int8_miou:.2f} is {drop:.2f} points below FP32 {100 * fp32_miou:.2f} (allowed: "
            f"{max_drop:g}); nothing was written. Calibrate on more, and more typical, frames (--calib-frames, "
            "a folder like the deployment's), try --method percentile or entropy, keep more ops float "
            "(--exclude), or write it anyway with --force.")
        err.accuracy = rec  # type: ignore[attr-defined]  # the numbers, for callers and tests
        raise err
    return rec


def int8_sidecar(fp32_meta: Dict[str, Any], quantization: Dict[str, Any]) -> Dict[str, Any]:
    """The Q/DQ ONNX's sidecar: the float sidecar with precision int8 and a `quantization` block."""
    meta = copy.deepcopy(fp32_meta)
    meta.pop(meta_mod.ARTIFACTS_KEY, None)  # the float graph's digests; the Q/DQ file gets its own
    meta["precision"] = "int8"
    meta["quantization"] = quantization
    return meta_mod.validate(meta)
