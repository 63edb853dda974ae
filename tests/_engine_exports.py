"""Test helper: one small default export per backbone family, made once per pytest process.

Each family's smallest configuration (one block per stage where the backbone takes
`depths`, narrow widths where it takes them, two blocks in Swin's first stage so the shifted
window is exported, DAT with one local, one shifted and two deformable stages; the SegFormer
head, and the FPN head on Swin) through `pvtseg.export.export_model` at 64x64 (the default
`--output labels`, uint8). `logits_twin` derives the `--output logits` graph from a
labels export by ending it at the ArgMax input: the logits export is that graph (checked
against a real logits export in tests/test_trt_contract.py).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

SIZE = 64
FAMILIES: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "pvt_v1": ("pvt_v1_tiny_segformer", dict(depths=(1, 1, 1, 1), embed_dims=(32, 64, 128, 256),
                                             num_heads=(1, 2, 4, 8))),
    "pvt_v2": ("pvt_v2_b0_segformer", dict(depths=(1, 1, 1, 1))),
    "mit": ("mit_b0_segformer", dict(depths=(1, 1, 1, 1))),
    "swin": ("swin_tiny_fpn", dict(depths=(2, 1, 1, 1), embed_dim=32, num_heads=(1, 2, 4, 8))),  # the FPN head
    "mobilevit": ("mobilevit_xxs_segformer", dict(depths=(1, 1, 1))),
    "dat": ("dat_tiny_segformer", dict(depths=(1, 1, 1, 1), stage_spec=(("L",), ("S",), ("D",), ("D",)),
                                       dims=(32, 64, 128, 256), heads=(1, 2, 4, 8), groups=(-1, -1, 2, 4))),
    "mswin": ("mswin_tiny_segformer", dict(depths=(1, 1, 1, 1), windows=(4, 8), dim_heads=(16, 32))),
}

_CACHE: Dict[Tuple[str, bool], Path] = {}
_TMP: Dict[str, Path] = {}


def _tmp() -> Path:
    if "dir" not in _TMP:
        _TMP["dir"] = Path(tempfile.mkdtemp(prefix="pvtseg_trt_"))
        atexit.register(shutil.rmtree, _TMP["dir"], True)
    return _TMP["dir"]


def family_export(family: str, dynamic: bool = False) -> Path:
    """The labels ONNX (sidecar beside it) of `family`'s small model, static or dynamic."""
    key = (family, dynamic)
    if key not in _CACHE:
        import torch

        from pvtseg.export import export_model
        from pvtseg.models import create_model

        arch, kw = FAMILIES[family]
        torch.manual_seed(0)
        model = create_model(arch, num_classes=11, **kw).eval()
        out = _tmp() / f"{family}_{'dyn' if dynamic else 'static'}"
        _CACHE[key] = Path(export_model(model, out, arch=arch, height=SIZE, width=SIZE, formats=("onnx",),
                                        dynamic=dynamic, verify=False, trt_check=False,
                                        log=lambda *a, **k: None)["onnx"])
    return _CACHE[key]


def logits_twin(labels_onnx: Path) -> Path:
    """The logits graph of a labels export (+ its sidecar): ends at the ArgMax input, named 'logits'."""
    import onnx

    from pvtseg import meta as meta_mod

    dest = labels_onnx.with_name(labels_onnx.stem + "_logits.onnx")
    if dest.is_file():
        return dest
    m = onnx.load(str(labels_onnx))
    arg = next(n for n in m.graph.node if n.op_type == "ArgMax")
    keep, tail = [], False
    for node in m.graph.node:
        tail = tail or node is arg
        if not tail:
            keep.append(node)
    for node in keep:
        node.output[:] = ["logits" if o == arg.input[0] else o for o in node.output]
        node.input[:] = ["logits" if i == arg.input[0] else i for i in node.input]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    del m.graph.output[:]
    m.graph.output.append(onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None))
    onnx.save(m, str(dest))
    meta = meta_mod.read(labels_onnx)
    meta["output"] = dict(meta["output"], name="logits", kind="logits", dtype="float32")
    meta.pop(meta_mod.ARTIFACTS_KEY, None)
    meta_mod.write(dest, meta)
    return dest


