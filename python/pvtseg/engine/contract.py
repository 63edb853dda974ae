"""What each TensorRT ONNX parser accepts: a per-version contract in plain Python (+ onnx).

`check(model, version)` lists the problems TensorRT `version`'s parser (8.5, 8.6, 10.3,
10.13, 11; other releases map to the nearest) would have with an onnx.ModelProto, each with
the fix; `adapt.py` rewrites the ones that can be rewritten exactly. Sources (read for facts):

- operators: onnx-tensorrt docs/operators.md at release 8.5-GA, 8.6-GA and 10.1-GA (copies in
  ../shared/data/tensorrt/; tests/test_trt_contract.py re-parses them against the data below).
  10.3 uses the 10.1 table (the closest public one) plus tensor `axes` for Slice (10.3).
  10.13 adds what TensorRT's CHANGELOG.md lists up to 10.13: Blackman/Hamming/HannWindow and
  tensor Pad axes (10.4), STFT (10.5), dynamic Squeeze/Unsqueeze axes (10.7), integer Pow
  bases (10.12). 11 adds Attention (10.14), RMSNormalization, RotaryEmbedding, TensorScatter
  (10.15) and Swish (11.0). Opsets: <= 17 on 8.x, 9..20 in the 10.1 table, 9..25 on 11.x
  (NVIDIA's ONNX opset guide for 11.x); 10.13 keeps the documented 20 here.
- UINT8: NvInferRuntimeCommon.h (8.5.2) / NvInferRuntimeBase.h (8.6.1, 10.3, 10.13, 11.1):
  "kUINT8 conversions are only supported for {kFLOAT, kHALF}", UINT8 only at network I/O
  (the 10.x tables: "UINT8 is only supported as network input or output tensor types").
  8.5's table lists no UINT8 Cast (its parser source would take FLOAT -> UINT8 through an
  identity layer; pvtseg relies on the documented table and gives 8.5 int32 labels).
- INT64: before 9.0 the parser casts INT64 tensors down to INT32 (8.x tables and changelog
  9.0), so ArgMax indices and INT64 graph outputs are INT32 bindings on 8.x.
- QuantizeLinear / DequantizeLinear (QuantDequantLinearHelper, onnx-tensorrt 8.5-GA, 8.6-GA,
  10.1-GA): symmetric INT8 only (zero point all zeros; a UINT8 zero point is refused by 8.x
  and silently read as INT8 by 10.x, which changes the result), positive constant scales,
  per-axis scales only on constant (weight) inputs with one scale per channel, and 8.x
  needs the zero-point input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Set, Tuple

from ..errors import EngineError

VERSIONS = ("8.5", "8.6", "10.3", "10.13", "11")
JETPACK = {"8.5": "JetPack 5.1.x (Xavier, Orin)", "8.6": "JetPack 6.0 (Orin)", "10.3": "JetPack 6.1 / 6.2 (Orin)",
           "10.13": "JetPack 7.x (Thor; Orin from 7.2), desktop", "11": "desktop / pip"}


def _ops(text: str) -> FrozenSet[str]:
    return frozenset(text.split())


# Operators marked Y in onnx-tensorrt's operators.md.
OPS_8_5 = _ops("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample HardSigmoid HardSwish
Identity If ImageScaler InstanceNormalization IsNaN LRN LSTM LeakyRelu Less LessOrEqual Log LogSoftmax Loop
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression
NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike
RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor""")
OPS_8_6 = OPS_8_5 | _ops("GroupNormalization IsInf LayerNormalization")
OPS_10_1 = OPS_8_6 | _ops("CastLike DeformConv Gelu Hardmax Mish")
OPS_10_13 = OPS_10_1 | _ops("BlackmanWindow HammingWindow HannWindow STFT")
OPS_11 = OPS_10_13 | _ops("Attention RMSNormalization RotaryEmbedding TensorScatter Swish")


