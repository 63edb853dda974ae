"""FP32 ONNX graph -> FP16 graph with FP32 islands and explicit Cast nodes (pure ONNX).

TensorRT 11 has no FP16 builder flag: precision comes from the network's own types
(strongly typed). This transform produces such a network. The islands that stay FP32 are
the ones that overflow or lose too much in FP16 in these models:
- normalisations and reductions: LayerNormalization (the top reported FP16 failure for
  PVT / SegFormer), Group/InstanceNormalization, every Reduce*, and the Pow / Sqrt /
  Reciprocal / Sub / Add / Div of a LayerNorm decomposed into primitives;
- Softmax / LogSoftmax (attention probabilities);
- the final upsample + ArgMax (the Resize whose output reaches the ArgMax or a graph output),
  so labels are decided in FP32.
Everything else (Conv, MatMul, Gemm, GELU's Erf, elementwise ops, ...) runs in FP16.
Graph inputs and outputs keep their declared types (the sidecar's): a float32 input gets a
Cast to FP16 after it, a float32 output a Cast back at the end.

`island_node_names(model)` names the nodes that stay FP32; the TensorRT 8.5-10.x path
(FP16 flag + per-layer precision constraints, see plan.py) pins the same layers.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Set

FP32_ISLAND_OPS = frozenset({
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "LpNormalization",
    "MeanVarianceNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd", "ReduceMax", "ReduceMin",
    "Pow", "Sqrt", "Reciprocal",
    "ArgMax", "ArgMin", "TopK",
})
# Ops that, fed directly by a reduction / Sqrt / Pow island, belong to a norm decomposition.
_NORM_DECOMP_FOLLOWERS = frozenset({"Sub", "Add", "Div", "Mul"})
_NORM_DECOMP_TRIGGERS = frozenset({"ReduceMean", "ReduceSum", "ReduceSumSquare", "Pow", "Sqrt", "Reciprocal"})
_PASS_THROUGH = frozenset({"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose"})
# Inputs that the ONNX spec requires to be float32 whatever the data type (index per op).
_FORCE_FP32_INPUTS = {"Resize": (1, 2)}


def _consumers(graph: Any) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                out.setdefault(name, []).append(node)
    return out


def island_node_names(model: Any) -> Set[str]:
    """Names of the nodes of an FP32 graph that the FP16 policy keeps in FP32."""
    graph = model.graph
    cons = _consumers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    islands: Set[str] = set()
    for node in graph.node:
        if node.op_type in FP32_ISLAND_OPS:
            islands.add(node.name)
    # Norm decompositions: Sub/Add/Div/Mul fed directly by a reduction, Sqrt or Pow island.
    for node in graph.node:
        if node.op_type in _NORM_DECOMP_FOLLOWERS:
            for name in node.input:
                p = producer.get(name)
                if p is not None and p.name in islands and p.op_type in _NORM_DECOMP_TRIGGERS:
                    islands.add(node.name)
    # ... and the Sub (x - mean) that feeds the variance's Pow.
    for node in graph.node:
        if node.op_type == "Pow" and node.input and node.input[0] in producer:
            p = producer[node.input[0]]
            if p.op_type == "Sub":
                islands.add(p.name)
    # ... and the affine tail (x_hat * gamma + beta) of a decomposed norm, so the whole norm is
    # one FP32 island (a half-FP16 tail also trips ONNX Runtime's LayerNorm fusion).
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant"
                                                       for o in n.output}
    decomp = {n.name for n in graph.node if n.name in islands and n.op_type in ("Div", "Mul", "Sub", "Add")}
    for _ in range(2):
        for node in graph.node:
            if node.op_type in ("Mul", "Add") and node.name not in islands and len(node.input) == 2:
                a, b = node.input
                pa, pb = producer.get(a), producer.get(b)
                if (pa is not None and pa.name in decomp and b in constants) or \
                        (pb is not None and pb.name in decomp and a in constants):
                    islands.add(node.name)
                    decomp.add(node.name)

    def reaches_final(tensor: str, depth: int = 0) -> bool:
        if tensor in outputs:
            return True
        if depth > 8:
            return False
        for c in cons.get(tensor, []):
            if c.op_type in ("ArgMax", "ArgMin", "TopK"):
                return True
            if c.op_type in _PASS_THROUGH and any(reaches_final(o, depth + 1) for o in c.output):
                return True
        return False

    for node in graph.node:
        if node.op_type == "Resize" and reaches_final(node.output[0]):
            islands.add(node.name)
    return islands


def _wants_fp32(node: Any, idx: int, islands: Set[str]) -> bool:
    return node.name in islands or idx in _FORCE_FP32_INPUTS.get(node.op_type, ())


def _dtypes(model: Any) -> Dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    dtype: Dict[str, int] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dtype[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        dtype[init.name] = init.data_type
    return dtype


def _convert_constants(graph: Any, dtype: Dict[str, int], islands: Set[str]) -> Dict[str, str]:
    """FP32 initializers / Constant nodes -> FP16 where every consumer computes in FP16.

    An initializer read by both FP16 and FP32 nodes gets an FP16 copy; returns {name: copy}.
    """
    from onnx import TensorProto, numpy_helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    cons = _consumers(graph)

    def modes(name: str) -> Set[bool]:
        return {_wants_fp32(c, i, islands) for c in cons.get(name, []) for i, inp in enumerate(c.input) if inp == name}

    new_inits, fp16_alias = [], {}
    for init in graph.initializer:
        if init.data_type != FLOAT:
            continue
        used = modes(init.name)
        arr = numpy_helper.to_array(init)
        if used == {False}:
            init.CopyFrom(numpy_helper.from_array(arr.astype("float16"), init.name))
            dtype[init.name] = HALF
        elif used == {True, False}:
            alias = init.name + "_fp16"
            new_inits.append(numpy_helper.from_array(arr.astype("float16"), alias))
            fp16_alias[init.name] = alias
            dtype[alias] = HALF
    graph.initializer.extend(new_inits)
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.t.data_type == FLOAT and modes(node.output[0]) == {False}:
            value.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(value.t).astype("float16"), value.t.name))
            dtype[node.output[0]] = HALF
    return fp16_alias


def _cast_inputs(graph: Any, dtype: Dict[str, int], islands: Set[str], fp16_alias: Dict[str, str]) -> List[Any]:
    """The nodes in order, each float input cast to the node's compute type (FP32 in islands)."""
    from onnx import TensorProto, helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    cast_cache: Dict[tuple, str] = {}
    new_nodes: List[Any] = []

    def cast(name: str, to: int) -> str:
        if (name, to) not in cast_cache:
            out = f"{name}_to_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=f"{out}_cast_pvtseg"))
            dtype[out] = to
            cast_cache[(name, to)] = out
        return cast_cache[(name, to)]

    for node in graph.node:
        if node.op_type != "Constant":
            for i, name in enumerate(node.input):
                t = dtype.get(name)
                want = FLOAT if _wants_fp32(node, i, islands) else HALF
                if name and t in (FLOAT, HALF) and t != want:
                    node.input[i] = fp16_alias[name] if want == HALF and name in fp16_alias else cast(name, want)
            _set_output_dtypes(node, dtype, FLOAT if node.name in islands else HALF)
        new_nodes.append(node)
    return new_nodes


