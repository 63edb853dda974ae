"""Does the graph / engine match its sidecar? Checked once, when a backend loads an artifact.

Each backend describes the artifact's I/O tensors as `TensorSpec`s (name, shape with None for
a dynamic axis, numpy dtype name) and calls `check_io`. A mismatch would otherwise show up
as silent nonsense (a labels graph read as logits gives all-zero labels, 11-class logits
under a 5-class sidecar give ids past the palette) or as an out-of-bounds buffer, so it is
refused here with one error that lists every difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ArtifactMismatchError

Dim = Optional[int]  # None: dynamic (resolved per call)

FLOAT_DTYPES = ("float32", "float16")
LABEL_DTYPES = ("uint8", "int32", "int64")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Tuple[Dim, ...]
    dtype: str

    def __str__(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {dims} {self.dtype}"


def normalize_dims(dims: Sequence[Any]) -> Tuple[Dim, ...]:
    """Frameworks spell a dynamic axis as -1, 0-less None or a symbolic name: all become None."""
    return tuple(int(d) if isinstance(d, int) and d >= 0 else None for d in dims)


def expected_input(meta: Dict[str, Any]) -> TensorSpec:
    inp = meta["input"]
    dyn = inp.get("dynamic") or {}
    batch = None if "batch" in dyn else int(meta.get("batch", 1))
    return TensorSpec(inp["name"], (batch, 3, int(inp["height"]), int(inp["width"])), "float32")


def expected_output(meta: Dict[str, Any]) -> TensorSpec:
    inp, out = meta["input"], meta["output"]
    h, w = int(inp["height"]) // int(out["stride"]), int(inp["width"]) // int(out["stride"])
    if out["kind"] == "labels":
        return TensorSpec(out["name"], (None, h, w), out["dtype"])
    return TensorSpec(out["name"], (None, int(meta["num_classes"]), h, w), out["dtype"])


def _dims_differ(got: Dim, want: Dim) -> bool:
    return got is not None and want is not None and got != want


def _input_problems(meta: Dict[str, Any], inputs: Sequence[TensorSpec]) -> List[str]:
    if len(inputs) != 1:
        return [f"the graph has {len(inputs)} inputs ({', '.join(map(str, inputs))}); pvtseg artifacts have one"]
    want, got = expected_input(meta), inputs[0]
    problems = []
    if got.name != want.name:
        problems.append(f"input is named {got.name!r} in the graph, {want.name!r} in the sidecar")
    if len(got.shape) != 4:
        return problems + [f"input {got} is not NCHW"]
    axes = ("batch", "channels", "height", "width")
    for axis, g, w in zip(axes, got.shape, want.shape):
        if _dims_differ(g, w):
            problems.append(f"input {axis} is {g} in the graph, {w} in the sidecar")
    if got.dtype != "float32":
        problems.append(f"input dtype is {got.dtype} in the graph; pvtseg feeds float32")
    return problems


def _output_problems(meta: Dict[str, Any], outputs: Sequence[TensorSpec]) -> List[str]:
    want = expected_output(meta)
    match = [o for o in outputs if o.name == want.name]
    if not match:
        names = ", ".join(o.name for o in outputs)
        return [f"the sidecar's output {want.name!r} is not among the graph's outputs ({names})"]
    got = match[0]
    kind = meta["output"]["kind"]
    if kind == "labels" and got.dtype in FLOAT_DTYPES:
        return [f"the sidecar says labels but output {got} is a float tensor (a logits graph): "
                "set output.kind to 'logits'"]
    if kind == "logits" and got.dtype not in FLOAT_DTYPES:
        return [f"the sidecar says logits but output {got} is an integer tensor (a labels graph): "
                "set output.kind to 'labels'"]
    problems = []
    if got.dtype != want.dtype:
        problems.append(f"output dtype is {got.dtype} in the graph, {want.dtype} in the sidecar")
    problems += _output_shape_problems(kind, got, want)
    return problems


def _output_shape_problems(kind: str, got: TensorSpec, want: TensorSpec) -> List[str]:
    shape = got.shape
    if kind == "labels" and len(shape) == 4 and shape[1] == 1:
        shape = shape[:1] + shape[2:]  # N x 1 x H x W labels are fine
    if len(shape) != len(want.shape):
        return [f"output {got} has rank {len(got.shape)}; {kind} outputs are "
                f"{'N x H x W' if kind == 'labels' else 'N x C x H x W'}"]
    axes = ("batch", "height", "width") if kind == "labels" else ("batch", "classes", "height", "width")
    problems = []
    for axis, g, w in zip(axes, shape, want.shape):
        if _dims_differ(g, w):
            problems.append(f"output {axis} is {g} in the graph, {w} in the sidecar"
                            + (" (num_classes)" if axis == "classes" else ""))
    return problems


def check_io(where: str, meta: Dict[str, Any], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
             *, graph_meta: Optional[Dict[str, Any]] = None) -> None:
    """Raise ArtifactMismatchError listing every way the artifact differs from its sidecar.

    `graph_meta`: the sidecar the exporter embedded in the graph itself (ONNX metadata), when
    present; it tells what the shapes cannot, e.g. the class count of a labels graph.
    """
    problems = _input_problems(meta, inputs) + _output_problems(meta, outputs)
    if graph_meta:
        problems += embedded_meta_problems(meta, graph_meta)
    if problems:
        raise ArtifactMismatchError(
            f"{where}: the artifact does not match its sidecar: " + "; ".join(problems)
            + ". Use the .json that was written with this file (re-export with `pvtseg export`, or rebuild the "
              "engine with build_engine.py, to get a matching pair).")


def embedded_meta_problems(meta: Dict[str, Any], graph_meta: Dict[str, Any]) -> List[str]:
    problems = []
    if graph_meta.get("num_classes") not in (None, meta["num_classes"]):
        problems.append(f"the graph was exported with {graph_meta['num_classes']} classes, "
                        f"the sidecar lists {meta['num_classes']}")
    graph_kind = (graph_meta.get("output") or {}).get("kind")
    if graph_kind not in (None, meta["output"]["kind"]):
        problems.append(f"the graph outputs {graph_kind}, the sidecar says {meta['output']['kind']}")
    return problems
