"""Engine build plans for TensorRT 8.5 / 8.6 / 10.x / 11.x (fake version strings, no TensorRT),
and bad inputs to `pvtseg build-engine`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pvtseg import meta as meta_mod
from pvtseg.engine import plan as P
from pvtseg.engine.cli import main as build_main
from pvtseg.errors import EngineError


# ---------------------------------------------------------------------------------------------
# Versions and mechanisms
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("8.5.2.2", (8, 5, 2, 2)), ("8.6.2", (8, 6, 2, 0)), ("10.3.0.30", (10, 3, 0, 30)),
    ("11.0.0", (11, 0, 0, 0)), ("10.13", (10, 13, 0, 0)), (" 10.3.0.26+cuda12.6 ", (10, 3, 0, 26)),
])
def test_parse_version(text, want):
    v = P.parse_trt_version(text)
    assert (v.major, v.minor, v.patch, v.build) == want


@pytest.mark.parametrize("text", ["", "ten", "10", "x.y.z", None])
def test_parse_version_bad(text):
    with pytest.raises(EngineError, match="cannot parse TensorRT version"):
        P.parse_trt_version(text)


@pytest.mark.parametrize("text,msg", [("8.4.3", "JetPack 5.1"), ("7.1.3", "JetPack 5.1"), ("12.0.0", "newer")])
def test_unsupported_versions(text, msg):
    with pytest.raises(EngineError, match=msg):
        P.make_plan(text, fp16=True)


@pytest.mark.parametrize("version,mech", [("8.5.2", P.FP16_BUILDER_FLAG), ("8.6.2", P.FP16_BUILDER_FLAG),
                                          ("10.3.0", P.FP16_BUILDER_FLAG), ("10.11.0", P.FP16_BUILDER_FLAG),
                                          ("10.12.0", P.FP16_STRONGLY_TYPED), ("10.13.0.35", P.FP16_STRONGLY_TYPED),
                                          ("11.0.0", P.FP16_STRONGLY_TYPED), ("11.2.1", P.FP16_STRONGLY_TYPED)])
def test_fp16_mechanism_by_version(version, mech):
    assert P.fp16_mechanism(P.parse_trt_version(version)) == mech


def test_plan_trt86_fp16():
    plan = P.make_plan("8.6.2", fp16=True, workspace_mb=1024)
    assert plan.network_flags == ["EXPLICIT_BATCH"]
    assert plan.builder_flags == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert plan.pin_fp32_layers and not plan.convert_onnx_to_fp16
    assert plan.workspace_bytes == 1024 << 20 and plan.precision == "fp16"


def test_plan_default_workspace_fits_an_orin_nano():
    assert P.make_plan("8.5.2.2", fp16=True).workspace_bytes == P.DEFAULT_WORKSPACE_MB << 20 == 1 << 30
    assert P.make_plan("10.3.0", workspace_mb=3000).workspace_bytes == 3000 << 20


def test_plan_trt10_fp16():
    plan = P.make_plan("10.3.0", fp16=True)
    assert plan.network_flags == []  # explicit batch is implicit from 10.0
    assert plan.builder_flags == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert plan.pin_fp32_layers and not plan.convert_onnx_to_fp16


@pytest.mark.parametrize("version,network", [("10.13.0", ["STRONGLY_TYPED"]), ("11.0.0", [])])
def test_plan_strongly_typed_fp16_and_int8(version, network):
    # 11.x networks are always strongly typed (the flag is deprecated and ignored there).
    plan = P.make_plan(version, fp16=True)
    assert plan.network_flags == network and plan.builder_flags == []
    assert plan.convert_onnx_to_fp16 and not plan.pin_fp32_layers
    plan = P.make_plan(version, int8=True)
    assert (plan.precision, plan.network_flags, plan.builder_flags) == ("int8", network, [])
    assert not plan.convert_onnx_to_fp16 and not plan.pin_fp32_layers


@pytest.mark.parametrize("version", ["8.5.2", "8.6.2", "10.3.0", "10.11.0"])
def test_plan_int8_builder_flags(version):
    plan = P.make_plan(version, int8=True, fp16=True)
    assert plan.precision == "int8" and plan.builder_flags == ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert plan.pin_fp32_layers and not plan.convert_onnx_to_fp16


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0", "11.0.0"])
def test_plan_fp32(version):
    plan = P.make_plan(version)
    assert plan.precision == "fp32" and plan.fp16_mechanism is None
    assert plan.builder_flags == [] and not plan.convert_onnx_to_fp16 and not plan.pin_fp32_layers


def test_plan_dla_and_workspace_checks():
    plan = P.make_plan("8.5.2", fp16=True, dla_core=0)
    assert plan.dla_core == 0 and "GPU_FALLBACK" in plan.builder_flags
    with pytest.raises(EngineError, match="--fp16"):
        P.make_plan("10.3.0", dla_core=1)
    with pytest.raises(EngineError, match="dla-core"):
        P.make_plan("10.3.0", fp16=True, dla_core=-1)
    with pytest.raises(EngineError, match="workspace"):
        P.make_plan("10.3.0", workspace_mb=0)


def test_plan_flag_names_exist_in_tensorrt_stubs():
    """Every flag a plan names exists in TensorRT's Python API (checked against tensorrt-stubs)."""
    import importlib.metadata as md

    try:
        files = md.distribution("tensorrt-stubs").files or []
    except md.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    stub = next(f for f in files if str(f).endswith("tensorrt_bindings/tensorrt.pyi"))
    text = stub.locate().read_text()
    names = set()
    for v in ("8.6.2", "10.3.0", "10.13.0", "11.0.0"):
        for kw in ({"fp16": True}, {"int8": True}):
            plan = P.make_plan(v, dla_core=0, **kw)
            names |= {("NetworkDefinitionCreationFlag", f) for f in plan.network_flags}
            names |= {("BuilderFlag", f) for f in plan.builder_flags}
    for enum, flag in names:
        assert f"{flag}: typing.ClassVar[{enum}]" in text, (enum, flag)
    for t in P.FP32_LAYER_TYPES:
        assert f"{t}: typing.ClassVar[LayerType]" in text, t


