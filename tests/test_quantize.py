"""INT8 Q/DQ quantization (pvtseg.engine.quantize, `pvtseg quantize`, `pvtseg eval --onnx`).

Structure tests run on a tiny random-weight logits export with fixed ranges (no calibration
needed); references are the float graph itself, numpy (weight quantization) and ONNX Runtime.
The gate / CLI tests use the shipped CamVid weights exported at 128x160 and a few CamVid
frames with their real labels (skipped when ../shared/data/camvid is absent).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from _runtime_artifacts import CAMVID, cached_artifacts  # noqa: E402
from pvtseg import meta as meta_mod  # noqa: E402
from pvtseg.engine import quantize as Q  # noqa: E402
from pvtseg.errors import AccuracyGateError, QuantizationError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "camvid_pvt_v2_b0_segformer.pth"
FLOAT_OPS = ("LayerNormalization", "Softmax", "Erf", "Div", "Add", "Mul", "Resize", "Relu")


@pytest.fixture(scope="module")
def tiny():
    """(path, float model) of a random-weight pvt_v2_b0_segformer logits export at 64x96."""
    path = cached_artifacts("quant_tiny", output="logits", height=64, width=96, formats=("onnx",))["onnx"]
    return path, onnx.load(str(path))


def _quantize_fixed(model, policy):
    """Q/DQ model with every activation range = 4.0 (structure only, no calibration)."""
    choices = Q.choose_nodes(model, policy)
    amax = {t: 4.0 for c in choices for t in c.activations}
    return Q.insert_qdq(model, choices, amax), choices


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def _reads_dq(node, prod) -> bool:
    return any(t in prod and prod[t].op_type == "DequantizeLinear" for t in node.input)


def _init(model, name):
    return next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def test_default_policy_keeps_transformer_ops_float(tiny):
    path, model = tiny
    q, choices = _quantize_fixed(model, Q.get_policy("transformer-safe"))
    assert Q.check_qdq(q) == []
    onnx.checker.check_model(q)
    prod = _producers(q)
    float_nodes = [n for n in q.graph.node if n.op_type in FLOAT_OPS]
    assert float_nodes and not [n.name for n in float_nodes if _reads_dq(n, prod)]
    by = {n.name: n for n in q.graph.node}
    stem = by["/stages.0/patch_embed/proj/Conv"]
    assert stem.input[0] == "input"  # reads the image unquantized
    assert not _reads_dq(by["/head/linear_pred/Conv"], prod)
    attn = [n for n in q.graph.node if n.op_type == "MatMul" and "/attn/MatMul" in n.name]
    assert len(attn) == 16 and not any(_reads_dq(n, prod) for n in attn)
    reasons = {c.name: c.reason for c in choices if not c.quantize}
    assert "stem" in reasons[stem.name] and "classifier" in reasons["/head/linear_pred/Conv"]
    quantized = [c for c in choices if c.quantize]
    assert len(quantized) == Q.summarize(q)["int8_weighted_ops"] == 61


def test_quantized_ops_get_qdq_inputs_and_per_channel_int8_weights(tiny):
    _, model = tiny
    q, choices = _quantize_fixed(model, Q.get_policy("transformer-safe"))
    prod, by = _producers(q), {n.name: n for n in q.graph.node}
    float_inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    seen = set()
    for c in (c for c in choices if c.quantize):
        node = by[c.name]
        act_dq = prod[node.input[0]]
        assert act_dq.op_type == "DequantizeLinear" and prod[act_dq.input[0]].op_type == "QuantizeLinear"
        assert _init(q, act_dq.input[1]).size == 1 and _init(q, act_dq.input[2]).dtype == np.int8
        w_dq = prod[node.input[1]]
        axis = next(a.i for a in w_dq.attribute if a.name == "axis")
        w_q, scale, zp = (_init(q, t) for t in w_dq.input)
        w = float_inits[c.weight]
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        # the output-channel axis: Conv [O, I, kh, kw] and Gemm transB=1 [O, I] -> 0; MatMul [I, O] -> 1
        assert axis == (1 if node.op_type == "MatMul" or (node.op_type == "Gemm" and not trans_b) else 0)
        assert w_q.dtype == np.int8 and zp.dtype == np.int8 and not zp.any() and scale.shape == (w.shape[axis],)
        # independent reference: dequantized weights are within half a step of the float ones
        shape = [1] * w.ndim
        shape[axis] = -1
        s = scale.reshape(shape)
        assert np.all(np.abs(w_q.astype(np.float32) * s - w) <= s / 2 + 1e-7)
        per_channel_max = np.abs(np.moveaxis(w_q, axis, 0)).reshape(w.shape[axis], -1).max(1)
        assert np.all(per_channel_max == 127)  # each channel uses the full INT8 range
        seen.add((node.op_type, axis))
        if len(node.input) > 2 and node.input[2]:
            assert node.input[2] in float_inits  # bias stays float
    assert {("Conv", 0), ("MatMul", 1)} <= seen  # both weight layouts were checked


def test_float_readers_of_a_quantized_tensor_keep_the_original(tiny):
    _, model = tiny
    q, _ = _quantize_fixed(model, Q.get_policy("transformer-safe"))
    qd = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    float_readers = {n.name: list(n.input) for n in model.graph.node}
    for n in q.graph.node:
        if n.op_type not in Q.QUANTIZABLE_OP_TYPES and n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            assert list(n.input) == float_readers[n.name]
    assert len({n.input[0] for n in qd}) == len(qd)  # one shared pair per tensor


def test_exclude_and_presets_change_placement(tiny):
    _, model = tiny
    q, choices = _quantize_fixed(model, Q.get_policy("transformer-safe", ["Gemm", "/head/*"]))
    prod = _producers(q)
    assert not [n.name for n in q.graph.node if n.op_type == "Gemm" and _reads_dq(n, prod)]
    assert not [n.name for n in q.graph.node if n.name.startswith("/head/") and _reads_dq(n, prod)]
    assert any(c.quantize for c in choices)  # backbone convs still INT8
    assert {c.reason for c in choices if c.op_type == "Gemm"} == {"excluded by 'Gemm'"}
    q_all, _ = _quantize_fixed(model, Q.get_policy("all-weighted"))
    prod = _producers(q_all)
    attn = [n for n in q_all.graph.node if n.op_type == "MatMul" and "/attn/MatMul" in n.name]
    assert all(prod[t].op_type == "DequantizeLinear" for n in attn for t in n.input)
    stem = next(n for n in q_all.graph.node if n.name == "/stages.0/patch_embed/proj/Conv")
    assert prod[stem.input[0]].op_type == "DequantizeLinear"
    with pytest.raises(QuantizationError, match="matches no op type"):
        Q.choose_nodes(model, Q.get_policy("transformer-safe", ["Convv"]))
    with pytest.raises(QuantizationError, match="unknown quantization policy"):
        Q.get_policy("everything")


def test_calibrated_model_runs_in_onnxruntime_close_to_fp32(tiny, tmp_path):
    path, model = tiny
    rng = np.random.default_rng(0)
    batches = [rng.normal(0, 1, (1, 3, 64, 96)).astype(np.float32) for _ in range(4)]
    res = Q.quantize_model(model, batches, Q.get_policy("transformer-safe"), "minmax")
    out = Q.save_model(res.model, tmp_path / "q.onnx")
    x = batches[0]
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert 0 < rel < 0.1, rel  # INT8 changes the logits, but only a little
    rec = res.record()
    assert rec["method"] == "minmax" and rec["policy"]["name"] == "transformer-safe"
    assert rec["graph"]["int8_weighted_ops"] == 61 and len(rec["kept_float"]) == 18
    with pytest.raises(QuantizationError, match="already holds QuantizeLinear"):
        Q.load_float_model(out)


def test_checker_flags_what_tensorrt_refuses(tiny):
    _, model = tiny
    q, _ = _quantize_fixed(model, Q.get_policy("transformer-safe"))
    zp = next(t for t in q.graph.initializer if t.name.endswith("_qdq_zero_point"))
    zp.CopyFrom(onnx.numpy_helper.from_array(np.array(3, np.int8), zp.name))
    problems = Q.check_qdq(q)
    assert len(problems) == 2 and all("zero point must be INT8 zeros" in p for p in problems)  # its Q and DQ


def test_accuracy_gate_numbers():
    rec = Q.accuracy_gate(0.52, 0.515, max_drop=1.0)
    assert rec["drop_points"] == pytest.approx(0.5) and rec["passed"] and not rec["forced"]
    with pytest.raises(AccuracyGateError, match="1.50 points below"):
        Q.accuracy_gate(0.52, 0.505, max_drop=1.0)
    forced = Q.accuracy_gate(0.52, 0.505, max_drop=1.0, force=True)
    assert forced["forced"] and not forced["passed"]
    with pytest.raises(QuantizationError, match="no mIoU"):
        Q.accuracy_gate(math.nan, 0.5, max_drop=1.0)


# ---------------------------------------------------------------------------------------------
# shipped weights, real CamVid frames


@pytest.fixture(scope="module")
def camvid_setup(tmp_path_factory):
    """Shipped model at 128x160 + a tiny CamVid-layout folder (test/ = 8 labelled frames at
    240x180) + 6 train frames for calibration + one black frame."""
    if not SHIPPED.is_file() or not (CAMVID / "test" / "labels").is_dir():
        pytest.skip("needs models/camvid_pvt_v2_b0_segformer.pth and ../shared/data/camvid")
    from pvtseg.export.cli import main as export_main

    d = tmp_path_factory.mktemp("quant_camvid")
    assert export_main(["--model", "pvt_v2_b0_segformer", "--checkpoint", str(SHIPPED), "--sidecar",
                        str(SHIPPED.with_suffix(".json")), "--output", "logits", "--height", "128", "--width",
                        "160", "--formats", "onnx", "--no-verify", "--out", str(d / "b0")]) == 0
    test = d / "camvid" / "test"
    for sub in ("images", "labels"):
        (test / sub).mkdir(parents=True)
    for p in sorted((CAMVID / "test" / "images").glob("*.jpg"))[::29][:8]:
        lab = cv2.imread(str(CAMVID / "test" / "labels" / f"{p.stem}.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(test / "images" / f"{p.stem}.png"), cv2.resize(cv2.imread(str(p)), (240, 180),
                                                                         interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(test / "labels" / f"{p.stem}.png"), cv2.resize(lab, (240, 180),
                                                                         interpolation=cv2.INTER_NEAREST))
    calib = d / "calib"
    calib.mkdir()
    for p in sorted((CAMVID / "train" / "images").glob("*.jpg"))[::60][:6]:
        cv2.imwrite(str(calib / f"{p.stem}.png"), cv2.resize(cv2.imread(str(p)), (240, 180),
                                                             interpolation=cv2.INTER_AREA))
    black = d / "black"
    black.mkdir()
    cv2.imwrite(str(black / "black.png"), np.zeros((180, 240, 3), np.uint8))
    return {"onnx": d / "b0.onnx", "data": d / "camvid", "eval": test, "calib": calib, "black": black, "dir": d}


def test_gate_refuses_one_black_frame_calibration(camvid_setup):
    from pvtseg.apps.quantize import quantize

    s = camvid_setup
    out = s["dir"] / "black_int8.onnx"
    with pytest.raises(AccuracyGateError, match="nothing was written") as e:
        quantize(s["onnx"], s["black"], out, policy="all-weighted", eval_dir=s["eval"], max_drop=2.0,
                 threads=2, log=lambda m: None)
    acc = e.value.accuracy
    assert acc["fp32_miou"] > 30 and acc["drop_points"] > 2.0  # the black frame really hurts
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_cli_writes_int8_sidecar_and_eval_accepts_it(camvid_setup, capsys):
    from pvtseg.apps.cli import main as pvtseg_main

    s = camvid_setup
    out = s["dir"] / "b0_int8.onnx"
    rc = pvtseg_main(["quantize", "--onnx", str(s["onnx"]), "--calib", str(s["calib"]), "--calib-frames", "6",
                      "--eval", str(s["eval"]), "--max-drop", "2.0", "--threads", "2", "--out", str(out)])
    assert rc == 0 and out.is_file()
    side = meta_mod.read(out)
    qb = side["quantization"]
    assert side["precision"] == "int8" and qb["format"] == "qdq" and qb["method"] == "minmax"
    assert qb["policy"]["name"] == "transformer-safe"
    files = sorted(s["calib"].iterdir())
    want = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert qb["calibration"]["frames"] == 6 and qb["calibration"]["files"] == want
    acc = qb["accuracy"]
    assert acc["passed"] and acc["frames"] == 8 and acc["drop_points"] <= 2.0
    assert Q.check_qdq(onnx.load(str(out))) == []
    from pvtseg.apps.bench import _output_tag

    assert (_output_tag(s["onnx"]), _output_tag(out)) == ("logits/1", "logits/1 int8")  # two rows in `pvtseg bench`
    capsys.readouterr()
    rc = pvtseg_main(["eval", "--onnx", str(out), "--data", str(s["data"]), "--split", "test", "--no-cache",
                      "--threads", "2", "--out", str(s["dir"] / "ev")])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((s["dir"] / "ev" / "metrics.json").read_text())
    assert m["precision"] == "int8" and m["frames"] == 8
    assert 100 * m["miou"] == pytest.approx(acc["int8_miou"], abs=1e-3)  # the gate measured what eval measures
