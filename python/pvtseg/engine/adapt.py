"""Rewrite an exported ONNX graph, exactly, into one that TensorRT `version`'s parser accepts.

    adapted = adapt(onnx.load("x.onnx"), "8.5")
    adapted.model          # the graph build_engine.py hands to TensorRT 8.5's parser
    adapted.changes        # one line per rewrite, printed by --plan-only
    adapted.output_dtypes  # graph outputs whose dtype changed: the engine's sidecar says so
    adapted.fp32_nodes     # nodes the rewrites added that stay FP32 in an FP16/INT8 build

Rewrites (each decided by contract.py, each exact in ONNX Runtime):
- labels (every version): ArgMax -> Cast(UINT8) becomes ArgMax -> Cast(FLOAT) -> Cast(UINT8):
  TensorRT converts to UINT8 only from FLOAT/HALF; class ids < 256 are exact in both.
  TensorRT 8.5 lists no UINT8 Cast at all: there the labels become int32 (ArgMax ->
  Cast(INT32)) and the output dtype change is recorded for the engine's sidecar. INT64
  labels on 8.x (no INT64 tensors before 9.0) become int32 the same way.
- LayerNormalization on 8.5 (no importer): ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div,
  Mul, Add, named `<node>/pvtseg_ln/...` and returned as FP32 nodes, so an FP16 build keeps
  the whole norm in FP32 (its variance overflows FP16 on real activations).
Anything else the contract reports is left as a problem (`Adapted.problems`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Set, Tuple

from .contract import ONNX_DTYPE_NAMES, GraphInfo, ParserContract, Problem, check, contract_for, label_source, node_attr

FLOAT, UINT8, INT32, INT64 = 1, 2, 6, 7


@dataclass
class Adapted:
    version: str
    model: Any
    changes: List[str] = field(default_factory=list)
    output_dtypes: Dict[str, str] = field(default_factory=dict)
    fp32_nodes: Set[str] = field(default_factory=set)
    problems: List[Problem] = field(default_factory=list)


def _copy_named(model: Any) -> Any:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    seen: Set[str] = set()
    for i, node in enumerate(m.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}_{i}_pvtseg"
        seen.add(node.name)
    return m


def _layernorm_nodes(ln: Any, axes: List[int], opset: int, dtype: Any) -> Tuple[List[Any], List[Any]]:
    """The nine nodes (and their constants) of one LayerNormalization, in FP32-island names."""
    import numpy as np
    from onnx import helper, numpy_helper

    p = f"{ln.name}/pvtseg_ln"
    x, scale = ln.input[0], ln.input[1]
    bias = ln.input[2] if len(ln.input) > 2 and ln.input[2] else None
    eps = float(node_attr(ln, "epsilon", 1e-5))
    inits = [numpy_helper.from_array(np.array(2.0, dtype), f"{p}/two"),
             numpy_helper.from_array(np.array(eps, dtype), f"{p}/epsilon")]

    def reduce(name: str, src: str, out: str) -> Any:
        if opset >= 18:  # axes became an input in opset 18
            return helper.make_node("ReduceMean", [src, f"{p}/axes"], [out], name=name, keepdims=1)
        return helper.make_node("ReduceMean", [src], [out], name=name, axes=axes, keepdims=1)

    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), f"{p}/axes"))
    t = {k: f"{p}/{k}" for k in ("mean", "centered", "squared", "var", "var_eps", "std", "normed", "scaled")}
    y = ln.output[0]
    nodes = [reduce(f"{p}/ReduceMean_mean", x, t["mean"]),
             helper.make_node("Sub", [x, t["mean"]], [t["centered"]], name=f"{p}/Sub"),
             helper.make_node("Pow", [t["centered"], f"{p}/two"], [t["squared"]], name=f"{p}/Pow"),
             reduce(f"{p}/ReduceMean_var", t["squared"], t["var"]),
             helper.make_node("Add", [t["var"], f"{p}/epsilon"], [t["var_eps"]], name=f"{p}/Add_eps"),
             helper.make_node("Sqrt", [t["var_eps"]], [t["std"]], name=f"{p}/Sqrt"),
             helper.make_node("Div", [t["centered"], t["std"]], [t["normed"]], name=f"{p}/Div"),
             helper.make_node("Mul", [t["normed"], scale], [t["scaled"] if bias else y], name=f"{p}/Mul_scale")]
    if bias:
        nodes.append(helper.make_node("Add", [t["scaled"], bias], [y], name=f"{p}/Add_bias"))
    return nodes, inits


def _decompose_layernorms(m: Any, out: Adapted) -> None:
    import numpy as np

    g = GraphInfo.of(m)
    new_nodes, done = [], []
    for node in m.graph.node:
        if node.op_type != "LayerNormalization" or len([o for o in node.output if o]) > 1:
            new_nodes.append(node)
            continue
        axis = int(node_attr(node, "axis", -1))
        rank = g.rank.get(node.input[0]) if axis >= 0 else None
        if axis >= 0 and rank is None:
            new_nodes.append(node)  # rank unknown: left for the contract to report
            continue
        axes = list(range(axis, 0)) if axis < 0 else list(range(axis - (rank or 0), 0))
        dtype = np.float16 if g.dtype.get(node.input[0]) == 10 else np.float32
        nodes, inits = _layernorm_nodes(node, axes, g.opset, dtype)
        new_nodes += nodes
        m.graph.initializer.extend(inits)
        out.fp32_nodes.update(n.name for n in nodes)
        done.append(node.name)
    if done:
        del m.graph.node[:]
        m.graph.node.extend(new_nodes)
        out.changes.append(f"LayerNormalization decomposed into ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add "
                           f"(TensorRT {out.version}'s parser has no importer), kept in FP32, {len(done)} node(s): "
                           + ", ".join(done))


def _rename_output(m: Any, old: str, new: str) -> None:
    for node in m.graph.node:
        for i, o in enumerate(node.output):
            if o == old:
                node.output[i] = new
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _append_cast(m: Any, output: str, to: int, name: str) -> Any:
    """Make `output` the result of a new Cast(to) of what produced it before."""
    from onnx import helper

    inner = f"{output}/pvtseg_pre_cast"
    _rename_output(m, output, inner)
    node = helper.make_node("Cast", [inner], [output], to=to, name=name)
    m.graph.node.append(node)
    return node


def _insert_float_cast(m: Any, cast: Any) -> Any:
    """ArgMax -> ... -> Cast(UINT8) becomes ... -> Cast(FLOAT) -> Cast(UINT8)."""
    from onnx import helper

    src, mid = cast.input[0], f"{cast.input[0]}/pvtseg_as_float"
    node = helper.make_node("Cast", [src], [mid], to=FLOAT, name=f"{cast.name}/pvtseg_to_float")
    cast.input[0] = mid
    nodes = list(m.graph.node)
    nodes.insert(nodes.index(cast), node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return node


def _fix_label_output(m: Any, out_vi: Any, c: ParserContract, out: Adapted) -> None:
    g = GraphInfo.of(m)
    if label_source(g, out_vi.name) is None:
        return
    last = g.producer[out_vi.name]
    declared = out_vi.type.tensor_type.elem_type
    wants_int32 = (declared == UINT8 and not c.uint8_cast) or (declared == INT64 and not c.int64)
    if wants_int32:
        if last.op_type == "Cast":
            for a in last.attribute:
                if a.name == "to":
                    a.i = INT32
            node = last
        else:
            node = _append_cast(m, out_vi.name, INT32, f"{out_vi.name}/pvtseg_to_int32")
        out_vi.type.tensor_type.elem_type = INT32
        out.output_dtypes[out_vi.name] = "int32"
        out.fp32_nodes.add(node.name)
        why = "no UINT8 Cast" if declared == UINT8 else "no INT64 tensors"
        out.changes.append(f"labels {out_vi.name!r}: {ONNX_DTYPE_NAMES[declared]} -> int32 (TensorRT {out.version} has "
                           f"{why}): ArgMax -> Cast(INT32); the engine's sidecar says output dtype int32")
    elif declared == UINT8 and last.op_type == "Cast" and g.dtype.get(last.input[0]) not in (FLOAT, 10):
        node = _insert_float_cast(m, last)
        out.fp32_nodes.update({node.name, last.name})
        out.changes.append(f"labels {out_vi.name!r}: ArgMax -> Cast(UINT8) became ArgMax -> Cast(FLOAT) -> "
                           "Cast(UINT8) (TensorRT converts to UINT8 only from FLOAT/HALF; exact for class ids < 256)")


def _update_embedded_meta(m: Any, output_dtypes: Dict[str, str]) -> None:
    for prop in m.metadata_props:
        if prop.key != "pvtseg":
            continue
        try:
            meta = json.loads(prop.value)
        except ValueError:
            return
        out = meta.get("output") or {}
        if out.get("name") in output_dtypes:
            out["dtype"] = output_dtypes[out["name"]]
            prop.value = json.dumps(meta)


def adapt(model: Any, version: Any) -> Adapted:
    """A copy of `model` rewritten for TensorRT `version`'s parser (see the module doc)."""
    c = contract_for(version)
    m = _copy_named(model)
    out = Adapted(c.version, m)
    if "LayerNormalization" not in c.ops:
        _decompose_layernorms(m, out)
    for vi in m.graph.output:
        _fix_label_output(m, vi, c, out)
    if out.output_dtypes:
        _update_embedded_meta(m, out.output_dtypes)
    out.problems = check(m, c)
    return out


def tensorrt_report(model: Any, versions: Any = None) -> List[Tuple[str, str]]:
    """(level, line) pairs for the export's self-check: which TensorRT versions take the graph
    as exported, which after build_engine.py adapts it, and what is left ("warning") where
    neither works. Never raises for a graph it cannot fix: that is what it reports."""
    from .contract import VERSIONS

    asis, adapted, failing, lines = [], [], [], []
    for v in versions or VERSIONS:
        if not check(model, v):
            asis.append(v)
            continue
        a = adapt(model, v)
        if a.problems:
            failing.append(v)
            lines += [("warning", f"TensorRT {v}: {p}") for p in a.problems]
        else:
            adapted.append(v)
            lines.append(("info", f"TensorRT {v}: build_engine.py adapts the graph: "
                          + "; ".join(ch.split(" (")[0] for ch in a.changes)))
    head = (f"TensorRT parser contract: as exported {', '.join(asis) or '-'}; after build_engine.py adapts it "
            f"{', '.join(adapted) or '-'}; not buildable {', '.join(failing) or '-'}")
    return [("warning" if failing else "info", head)] + lines