# ---------------------------------------------------------------------------------------------
# FP32 layers
# ---------------------------------------------------------------------------------------------

def test_select_fp32_layers():
    L = P.LayerInfo
    layers = [
        L("/stages.0/patch_embed/proj/Conv", "CONVOLUTION"),
        L("/stages.0/patch_embed/norm/LayerNormalization", "NORMALIZATION"),
        L("/stages.0/blocks.0/attn/Softmax", "SOFTMAX"),
        L("/stages.0/blocks.0/attn/MatMul", "MATRIX_MULTIPLY"),
        L("/head/Resize_final", "RESIZE"),               # named after an island node + suffix
        L("/Resize", "RESIZE"),                           # the final upsample (island by name)
        L("/ArgMax", "TOPK", ("HALF", "INT32")),
        L("/Cast", "CAST", ("UINT8",)),                   # integer output: never pinned
        L("/stages.1/norm/ReduceMean_1", "REDUCE"),
        L("(Unnamed Layer* 12) [Shape]", "SHAPE", ("INT64",)),
        L("ln_decomposed_sub_3", "ELEMENTWISE"),          # TensorRT 8.5's LayerNorm pieces
    ]
    islands = {"/Resize", "/head/Resize", "/ArgMax", "ln_decomposed_sub"}
    chosen = [layers[i].name for i in P.select_fp32_layers(layers, islands)]
    assert chosen == ["/stages.0/patch_embed/norm/LayerNormalization", "/stages.0/blocks.0/attn/Softmax",
                      "/head/Resize_final", "/Resize", "/ArgMax", "/stages.1/norm/ReduceMean_1",
                      "ln_decomposed_sub_3"]


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------

META_DYN = {"input": {"height": 384, "width": 480,
                      "dynamic": {"batch": [1, 4], "height": [192, 768], "width": [256, 960]}}}