def _types(groups: Mapping[str, str]) -> Dict[str, FrozenSet[str]]:
    out: Dict[str, FrozenSet[str]] = {}
    for types, ops in groups.items():
        for op in ops.split():
            out[op] = frozenset(types.split())
    return out


# The "Supported Types" column for the operators segmentation graphs (and the rewrites of
# adapt.py) use; other operators are checked by name only.
TYPES_8_5 = _types({
    "BOOL": "And Not",
    "FP32": "ConstantOfShape",
    "FP32 FP16": "ArgMax BatchNormalization Ceil CumSum Einsum Erf Exp Floor GridSample Log MatMul Pow QuantizeLinear "
                 "Reciprocal ReduceMax ReduceMean ReduceSum Resize Softmax Sqrt TopK",
    "FP32 FP16 INT32": "Add Div Equal Greater Less Max Min Mod Mul Neg Range Sub",
    "FP32 FP16 INT32 BOOL": "Expand Flatten Split Tile Where",
    "FP32 FP16 INT32 INT8 BOOL": "Cast Concat Constant Identity Reshape Shape Slice Squeeze Transpose Trilu Unsqueeze",
    "FP32 FP16 INT8": "Clip Conv ConvTranspose Gemm GlobalAveragePool HardSigmoid HardSwish MaxPool Relu Sigmoid Tanh",
    "FP32 FP16 INT8 INT32": "AveragePool Pad",
    "FP32 FP16 INT8 INT32 BOOL": "Gather GatherElements",
    "INT8": "DequantizeLinear",
})
TYPES_8_6 = {**TYPES_8_5, **_types({
    "FP32 FP16": "GroupNormalization LayerNormalization",
    "FP32 FP16 INT32": "ArgMax TopK",
    "FP32 FP16 INT32 INT8 UINT8 BOOL": "Cast",
})}
TYPES_10_1 = _types({
    "BOOL": "And Not",
    "FP32 FP16": "GridSample",
    "FP32 FP16 BF16": "AveragePool BatchNormalization Ceil Clip Conv ConvTranspose CumSum Einsum Erf Exp Floor Gemm "
                      "GlobalAveragePool GroupNormalization HardSigmoid HardSwish LayerNormalization Log MatMul "
                      "MaxPool Pow QuantizeLinear Reciprocal Resize Sigmoid Softmax Sqrt Tanh",
    "FP32 FP16 BF16 INT32 INT64 BOOL": "ConstantOfShape Concat Constant Expand Flatten Gather GatherElements Identity "
                                       "Reshape Shape Slice Split Squeeze Tile Transpose Trilu Unsqueeze Where",
    "FP32 FP16 BF16 INT32 INT64": "Add ArgMax Div Equal Greater Less Max Min Mod Mul Neg Pad Range ReduceMax "
                                  "ReduceMean ReduceSum Relu Sub TopK",
    "FP32 FP16 BF16 INT32 INT64 UINT8 BOOL": "Cast",
    "FP32 FP16 BF16 INT8 INT32 INT64": "Gelu",
    "INT8 FP8 INT4": "DequantizeLinear",
})
TYPES_10_13 = {**TYPES_10_1, **_types({"FP32 FP16 BF16 INT32 INT64": "Pow"})}

# ONNX element types (onnx.TensorProto) by name, without importing onnx at module load.
_ONNX_TO_TRT = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
                16: "BF16", 17: "FP8", 22: "INT4"}
ONNX_DTYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
                    11: "float64", 16: "bfloat16"}
FLOAT_TYPES = frozenset({"FP32", "FP16"})