# ---------------------------------------------------------------------------------------------
# The family check of tests/test_engine_adapt.py
# ---------------------------------------------------------------------------------------------

def _session(model: Any) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no re-fusion of rewrites
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _with_logits(model: Any) -> Any:
    """A labels graph that also outputs the logits its ArgMax reads (logits graphs unchanged)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    arg = next((n for n in m.graph.node if n.op_type == "ArgMax"), None)
    if arg is not None:
        m.graph.output.append(onnx.helper.make_tensor_value_info(arg.input[0], onnx.TensorProto.FLOAT, None))
    return m


def _outputs(model: Any, x: Any) -> Tuple[Any, Any]:
    """(labels, logits) of a labels or a logits graph."""
    outs = _session(_with_logits(model)).run(None, {"input": x})
    logits = outs[-1]
    labels = outs[0] if len(outs) == 2 else logits.argmax(1)
    return labels, logits


def check_family(family: str, dynamic: bool, tmp_path: Path, plan_all: Any) -> List[str]:
    """--save-onnx graphs of `family`'s labels and logits exports, for every version: each passes
    its version's contract and agrees with the export in ONNX Runtime (>= 99.9% labels, logits
    <= 1e-4). `plan_all(onnx, save)` runs `build_engine.py --plan-only` for every version.
    The unadapted exports fail the contract (what makes this test fail on graphs nobody adapts)."""
    import numpy as np
    import onnx

    from pvtseg import meta as meta_mod
    from pvtseg.engine import contract as C

    labels_onnx = family_export(family, dynamic)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)]
    if dynamic:
        inputs.append(rng.standard_normal((2, 3, 2 * SIZE, 2 * SIZE)).astype(np.float32))
    report = []
    for src, kind in ((labels_onnx, "labels"), (logits_twin(labels_onnx), "logits")):
        original = onnx.load(str(src))
        before = C.check_all(original)
        assert any(p.rule == "layernorm" for p in before["8.5"]), (family, kind)
        if kind == "labels":
            assert all(any(p.rule == "cast" for p in before[v]) for v in C.VERSIONS), (family, before)
        save = tmp_path / f"{family}_{kind}.onnx"
        plan_all(src, save)
        refs = [_outputs(original, x) for x in inputs]
        for v in C.VERSIONS:
            saved_path = save.with_name(f"{save.stem}.trt{v}.onnx")
            saved = onnx.load(str(saved_path))
            assert C.check(saved, v) == [], (family, kind, v, [str(p) for p in C.check(saved, v)])
            dtype = meta_mod.read(saved_path)["output"]["dtype"]
            for x, (ref_labels, ref_logits) in zip(inputs, refs):
                labels, logits = _outputs(saved, x)
                agree = float((labels.astype(np.int64) == ref_labels.astype(np.int64)).mean())
                diff = float(np.abs(logits - ref_logits).max())
                assert agree >= 0.999 and diff <= 1e-4, (family, kind, v, agree, diff)
                assert labels.dtype == np.dtype(dtype) or kind == "logits", (family, v, labels.dtype, dtype)
            report.append(f"{family} {kind} {'dynamic' if dynamic else 'static'} TensorRT {v}: "
                          f"labels {agree * 100:.2f}%, logits max diff {diff:.1e}, output {dtype}")
    return report


def adapt_for_every_tensorrt(family: str, dynamic: bool, tmp_path: Path, monkeypatch: Any,
                             capsys: Any) -> None:
    """`check_family` through `build_engine.py --plan-only --save-onnx` for every supported
    version, as on a machine without TensorRT (the import is patched to fail): each run exits 0
    and reports the contract passed for all five versions (tests/test_engine_adapt.py)."""
    from pvtseg.engine import builder
    from pvtseg.engine.cli import main as build_main
    from pvtseg.errors import EngineError

    def no_tensorrt() -> None:
        raise EngineError("TensorRT is not installed (test)")

    monkeypatch.setattr(builder, "import_tensorrt", no_tensorrt)

    def plan_all(onnx_path: Path, save: Path) -> None:
        rc = build_main(["--onnx", str(onnx_path), "--plan-only", "--save-onnx", str(save)])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert out.out.count("contract: the graph handed to the parser passes it") == 5, out.out

    for line in check_family(family, dynamic, tmp_path, plan_all):
        print(line)