def test_profile_static_is_none():
    assert P.make_profile("input", [1, 3, 384, 480]) is None
    assert P.make_profile("input", [1, 3, 384, 480], min_shape="1x3x384x480", opt_shape="1x3x384x480",
                          max_shape="1x3x384x480") is None
    with pytest.raises(EngineError, match="static"):
        P.make_profile("input", [1, 3, 384, 480], min_shape="1x3x256x320", opt_shape="1x3x384x480",
                       max_shape="1x3x512x640")


def test_profile_from_sidecar():
    p = P.make_profile("input", [None, 3, None, None], meta=META_DYN)
    assert p == P.ShapeProfile("input", (1, 3, 192, 256), (1, 3, 384, 480), (4, 3, 768, 960))
    # A dim that is static in the graph stays fixed.
    p = P.make_profile("input", [1, 3, None, None], meta=META_DYN)
    assert p.min[0] == p.max[0] == 1


def test_profile_from_args():
    p = P.make_profile("input", ["batch", 3, "height", "width"], min_shape="1x3x256x320",
                       opt_shape="input:2x3x384x480", max_shape="4x3x512x640")
    assert (p.min, p.opt, p.max) == ((1, 3, 256, 320), (2, 3, 384, 480), (4, 3, 512, 640))


@pytest.mark.parametrize("mn,op,mx,msg", [
    ("1x3x256x320", None, None, "all three"),
    ("1x3x250x320", "1x3x384x480", "1x3x512x640", "multiples of 32"),
    ("1x3x512x640", "1x3x384x480", "1x3x512x640", "min <= opt <= max"),
    ("1x1x256x320", "1x3x384x480", "1x3x512x640", "3 \\(RGB\\)"),
    ("1x3x256", "1x3x384x480", "1x3x512x640", "NxCxHxW"),
    ("1x3xAx320", "1x3x384x480", "1x3x512x640", "NxCxHxW"),
    ("other:1x3x256x320", "1x3x384x480", "1x3x512x640", "names input"),
])
def test_profile_bad(mn, op, mx, msg):
    with pytest.raises(EngineError, match=msg):
        P.make_profile("input", [None, 3, None, None], min_shape=mn, opt_shape=op, max_shape=mx)


def test_profile_dynamic_without_ranges():
    with pytest.raises(EngineError, match="--min/--opt/--max"):
        P.make_profile("input", [None, 3, None, None], meta={"input": {"dynamic": None}})