def _set_output_dtypes(node: Any, dtype: Dict[str, int], compute: int) -> None:
    if node.op_type == "Cast":
        out_t: Optional[int] = next(a.i for a in node.attribute if a.name == "to")
    elif node.op_type == "ConstantOfShape":
        out_t = dtype.get(node.output[0], 1)
    else:
        out_t = None
    for o in node.output:
        if out_t is not None:
            dtype[o] = out_t
        elif dtype.get(o) in (1, 10):  # FLOAT, FLOAT16
            dtype[o] = compute


def _restore_output_types(graph: Any, nodes: List[Any], dtype: Dict[str, int]) -> None:
    """Graph outputs keep their declared float type: a Cast back at the end where needed."""
    from onnx import helper

    for out in graph.output:
        declared, actual = out.type.tensor_type.elem_type, dtype.get(out.name)
        if declared not in (1, 10) or actual is None or actual == declared:
            continue
        inner = out.name + "_pvtseg_inner"
        for n in nodes:
            n.output[:] = [inner if o == out.name else o for o in n.output]
            n.input[:] = [inner if i == out.name else i for i in n.input]
        nodes.append(helper.make_node("Cast", [inner], [out.name], to=declared, name=f"{out.name}_output_cast_pvtseg"))


def convert_to_fp16(model: Any, keep_fp32: Optional[Iterable[str]] = None, check: bool = True) -> Any:
    """Return an FP16 copy of an FP32 onnx.ModelProto with FP32 islands (see module doc).

    `keep_fp32`: node names to keep in FP32 (default: `island_node_names(model)`).
    Nodes need unique, non-empty names (exporters and onnxslim give them; missing ones are
    filled in).
    """
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for i, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}_pvtseg"
    islands = set(island_node_names(model) if keep_fp32 is None else keep_fp32)
    dtype = _dtypes(model)
    fp16_alias = _convert_constants(graph, dtype, islands)
    new_nodes = _cast_inputs(graph, dtype, islands, fp16_alias)
    _restore_output_types(graph, new_nodes, dtype)
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    if check:
        onnx.checker.check_model(model)
    return model


def fp32_node_names(model: Any) -> Set[str]:
    """Names of the non-Cast nodes of a converted graph that compute in FP32 (for tests/reports)."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    out = set()
    for node in model.graph.node:
        if node.op_type in ("Cast", "Constant"):
            continue
        if node.input and types.get(node.input[0]) == TensorProto.FLOAT:
            out.add(node.name)
    return out