@dataclass(frozen=True)
class ParserContract:
    version: str
    ops: FrozenSet[str]
    types: Mapping[str, FrozenSet[str]]
    opset: Tuple[int, int]
    int64: bool                 # INT64 tensors are native (9.0+); else cast down to INT32
    uint8_cast: bool            # Cast lists UINT8 (8.6+)
    slice_tensor_axes: bool     # Slice `axes` may be a run-time tensor (10.3+)
    squeeze_tensor_axes: bool   # Squeeze/Unsqueeze `axes` may be run-time (10.7+)
    pad_tensor_axes: bool       # Pad `axes` may be run-time (10.4+)
    qdq_needs_zero_point: bool  # 8.x: Q/DQ take exactly 3 inputs

    @property
    def jetpack(self) -> str:
        return JETPACK[self.version]

    @property
    def argmax_dtype(self) -> str:
        return "INT64" if self.int64 else "INT32"


CONTRACTS: Dict[str, ParserContract] = {
    "8.5": ParserContract("8.5", OPS_8_5, TYPES_8_5, (7, 17), False, False, False, False, False, True),
    "8.6": ParserContract("8.6", OPS_8_6, TYPES_8_6, (7, 17), False, True, False, False, False, True),
    "10.3": ParserContract("10.3", OPS_10_1, TYPES_10_1, (9, 20), True, True, True, False, False, False),
    "10.13": ParserContract("10.13", OPS_10_13, TYPES_10_13, (9, 20), True, True, True, True, True, False),
    "11": ParserContract("11", OPS_11, TYPES_10_13, (9, 25), True, True, True, True, True, False),
}


def contract_key(version: Any) -> str:
    """'10.3.0.30' / TrtVersion / '8.5' -> the contract that describes that release."""
    from .plan import TrtVersion, check_supported, parse_trt_version

    if isinstance(version, str) and version in CONTRACTS:
        return version
    v = version if isinstance(version, TrtVersion) else parse_trt_version(str(version))
    check_supported(v)
    if v.major == 8:
        return "8.5" if v.minor <= 5 else "8.6"
    if v.major < 10 or (v.major == 10 and v.minor < 13):
        return "10.3"  # 9.x (limited releases) and 10.0-10.12: the 10.1 operator table
    return "10.13" if v.major == 10 else "11"


def contract_for(version: Any) -> ParserContract:
    return version if isinstance(version, ParserContract) else CONTRACTS[contract_key(version)]


@dataclass(frozen=True)
class Problem:
    """One thing `version`'s parser would reject (or get wrong); `adaptable`: adapt.py fixes it."""
    version: str
    rule: str
    node: str
    message: str
    adaptable: bool = False

    def __str__(self) -> str:  # messages name their node
        return f"TensorRT {self.version}: {self.message}"


def _skeleton(model: Any) -> Any:
    """The model with its large initializers turned into typed graph inputs: shape inference
    sees every shape (and the small constants it folds) without serializing the weights."""
    import onnx

    small = onnx.ModelProto()
    _copy_without_weights(model, small)
    return small


def _copy_without_weights(model: Any, out: Any) -> None:
    from onnx import helper

    graph = model.graph
    out.ir_version, out.producer_name = model.ir_version, model.producer_name
    out.opset_import.extend(model.opset_import)
    g = out.graph
    g.name = graph.name
    g.node.extend(graph.node)
    g.input.extend(graph.input)
    g.output.extend(graph.output)
    g.value_info.extend(graph.value_info)
    declared = {i.name for i in graph.input}
    for init in graph.initializer:
        if len(init.raw_data) + 4 * len(init.float_data) > 1024:
            if init.name not in declared:
                g.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            g.initializer.append(init)


