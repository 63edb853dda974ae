"""The ONNX operator matrix of TensorRT 10.0's ONNX parser, and an op-name graph checker.

For what each TensorRT version (8.5 .. 11) really accepts (types, UINT8 casts, Q/DQ, opsets),
use contract.py; build_engine.py adapts graphs with adapt.py. This module stays the op-name
check against one table (and the table parser the contract's tests re-read).

SUPPORTED_OPS is the set of operators marked `Y` in onnx/onnx-tensorrt docs/operators.md
for TensorRT 10.0 (Apache-2.0; a copy is ../shared/data/tensorrt/onnx-operators-trt10.0.md,
and tests check this set against it). `parse_operator_table` reads such a file when one is
given, so a newer matrix can be used without a code change. Plain Python + onnx.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..errors import OperatorTableError
from .contract import OPS_10_1, node_attr

# The 10.0 and 10.1 tables mark the same operators Y (contract.py keeps the data).
SUPPORTED_OPS = OPS_10_1
# Opset range of the parsers users run: TensorRT 8.5/8.6 (JetPack 5.1 / 6.0) parse <= 17,
# TensorRT 10.x parses 9..20.
OPSET_RANGES = {"8.5": (7, 17), "8.6": (7, 17), "10": (9, 20)}
RESIZE_COORD_MODES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
RESIZE_MODES = ("nearest", "linear")


@dataclass
class OpInfo:
    supported: bool
    types: List[str] = field(default_factory=list)
    restrictions: str = ""


def parse_operator_table(path_or_text: "str | os.PathLike[str]") -> Dict[str, OpInfo]:
    """Parse the markdown matrix: `| Op | Y/N | types | restrictions |` rows."""
    text = str(path_or_text)
    if "\n" not in text and os.path.exists(text):
        with open(text, encoding="utf-8") as f:
            text = f.read()
    table: Dict[str, OpInfo] = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*([A-Za-z][A-Za-z0-9_]*)\s*\|\s*([YN])\s*\|(.*)$", line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(3).split("|")]
        types = [t.strip() for t in cells[0].split(",") if t.strip()] if cells else []
        restrictions = cells[1] if len(cells) > 1 else ""
        table[m.group(1)] = OpInfo(m.group(2) == "Y", types, restrictions)
    if not table:
        raise OperatorTableError("no operator rows found: not an onnx-tensorrt operators.md table; pass the "
                                 "docs/operators.md of an onnx-tensorrt release branch (| Op | Y/N | types |)")
    return table


def check_onnx_for_tensorrt(model: Any, table: Optional[Dict[str, OpInfo]] = None,
                            min_trt: str = "8.5") -> List[str]:
    """Problems TensorRT's ONNX parser would have with `model` (an onnx.ModelProto).

    Returns human-readable lines naming the op (empty list = all clear): unsupported or
    unknown ops, custom domains, Resize modes the parser rejects, opsets outside the range
    of the oldest TensorRT targeted (`min_trt`: "8.5", "8.6" or "10").
    """
    supported = {k for k, v in table.items() if v.supported} if table is not None else SUPPORTED_OPS
    problems: List[str] = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            lo, hi = OPSET_RANGES.get(min_trt, OPSET_RANGES["10"])
            if not lo <= imp.version <= hi:
                problems.append(f"opset {imp.version} is outside {lo}..{hi}, the range TensorRT {min_trt} parses; "
                                f"re-export with --opset 17")
    initializers = {i.name for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    seen: Dict[str, int] = {}
    for node in model.graph.node:
        where = f"{node.op_type} node {node.name!r}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} needs a TensorRT plugin")
            continue
        if node.op_type not in supported:
            seen[node.op_type] = seen.get(node.op_type, 0) + 1
            continue
        if node.op_type == "Resize":
            mode = node_attr(node, "mode", "nearest")
            coord = node_attr(node, "coordinate_transformation_mode", "half_pixel")
            if mode not in RESIZE_MODES:
                problems.append(f"{where}: mode {mode!r} is not supported (TensorRT: nearest, linear)")
            if coord not in RESIZE_COORD_MODES:
                problems.append(f"{where}: coordinate_transformation_mode {coord!r} is not supported")
            if node_attr(node, "antialias", 0):
                problems.append(f"{where}: antialias is not supported")
        if node.op_type in ("Slice", "Unsqueeze", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"):
            idx = 3 if node.op_type == "Slice" else 1
            if len(node.input) > idx and node.input[idx] and node.input[idx] not in initializers | constants:
                problems.append(f"{where}: 'axes' must be a constant (TensorRT parser restriction)")
        if node.op_type == "LayerNormalization" and len([o for o in node.output if o]) > 1:
            problems.append(f"{where}: only the first output (Y) is supported")
    for op, count in sorted(seen.items()):
        problems.append(f"{op} ({count} node{'s' if count > 1 else ''}): not supported by TensorRT's ONNX parser "
                        "(not marked Y in its operator matrix)")
    return problems
