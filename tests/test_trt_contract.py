"""The per-version TensorRT parser contract (engine/contract.py), the exact rewrites that meet
it (engine/adapt.py) and `build_engine.py --plan-only / --save-onnx`, on CPU without TensorRT.

References: the onnx-tensorrt operator tables shipped in ../shared/data/tensorrt/ (re-parsed
here so the Python data cannot drift from them), ONNX Runtime (a rewritten graph must give the
same labels / logits as the original, with graph optimizations off so ORT cannot re-fuse the
rewrite), and ONNX Runtime's own quantizer for Q/DQ graphs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pvtseg import meta as meta_mod  # noqa: E402
from pvtseg.engine import contract as C  # noqa: E402
from pvtseg.engine.adapt import adapt, tensorrt_report  # noqa: E402
from pvtseg.engine.cli import main as build_main  # noqa: E402
from pvtseg.engine.fp16_onnx import island_node_names  # noqa: E402
from pvtseg.engine.prepare import prepare_build  # noqa: E402
from pvtseg.errors import EngineError, OperatorTableError  # noqa: E402
from pvtseg.engine.trt_ops import parse_operator_table  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _engine_exports import family_export, logits_twin  # noqa: E402

TABLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "tensorrt"


def _session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no re-fusion of rewrites
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


# ---------------------------------------------------------------------------------------------
# The data against the shipped onnx-tensorrt tables
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("table,ops,types,opset", [
    ("8.5", C.OPS_8_5, C.TYPES_8_5, (None, 17)), ("8.6", C.OPS_8_6, C.TYPES_8_6, (None, 17)),
    ("10.0", C.OPS_10_1, C.TYPES_10_1, (9, 20)), ("10.1", C.OPS_10_1, C.TYPES_10_1, (9, 20)),
])
def test_contract_data_matches_the_shipped_tables(table, ops, types, opset):
    path = TABLES / f"onnx-operators-trt{table}.md"
    if not path.is_file():
        pytest.skip(f"no {path} (../shared beside the repo)")
    text = path.read_text()
    parsed = parse_operator_table(text)
    assert {k for k, v in parsed.items() if v.supported} == ops
    for op, want in types.items():
        # The 10.x tables misspell ConstantOfShape's INT64 as INF64.
        got = {t.replace("INF64", "INT64") for t in parsed[op].types}
        assert got == set(want), (table, op, got, want)
    if opset[0] is None:
        assert f"up to Opset {opset[1]}" in text
    else:
        assert f"opset {opset[0]} to opset {opset[1]}" in text
    key = C.contract_key(table if table.startswith("8") else "10.3")
    assert C.CONTRACTS[key].opset[1] == opset[1]


def test_contract_versions_and_facts():
    assert [C.contract_key(v) for v in ("8.5.2.2", "8.6.2", "10.0.1", "10.3.0.30", "10.12.0", "10.13.2", "11.1.0")] \
        == ["8.5", "8.6", "10.3", "10.3", "10.3", "10.13", "11"]
    c85, c86, c11 = C.CONTRACTS["8.5"], C.CONTRACTS["8.6"], C.CONTRACTS["11"]
    assert "LayerNormalization" not in c85.ops and "LayerNormalization" in c86.ops
    assert "UINT8" not in c85.types["Cast"] and "UINT8" in c86.types["Cast"]
    assert (c85.argmax_dtype, c86.argmax_dtype, c11.argmax_dtype) == ("INT32", "INT32", "INT64")
    assert C.OPS_10_1 <= C.OPS_10_13 <= C.OPS_11 and "Swish" in C.OPS_11 and "Attention" not in C.OPS_10_13
    with pytest.raises(OperatorTableError, match="operators.md"):
        parse_operator_table("# not a table\nhello\n")


# ---------------------------------------------------------------------------------------------
# Rules on small graphs
# ---------------------------------------------------------------------------------------------

def _labels_graph(label_type=TensorProto.UINT8, cast=True):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 4, 6])
    nodes = [helper.make_node("ArgMax", ["x"], ["idx"], name="argmax", axis=1, keepdims=0)]
    if cast:
        nodes.append(helper.make_node("Cast", ["idx"], ["labels"], name="cast", to=label_type))
    out = helper.make_tensor_value_info("labels" if cast else "idx", label_type, [1, 4, 6])
    return _model(nodes, [x], [out])


@pytest.mark.parametrize("version", C.VERSIONS)
def test_argmax_to_uint8_is_a_problem_everywhere(version):
    problems = C.check(_labels_graph(), version)
    assert [p.rule for p in problems] == ["cast"] and problems[0].adaptable
    text = str(problems[0])
    assert ("not among TensorRT 8.5's Cast types" in text) if version == "8.5" else ("only from FLOAT or HALF" in text)
    assert C.check(_labels_graph(TensorProto.INT32), version) == []


def test_uint8_inside_the_network_and_from_integers():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    inner = _model([helper.make_node("Cast", ["x"], ["u"], name="to_u8", to=TensorProto.UINT8),
                    helper.make_node("Cast", ["u"], ["y"], name="back", to=TensorProto.FLOAT)], [x], [y])
    for v in ("8.6", "10.3", "11"):
        rules = [(p.node, p.adaptable) for p in C.check(inner, v)]
        assert rules == [("to_u8", False)], rules  # FLOAT -> UINT8 is fine, but not inside the network
    out_u8 = helper.make_tensor_value_info("u", TensorProto.UINT8, [2, 3])
    float_to_u8 = _model([helper.make_node("Cast", ["x"], ["u"], name="to_u8", to=TensorProto.UINT8)], [x], [out_u8])
    assert C.check(float_to_u8, "8.6") == [] and C.check(float_to_u8, "11") == []
    assert [p.rule for p in C.check(float_to_u8, "8.5")] == ["cast"]


def test_layernorm_and_int64_outputs_by_version():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])
    inits = [numpy_helper.from_array(np.ones(8, np.float32), "g"), numpy_helper.from_array(np.zeros(8, np.float32), "b")]
    ln = _model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln")], [x], [y], inits)
    assert [(p.rule, p.adaptable) for p in C.check(ln, "8.5")] == [("layernorm", True)]
    assert all(C.check(ln, v) == [] for v in ("8.6", "10.3", "10.13", "11"))
    ln2 = _model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y", "mean"], name="ln")], [x], [y], inits)
    assert any("only the first output" in str(p) for p in C.check(ln2, "10.13"))
    int64 = _labels_graph(TensorProto.INT64)
    assert [(p.rule, p.adaptable) for p in C.check(int64, "8.6")] == [("int64-output", True)]
    assert C.check(int64, "10.3") == []


def test_opset_axes_resize_and_domains():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    model = _model([helper.make_node("ReduceMean", ["x", "axes"], ["r"], name="rm"),
                    helper.make_node("Resize", ["r", "", "sc"], ["z"], name="rs", mode="cubic"),
                    helper.make_node("Col2Im", ["z", "s", "b"], ["w"], name="c2i"),
                    helper.make_node("Foo", ["w"], ["y"], name="foo", domain="com.example")],
                   [x, axes], [y], [numpy_helper.from_array(np.ones(4, np.float32), "sc")], opset=18)
    text = "\n".join(map(str, C.check(model, "8.6")))
    for want in ("opset 18 is outside 7..17", "'axes' must be a constant", "mode 'cubic'", "Col2Im (1 node, e.g. 'c2i') is not",
                 "custom domain 'com.example'"):
        assert want in text, (want, text)
    assert "opset" not in " ".join(p.rule for p in C.check(model, "10.3"))


# ---------------------------------------------------------------------------------------------
# Q/DQ graphs (ONNX Runtime's quantizer as an independent producer)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    d = tmp_path_factory.mktemp("qdq")
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B"),
             numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "W2")]
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "W2"], ["logits"], name="conv2")]
    f = _model(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
               [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    onnx.save(f, str(d / "f.onnx"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    out = {}
    for name, act, extra in (("int8", QuantType.QInt8, {"ActivationSymmetric": True}),
                             ("uint8", QuantType.QUInt8, {}),
                             ("int8_bias", QuantType.QInt8, {"ActivationSymmetric": True, "QuantizeBias": True})):
        extra = {"WeightSymmetric": True, "QuantizeBias": False, **extra}
        quantize_static(str(d / "f.onnx"), str(d / f"{name}.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=act, weight_type=QuantType.QInt8, per_channel=True, extra_options=extra)
        out[name] = onnx.load(str(d / f"{name}.onnx"))
    out["float"] = f
    return out


@pytest.mark.parametrize("version", C.VERSIONS)
def test_qdq_symmetric_int8_passes_and_others_do_not(qdq, version):
    assert C.is_quantized(qdq["int8"]) and not C.is_quantized(qdq["float"])
    assert C.check(qdq["int8"], version) == []
    uint8 = "\n".join(map(str, C.check(qdq["uint8"], version)))
    assert "zero point of type UINT8" in uint8 and "pvtseg quantize" in uint8
    bias = "\n".join(map(str, C.check(qdq["int8_bias"], version)))  # an INT32 bias DQ: not INT8
    assert "dequantizes INT32" in bias


def _edit_qdq(model, node_name, fn):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = next(n for n in m.graph.node if n.name == node_name)
    fn(m, node)
    return m


def test_qdq_rules_on_edited_graphs(qdq):
    good = qdq["int8"]
    weight_dq = next(n.name for n in good.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "W_quantized")
    act_q = next(n.name for n in good.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")

    def no_axis(m, n):
        del n.attribute[:]

    def no_zero_point(m, n):
        del n.input[2]

    def negative_scale(m, n):
        init = next(i for i in m.graph.initializer if i.name == n.input[1])
        init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))

    def per_channel_activation(m, n):
        m.graph.initializer.append(numpy_helper.from_array(np.full(3, 0.05, np.float32), "act_scales"))
        m.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.int8), "act_zps"))
        n.input[1], n.input[2] = "act_scales", "act_zps"
        n.attribute.append(helper.make_attribute("axis", 1))

    cases = [(weight_dq, no_axis, "8.6", "explicit 'axis'"), (act_q, no_zero_point, "8.5", "needs the zero-point"),
             (act_q, no_zero_point, "10.3", "ONNX quantizes to UINT8"), (act_q, negative_scale, "11", "positive"),
             (act_q, per_channel_activation, "10.13", "per-channel scales on an activation")]
    for name, fn, version, want in cases:
        text = "\n".join(map(str, C.check(_edit_qdq(good, name, fn), version)))
        assert want in text, (fn.__name__, version, text)


def test_int8_plans_and_float_refusal(qdq, tmp_path, capsys):
    src = tmp_path / "q.onnx"
    onnx.save(qdq["int8"], str(src))
    meta = meta_mod.make_meta(arch="tiny", num_classes=4, height=32, width=32, output_kind="logits",
                              output_dtype="float32", output_name="logits", precision="int8")
    meta["input"]["height"] = meta["input"]["width"] = 32
    flags = {}
    for v in ("8.5", "8.6", "10.3", "10.13.0", "11.1"):
        p = prepare_build(src, v, int8=True, meta=meta).plan
        flags[v] = (p.precision, p.mechanism, p.network_flags, p.builder_flags)
        assert p.problems == []
    assert flags["8.5"] == ("int8", "builder_flag", ["EXPLICIT_BATCH"], ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"])
    assert flags["10.3"] == ("int8", "builder_flag", [], ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"])
    assert flags["10.13.0"] == ("int8", "strongly_typed", ["STRONGLY_TYPED"], [])
    assert flags["11.1"] == ("int8", "strongly_typed", [], [])
    # A Q/DQ graph builds INT8 without --int8 too.
    assert prepare_build(src, "10.3", meta=meta).plan.precision == "int8"
    fsrc = tmp_path / "f.onnx"
    onnx.save(qdq["float"], str(fsrc))
    with pytest.raises(EngineError, match=r"pvtseg quantize --onnx .*f\.onnx"):
        prepare_build(fsrc, "10.3", int8=True, meta=meta)
    meta_mod.write(fsrc, meta)
    rc = build_main(["--onnx", str(fsrc), "--int8", "--plan-only", "--trt-version", "8.6"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pvtseg quantize" in err[0]


# ---------------------------------------------------------------------------------------------
# Exact rewrites
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis,opset,bias", [(-1, 17, True), (-2, 17, True), (2, 17, False), (-1, 18, True)])
def test_layernorm_decomposition_is_exact_and_fp32(axis, opset, bias):
    rng = np.random.default_rng(1)
    shape = [2, 5, 6, 8]
    norm = shape[axis:]
    inits = [numpy_helper.from_array(rng.standard_normal(norm).astype(np.float32), "gamma")]
    inputs = ["x", "gamma"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(norm).astype(np.float32), "beta"))
        inputs.append("beta")
    ln = helper.make_node("LayerNormalization", inputs, ["y"], name="blk/norm", axis=axis, epsilon=1e-6)
    model = _model([ln], [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits, opset=opset)
    a = adapt(model, "8.5")
    # (8.5 parses opsets <= 17; the opset-18 case checks that the rewrite follows the graph's opset.)
    assert [p.rule for p in a.problems] == (["opset"] if opset > 17 else [])
    assert "LayerNormalization" not in {n.op_type for n in a.model.graph.node}
    assert [n.op_type for n in a.model.graph.node] == ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div",
                                                     "Mul"] + (["Add"] if bias else [])
    names = {n.name for n in a.model.graph.node}
    assert all(n.startswith("blk/norm/pvtseg_ln/") for n in names) and names == a.fp32_nodes
    assert names <= island_node_names(a.model)  # the FP16 policy pins the whole norm
    x = (rng.standard_normal(shape) * 300 + 50).astype(np.float32)  # a variance FP16 cannot hold
    ref = _session(model).run(None, {"x": x})[0]
    got = _session(a.model).run(None, {"x": x})[0]
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert adapt(model, "8.6").changes == []  # LayerNormalization imports from 8.6 on


def test_label_rewrites_are_exact_and_recorded():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 5, 4, 6)).astype(np.float32)
    ref = x.argmax(1)
    for version, label_type, want_type, want_changes in [
        ("8.5", TensorProto.UINT8, np.int32, 1), ("8.6", TensorProto.UINT8, np.uint8, 1),
        ("11", TensorProto.UINT8, np.uint8, 1), ("8.6", TensorProto.INT64, np.int32, 1),
        ("10.3", TensorProto.INT64, np.int64, 0), ("8.5", TensorProto.INT32, np.int32, 0),
    ]:
        a = adapt(_labels_graph(label_type), version)
        assert a.problems == [] and len(a.changes) == want_changes, (version, a.changes)
        out = _session(a.model).run(None, {"x": x})[0]
        assert out.dtype == want_type and (out == ref).all(), version
        changed = want_type != {TensorProto.UINT8: np.uint8, TensorProto.INT64: np.int64,
                                TensorProto.INT32: np.int32}[label_type]
        assert a.output_dtypes == ({"labels": "int32"} if changed else {})
    # ArgMax straight to an INT64 output (no Cast) gets one on 8.x.
    a = adapt(_labels_graph(TensorProto.INT64, cast=False), "8.5")
    assert a.output_dtypes == {"idx": "int32"} and (_session(a.model).run(None, {"x": x})[0] == ref).all()


# ---------------------------------------------------------------------------------------------
# An exported model through --plan-only / --save-onnx
# ---------------------------------------------------------------------------------------------

def test_logits_twin_is_the_logits_export(tmp_path):
    """_engine_exports.logits_twin (used by the family tests) equals a real --output logits export."""
    import torch

    from pvtseg.export import export_model
    from pvtseg.models import create_model

    torch.manual_seed(0)
    model = create_model("pvt_v2_b0_segformer", num_classes=11, depths=(1, 1, 1, 1)).eval()
    real = export_model(model, tmp_path / "logits", height=64, width=64, formats=("onnx",), output="logits",
                        verify=False, trt_check=False, log=lambda *a: None)["onnx"]
    twin = logits_twin(family_export("pvt_v2"))
    ops = [sorted(n.op_type for n in onnx.load(str(p)).graph.node) for p in (real, twin)]
    assert ops[0] == ops[1]
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    a, b = (_session(onnx.load(str(p))).run(None, {"input": x})[0] for p in (real, twin))
    assert np.abs(a - b).max() <= 1e-5
    assert meta_mod.read(twin)["output"] == dict(meta_mod.read(real)["output"])


def _run(capsys, *args):
    rc = build_main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_plan_only_every_version_without_tensorrt(tmp_path, capsys, monkeypatch):
    from pvtseg.engine import builder

    monkeypatch.setattr(builder, "import_tensorrt", lambda: (_ for _ in ()).throw(EngineError("no TensorRT")))
    src = family_export("pvt_v2")
    rc, out, err = _run(capsys, "--onnx", src, "--fp16", "--plan-only", "--save-onnx", tmp_path / "y.onnx")
    assert rc == 0, err
    heads = re.findall(r"^TensorRT (\S+) \(parser contract (\S+):", out, re.M)
    assert [h[1] for h in heads] == list(C.VERSIONS)
    blocks = re.split(r"^(?=TensorRT \S+ \(parser)", out, flags=re.M)[1:]
    for block, version in zip(blocks, C.VERSIONS):
        saved = tmp_path / f"y.trt{version}.onnx"
        assert f"saved: {saved}" in block
        # Exactly the graph the builder hands to the parser.
        assert saved.read_bytes() == prepare_build(src, version if version != "11" else "11.0", fp16=True).model_bytes
        fp32 = re.findall(r"^    - (\S+)$", block.split("FP32 layers")[1], re.M)
        assert "/ArgMax" in fp32 and any("Softmax" in n for n in fp32)
        assert "contract: the graph handed to the parser passes it" in block
    assert "mechanism: builder_flag" in blocks[0] and "FP16, OBEY_PRECISION_CONSTRAINTS" in blocks[2]
    assert "network flags: STRONGLY_TYPED" in blocks[3] and "builder flags: -" in blocks[3]
    assert "network flags: -" in blocks[4] and "builder flags: -" in blocks[4]
    assert "pvtseg_ln/ReduceMean_mean" in blocks[0] and "output labels: labels int32" in blocks[0]
    assert meta_mod.read(tmp_path / "y.trt8.5.onnx")["output"]["dtype"] == "int32"
    # Strongly typed FP16: the saved graph is FP16 with FP32 islands and still labels like FP32.
    half = onnx.load(str(tmp_path / "y.trt10.13.onnx"))
    assert any(i.data_type == TensorProto.FLOAT16 for i in half.graph.initializer)
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref = _session(onnx.load(str(src))).run(None, {"input": x})[0]
    assert (_session(half).run(None, {"input": x})[0] == ref).mean() >= 0.99


def test_export_logs_the_contract_per_version():
    lines = tensorrt_report(onnx.load(str(family_export("pvt_v2"))))
    assert lines[0] == ("info", "TensorRT parser contract: as exported -; after build_engine.py adapts it "
                                "8.5, 8.6, 10.3, 10.13, 11; not buildable -")
    assert any("TensorRT 8.5" in ln and "LayerNormalization decomposed" in ln for _, ln in lines)