@dataclass
class GraphInfo:
    """What the rules need from a model: dtypes, ranks, producers, constants, outputs."""
    model: Any
    dtype: Dict[str, int] = field(default_factory=dict)
    rank: Dict[str, int] = field(default_factory=dict)
    producer: Dict[str, Any] = field(default_factory=dict)
    constants: Dict[str, Any] = field(default_factory=dict)   # name -> TensorProto (initializer / Constant)
    outputs: Set[str] = field(default_factory=set)
    opset: int = 0
    _values: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: Any) -> "GraphInfo":
        import onnx

        g = cls(model)
        try:
            inferred = onnx.shape_inference.infer_shapes(_skeleton(model))
        except Exception:  # an invalid graph: fall back to the declared types
            inferred = model
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            t = vi.type.tensor_type
            g.dtype[vi.name] = t.elem_type
            if t.HasField("shape"):
                g.rank[vi.name] = len(t.shape.dim)
        for init in model.graph.initializer:
            g.dtype[init.name] = init.data_type
            g.rank[init.name] = len(init.dims)
            g.constants[init.name] = init
        for node in model.graph.node:
            for o in node.output:
                g.producer[o] = node
            value = next((a for a in node.attribute if a.name == "value"), None) \
                if node.op_type == "Constant" and node.output else None
            if value is not None:
                g.constants[node.output[0]] = value.t
                g.dtype[node.output[0]] = value.t.data_type
        g.outputs = {o.name for o in model.graph.output}
        g.opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
        return g

    def value(self, tensor: str) -> Any:
        """The numpy value of a constant tensor (None for a run-time one)."""
        from onnx import numpy_helper

        if tensor not in self._values and tensor in self.constants:
            self._values[tensor] = numpy_helper.to_array(self.constants[tensor])
        return self._values.get(tensor)

    def trt_type(self, tensor: str, c: ParserContract) -> Optional[str]:
        t = _ONNX_TO_TRT.get(self.dtype.get(tensor, 0))
        if t == "DOUBLE":
            return "FP32"  # every parser casts DOUBLE down to FLOAT
        if t == "INT64" and not c.int64:
            return "INT32"
        return t

    def is_constant(self, tensor: str) -> bool:
        return tensor in self.constants


def node_attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _where(node: Any) -> str:
    return f"{node.op_type} {node.name!r}" if node.name else node.op_type


PASS_THROUGH = frozenset({"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose"})


def label_source(g: GraphInfo, tensor: str) -> Optional[Any]:
    """The ArgMax/ArgMin node whose indices reach `tensor` through pass-through ops, if any."""
    seen = 0
    node = g.producer.get(tensor)
    while node is not None and seen < 16:
        if node.op_type in ("ArgMax", "ArgMin"):
            return node
        if node.op_type not in PASS_THROUGH or not node.input:
            return None
        node = g.producer.get(node.input[0])
        seen += 1
    return None


# ---------------------------------------------------------------------------------------------
# Rules: each takes the graph and the contract and returns its problems.
# ---------------------------------------------------------------------------------------------

def _rule_opset(g: GraphInfo, c: ParserContract) -> List[Problem]:
    lo, hi = c.opset
    if g.opset and not lo <= g.opset <= hi:
        return [Problem(c.version, "opset", "", f"opset {g.opset} is outside {lo}..{hi}, the range TensorRT "
                        f"{c.version}'s parser documents; re-export with `pvtseg export --opset 17`")]
    return []


def _rule_ops(g: GraphInfo, c: ParserContract) -> List[Problem]:
    problems: List[Problem] = []
    missing: Dict[str, List[str]] = {}
    for node in g.model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(Problem(c.version, "domain", node.name, f"{_where(node)} is in custom domain "
                                    f"{node.domain!r}: TensorRT needs a plugin for it; re-export without it"))
        elif node.op_type == "LayerNormalization" and node.op_type not in c.ops:
            problems.append(Problem(c.version, "layernorm", node.name, f"{_where(node)}: TensorRT {c.version}'s "
                                    "parser has no LayerNormalization importer (operators.md: N); build_engine.py "
                                    "decomposes it into ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add kept in "
                                    "FP32", adaptable=True))
        elif node.op_type not in c.ops:
            missing.setdefault(node.op_type, []).append(node.name)
    for op, names in sorted(missing.items()):
        problems.append(Problem(c.version, "op", names[0], f"{op} ({len(names)} node{'s' * (len(names) > 1)}, "
                                f"e.g. {names[0]!r}) is not in TensorRT {c.version}'s ONNX operator table; "
                                "re-export without it or use a newer TensorRT"))
    return problems