# ---------------------------------------------------------------------------------------------
# CLI bad inputs
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_onnx():
    """A small exported model (static and dynamic) with sidecars (shared with the other engine tests)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    sys.path.insert(0, str(Path(__file__).parent))
    from _engine_exports import family_export

    return family_export("pvt_v2"), family_export("pvt_v2", dynamic=True)


def _run(capsys, *args):
    rc = build_main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pvtseg build-engine: error: ")
    return lines[0]


def test_cli_missing_onnx(tmp_path, capsys):
    rc, _, err = _run(capsys, "--onnx", tmp_path / "nope.onnx")
    assert rc == 2 and "does not exist" in _one_error_line(err) and "pvtseg export" in err


def test_cli_not_onnx(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not a model\n")
    rc, _, err = _run(capsys, "--onnx", bad)
    assert rc == 2 and "not an ONNX model" in _one_error_line(err)
    rc, _, err = _run(capsys, "--onnx", tmp_path)
    assert rc == 2 and "not a file" in _one_error_line(err)
    txt = tmp_path / "model.txt"
    txt.write_bytes(b"\x08\x07")
    rc, _, err = _run(capsys, "--onnx", txt)
    assert rc == 2 and ".onnx" in _one_error_line(err)


def test_cli_truncated_onnx(tmp_path, capsys, tiny_onnx):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny_onnx[0].read_bytes()[:5000])
    rc, _, err = _run(capsys, "--onnx", cut)
    assert rc == 2 and "not a readable ONNX model" in _one_error_line(err)


def test_cli_no_sidecar(tmp_path, capsys, tiny_onnx):
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(tiny_onnx[0].read_bytes())
    rc, _, err = _run(capsys, "--onnx", lone)
    assert rc == 2 and "no sidecar" in _one_error_line(err)


def test_cli_no_tensorrt_one_line(capsys, tiny_onnx, tmp_path, monkeypatch):
    spec_ok = importlib.util.find_spec("tensorrt") is not None
    if spec_ok:
        import tensorrt

        if hasattr(tensorrt, "Builder"):
            pytest.skip("a real TensorRT is installed here")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    rc, _, err = _run(capsys, "--onnx", tiny_onnx[0], "--engine", tmp_path / "x.engine")
    line = _one_error_line(err)
    assert rc == 2 and "TensorRT is not installed" in line and "pip install tensorrt" in line
    assert not (tmp_path / "x.engine").exists()


def test_cli_stubs_only_tensorrt_is_not_tensorrt(capsys, tiny_onnx, tmp_path, monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # like the stubs' namespace pkg
    rc, _, err = _run(capsys, "--onnx", tiny_onnx[0], "--engine", tmp_path / "x.engine")
    assert rc == 2 and "type stubs only" in _one_error_line(err)


@pytest.mark.parametrize("args,msg", [
    (["--engine", "x.plan"], ".engine suffix"),
    (["--dla-core", "0"], "--fp16"),
    (["--workspace", "-5"], "workspace"),
    (["--min", "1x3x64x64"], "all three"),
    (["--trt-version", "10.3"], "--plan-only"),
    (["--plan-only", "--trt-version", "8.4.1"], "not supported"),
    (["--plan-only", "--trt-version", "12.1"], "newer"),
    (["--plan-only", "--trt-version", "banana"], "cannot parse"),
])
def test_cli_bad_options(capsys, tiny_onnx, args, msg):
    rc, _, err = _run(capsys, "--onnx", tiny_onnx[0], *args)
    assert rc == 2 and msg in _one_error_line(err)


@pytest.mark.parametrize("args,msg", [
    (["--min", "1x3x60x64", "--opt", "1x3x64x64", "--max", "1x3x128x128"], "multiples of 32"),
    (["--min", "1x3x64x64", "--opt", "1x3x32x64", "--max", "1x3x128x128"], "min <= opt <= max"),
    (["--min", "1x3x64", "--opt", "1x3x64x64", "--max", "1x3x128x128"], "NxCxHxW"),
])
def test_cli_bad_shapes(capsys, tiny_onnx, args, msg):
    rc, _, err = _run(capsys, "--onnx", tiny_onnx[1], "--plan-only", "--trt-version", "10.3", *args)
    assert rc == 2 and msg in _one_error_line(err)


@pytest.mark.parametrize("version,expect", [
    ("8.5.2", ["EXPLICIT_BATCH", "FP16, OBEY_PRECISION_CONSTRAINTS", "pvtseg_ln/Pow", "uint8 -> int32"]),
    ("8.6.2", ["EXPLICIT_BATCH", "FP16, OBEY_PRECISION_CONSTRAINTS", "FP32 layers", "Cast(FLOAT) -> Cast(UINT8)"]),
    ("10.3.0", ["network flags: -", "FP16, OBEY_PRECISION_CONSTRAINTS"]),
    ("10.13.0", ["network flags: STRONGLY_TYPED", "builder flags: -", "strongly_typed", "explicit Casts"]),
    ("11.0.0", ["network flags: -", "builder flags: -", "strongly_typed"]),
])
def test_cli_plan_only(capsys, tiny_onnx, version, expect):
    rc, out, err = _run(capsys, "--onnx", tiny_onnx[1], "--fp16", "--plan-only", "--trt-version", version)
    assert rc == 0, err
    for e in expect:
        assert e in out, out
    # Dynamic ONNX: the profile comes from the sidecar's ranges with opt at the export size.
    meta = meta_mod.read(tiny_onnx[1])
    b, h, w = (meta["input"]["dynamic"][k] for k in ("batch", "height", "width"))
    assert f"min {b[0]}x3x{h[0]}x{w[0]} opt 1x3x64x64 max {b[1]}x3x{h[1]}x{w[1]}" in out