_TYPE_CHECK_SKIP = frozenset({"Cast", "QuantizeLinear", "DequantizeLinear", "ConstantOfShape", "Shape"})


def _rule_types(g: GraphInfo, c: ParserContract) -> List[Problem]:
    problems = []
    for node in g.model.graph.node:
        allowed = c.types.get(node.op_type)
        if allowed is None or node.op_type in _TYPE_CHECK_SKIP or not node.input or not node.input[0]:
            continue
        t = g.trt_type(node.input[0], c)
        if t is not None and t not in allowed:
            problems.append(Problem(c.version, "types", node.name, f"{_where(node)} reads {t}, not among the "
                                    f"types TensorRT {c.version} lists for {node.op_type} "
                                    f"({', '.join(sorted(allowed))})"))
    return problems


def _cast_target(node: Any, c: ParserContract) -> str:
    raw = int(node_attr(node, "to", 0))
    to = _ONNX_TO_TRT.get(raw, f"ONNX type {raw}")
    if to == "DOUBLE":
        return "FP32"
    return "INT32" if to == "INT64" and not c.int64 else to


def _rule_cast(g: GraphInfo, c: ParserContract) -> List[Problem]:
    problems = []
    for node in g.model.graph.node:
        if node.op_type != "Cast" or not node.input:
            continue
        to, src = _cast_target(node, c), g.trt_type(node.input[0], c)
        labels = label_source(g, node.output[0]) is not None and node.output[0] in g.outputs
        if to not in c.types["Cast"]:
            fix = (" (build_engine.py gives this TensorRT int32 labels and says so in the engine's sidecar)"
                   if labels and to == "UINT8" else "")
            problems.append(Problem(c.version, "cast", node.name, f"{_where(node)}: a Cast to {to} is not among "
                                    f"TensorRT {c.version}'s Cast types ({', '.join(sorted(c.types['Cast']))}){fix}",
                                    adaptable=labels and to == "UINT8"))
        elif to == "UINT8" and src is not None and src not in FLOAT_TYPES:
            fix = (" (build_engine.py casts the labels through FLOAT first: exact for class ids < 256)"
                   if labels else "; cast through FLOAT first")
            problems.append(Problem(c.version, "cast", node.name, f"{_where(node)}: {src} -> UINT8, but TensorRT "
                                    f"converts to UINT8 only from FLOAT or HALF (DataType::kUINT8){fix}",
                                    adaptable=labels))
        elif src == "UINT8" and to not in FLOAT_TYPES:
            problems.append(Problem(c.version, "cast", node.name, f"{_where(node)}: UINT8 -> {to}, but TensorRT "
                                    "converts UINT8 only to FLOAT or HALF"))
        if to == "UINT8" and node.output[0] not in g.outputs:
            problems.append(Problem(c.version, "cast", node.name, f"{_where(node)} makes a UINT8 tensor inside the "
                                    "network: TensorRT has UINT8 only at network inputs and outputs"))
    return problems


def _rule_int64_outputs(g: GraphInfo, c: ParserContract) -> List[Problem]:
    if c.int64:
        return []
    problems = []
    for out in g.model.graph.output:
        if out.type.tensor_type.elem_type == 7:  # INT64
            labels = label_source(g, out.name) is not None
            fix = ("; build_engine.py casts the labels to INT32 and the engine's sidecar says int32" if labels
                   else "; export int32 outputs for this TensorRT")
            problems.append(Problem(c.version, "int64-output", out.name, f"graph output {out.name!r} is INT64: "
                                    f"TensorRT {c.version} has no INT64 tensors (the parser casts them down to INT32), "
                                    f"so its binding is int32{fix}", adaptable=labels))
    return problems


_REDUCE = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                     "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})


def _rule_axes(g: GraphInfo, c: ParserContract) -> List[Problem]:
    problems = []
    for node in g.model.graph.node:
        if node.op_type == "Slice":
            idx, ok, since = 3, c.slice_tensor_axes, "10.3"
        elif node.op_type in ("Squeeze", "Unsqueeze"):
            idx, ok, since = 1, c.squeeze_tensor_axes, "10.7"
        elif node.op_type == "Pad":
            idx, ok, since = 3, c.pad_tensor_axes, "10.4"
        elif node.op_type in _REDUCE:
            idx, ok, since = 1, False, ""
        else:
            continue
        if len(node.input) > idx and node.input[idx] and not ok and not g.is_constant(node.input[idx]):
            newer = f" (TensorRT {since}+ accepts a tensor)" if since else ""
            problems.append(Problem(c.version, "axes", node.name, f"{_where(node)}: 'axes' must be a constant in "
                                    f"TensorRT {c.version}{newer}; re-export a static graph or fold constants"))
    return problems


_RESIZE_COORD = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
_RESIZE_NEAREST = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


def _rule_resize(g: GraphInfo, c: ParserContract) -> List[Problem]:
    problems = []
    for node in g.model.graph.node:
        if node.op_type != "Resize":
            continue
        bad = []
        if node_attr(node, "mode", "nearest") not in ("nearest", "linear"):
            bad.append(f"mode {node_attr(node, 'mode')!r} (TensorRT: nearest, linear)")
        if node_attr(node, "coordinate_transformation_mode", "half_pixel") not in _RESIZE_COORD:
            bad.append(f"coordinate_transformation_mode {node_attr(node, 'coordinate_transformation_mode')!r}")
        if node_attr(node, "nearest_mode", "round_prefer_floor") not in _RESIZE_NEAREST:
            bad.append(f"nearest_mode {node_attr(node, 'nearest_mode')!r}")
        if node_attr(node, "antialias", 0):
            bad.append("antialias")
        if node_attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
            bad.append(f"keep_aspect_ratio_policy {node_attr(node, 'keep_aspect_ratio_policy')!r}")
        problems += [Problem(c.version, "resize", node.name, f"{_where(node)}: {b} is not supported") for b in bad]
    return problems


def _rule_layernorm_outputs(g: GraphInfo, c: ParserContract) -> List[Problem]:
    return [Problem(c.version, "layernorm", n.name, f"{_where(n)}: only the first output (Y) is supported")
            for n in g.model.graph.node if n.op_type == "LayerNormalization" and len([o for o in n.output if o]) > 1]


# ---------------------------------------------------------------------------------------------
# QuantizeLinear / DequantizeLinear
# ---------------------------------------------------------------------------------------------

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def is_quantized(model: Any) -> bool:
    """True when the graph carries QuantizeLinear/DequantizeLinear nodes (explicit quantization)."""
    return any(n.op_type in QDQ_OPS and n.domain in ("", "ai.onnx") for n in model.graph.node)


def _weight_input(g: GraphInfo, tensor: str) -> bool:
    """A constant, or a QuantizeLinear of a constant (the weight half of a Q/DQ pair)."""
    if g.is_constant(tensor):
        return True
    p = g.producer.get(tensor)
    return p is not None and p.op_type in ("QuantizeLinear", "Identity") and bool(p.input) and \
        g.is_constant(p.input[0])


def _qdq_scale(g: GraphInfo, c: ParserContract, node: Any) -> List[str]:
    bad: List[str] = []
    if len(node.input) < 2 or not node.input[1]:
        return ["the scale input is missing"]
    scale = g.value(node.input[1])
    if scale is None:
        return bad  # a run-time scale: the parser takes it (checked on the device)
    if scale.size == 0 or not (scale > 0).all():
        bad.append("scales must all be positive")
    if scale.size > 1:
        if not _weight_input(g, node.input[0]):
            bad.append("per-channel scales on an activation (TensorRT quantizes activations per tensor only)")
        if not any(a.name == "axis" for a in node.attribute):
            bad.append("a per-channel scale needs an explicit 'axis' (ONNX defaults to 1, TensorRT to 0)")
        data = g.value(node.input[0])
        if data is None and node.input[0] in g.producer:
            q = g.producer[node.input[0]]
            data = g.value(q.input[0]) if q.input else None
        axis = int(node_attr(node, "axis", 1))
        if data is not None and data.ndim and scale.size != data.shape[axis % data.ndim]:
            bad.append(f"{scale.size} scales for {data.shape[axis % data.ndim]} channels on axis {axis}")
        if g.opset and g.opset < 13:
            bad.append(f"per-axis quantization needs opset >= 13 (this graph: {g.opset})")
    if node_attr(node, "block_size", 0):
        bad.append("blocked quantization (block_size) is not INT8 per-tensor/per-channel")
    return bad


def _qdq_zero_point(g: GraphInfo, c: ParserContract, node: Any) -> List[str]:
    if len(node.input) < 3 or not node.input[2]:
        if c.qdq_needs_zero_point:
            return [f"TensorRT {c.version} needs the zero-point input: give an INT8 zero point of 0"]
        if node.op_type == "QuantizeLinear":
            return ["without a zero point ONNX quantizes to UINT8 while TensorRT quantizes to INT8: give an INT8 "
                    "zero point of 0"]
        return []
    t = _ONNX_TO_TRT.get(g.dtype.get(node.input[2], 0), "unknown")
    if t != "INT8":
        return [f"zero point of type {t}: pvtseg builds symmetric INT8 only (TensorRT reads a UINT8 zero point as "
                "INT8 or refuses it); re-quantize with `pvtseg quantize`"]
    zp = g.value(node.input[2])
    if zp is None:
        return ["the zero point must be a constant (all zeros)"]
    return [] if not zp.any() else ["the zero point must be all zeros (TensorRT quantizes symmetrically)"]


def _rule_qdq(g: GraphInfo, c: ParserContract) -> List[Problem]:
    problems = []
    for node in g.model.graph.node:
        if node.op_type not in QDQ_OPS or node.domain not in ("", "ai.onnx"):
            continue
        bad = _qdq_scale(g, c, node) + _qdq_zero_point(g, c, node)
        t = g.trt_type(node.input[0], c) if node.input else None
        if node.op_type == "DequantizeLinear" and t is not None and t != "INT8":
            bad.append(f"dequantizes {t}: pvtseg builds INT8 Q/DQ graphs only")
        if node.op_type == "QuantizeLinear" and t is not None and t not in c.types["QuantizeLinear"]:
            bad.append(f"quantizes {t}, not among {', '.join(sorted(c.types['QuantizeLinear']))}")
        problems += [Problem(c.version, "qdq", node.name, f"{_where(node)}: {b}") for b in bad]
    return problems


RULES = (_rule_opset, _rule_ops, _rule_types, _rule_cast, _rule_int64_outputs, _rule_axes, _rule_resize,
         _rule_layernorm_outputs, _rule_qdq)


def check(model: Any, version: Any) -> List[Problem]:
    """Problems TensorRT `version`'s ONNX parser has with `model` (an onnx.ModelProto); [] = none.

    `version`: "8.5", "8.6", "10.3", "10.13", "11", any release string ("10.3.0.30") or a
    ParserContract. Each Problem prints as one line with the fix; `adaptable` ones are
    rewritten exactly by `pvtseg.engine.adapt.adapt` (what build_engine.py does).
    """
    c = contract_for(version)
    g = GraphInfo.of(model)
    problems: List[Problem] = []
    for rule in RULES:
        problems += rule(g, c)
    return problems


def check_all(model: Any, versions: Iterable[str] = VERSIONS) -> Dict[str, List[Problem]]:
    return {v: check(model, v) for v in versions}


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise EngineError("building or planning a TensorRT engine reads the ONNX graph: `pip install onnx`") from None
    return onnx
