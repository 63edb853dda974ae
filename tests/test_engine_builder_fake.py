"""engine/builder.py end to end against a fake `tensorrt` module (TensorRT cannot be installed
here), per version: the prepared graph is what the parser gets (and what --save-onnx writes),
builder-flag plans (8.5 .. 10.11) pin the FP32 layers, strongly typed plans (10.13, 11) make no
deprecated call (the fake records every use of an API deprecated or removed in that version),
INT8 builds only Q/DQ graphs, parser errors are all printed, and the engine + sidecar are
written (or nothing is)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from pvtseg import meta as meta_mod  # noqa: E402
from pvtseg.engine import builder as B  # noqa: E402
from pvtseg.engine.prepare import prepare_build  # noqa: E402
from pvtseg.errors import EngineError  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _engine_exports import family_export  # noqa: E402

_LAYER_TYPES = {"LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "ArgMax": "TOPK",
                "Conv": "CONVOLUTION", "MatMul": "MATRIX_MULTIPLY", "Gemm": "MATRIX_MULTIPLY",
                "Resize": "RESIZE", "Cast": "CAST", "ReduceMean": "REDUCE", "QuantizeLinear": "QUANTIZE",
                "DequantizeLinear": "DEQUANTIZE"}
# What NvInfer.h / the Python bindings deprecate (10.12+, 10.0+ for EXPLICIT_BATCH) or remove (11).
_DEPRECATED_10_12 = {"FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"}


class _Named:
    def __init__(self, name: str, value: int = 0):
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return self.name


class _Enum:
    """An enum namespace that records reads of deprecated members and lacks removed ones."""

    def __init__(self, values: dict, deprecated: set, calls: dict, where: str):
        self._values, self._deprecated, self._calls, self._where = values, deprecated, calls, where

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self._values:
            raise AttributeError(name)
        if name in self._deprecated:
            self._calls["deprecated"].append(f"{self._where}.{name}")
        return _Named(name, self._values[name])


class _State:
    """What one fake TensorRT records, and the version facts its classes act on."""

    def __init__(self, version: str, parse_errors: int):
        major, minor = (int(p) for p in version.split(".")[:2])
        self.major, self.strongly, self.parse_errors = major, (major, minor) >= (10, 12), parse_errors
        self.calls: dict = {"flags": [], "pinned": [], "profile": None, "network_flags": None, "parsed": None,
                            "deprecated": []}
        self.float32 = _Named("FLOAT")


class _Logger:
    VERBOSE, WARNING = 4, 2

    def __init__(self, severity: int):
        self.severity = severity


class _Tensor:
    def __init__(self, name: str, dtype: str, shape=()):
        self.name, self.dtype, self.shape = name, _Named(dtype), list(shape)


class _Layer:
    def __init__(self, st: _State, name: str, ltype: str, out_dtypes):
        self.st, self.name, self.type = st, name, _Named(ltype)
        self._outs = [_Tensor(f"{name}:{i}", d) for i, d in enumerate(out_dtypes)]
        self.num_outputs = len(self._outs)
        self._precision = None

    def get_output(self, i: int) -> _Tensor:
        return self._outs[i]

    def _weakly_typed_api(self, what: str) -> None:
        if self.st.major >= 11:
            raise AttributeError(f"{what} was removed in TensorRT 11")
        if self.st.strongly:
            self.st.calls["deprecated"].append(what)

    @property
    def precision(self):
        return self._precision

    @precision.setter
    def precision(self, value) -> None:
        self._weakly_typed_api("ILayer.precision")
        self._precision = value

    def set_output_type(self, i: int, dtype) -> None:
        self._weakly_typed_api("ILayer.set_output_type")
        self._outs[i].dtype = dtype


class _Network:
    def __init__(self, st: _State, flags: int):
        st.calls["network_flags"] = flags
        self.layers: list = []
        self.inputs: list = []

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, i: int) -> _Layer:
        return self.layers[i]

    def get_input(self, i: int) -> _Tensor:
        return self.inputs[i]


class _ParserError:
    def __init__(self, i: int):
        self.i = i

    def __str__(self) -> str:
        return f"fake error #{self.i} (node X)"


class _OnnxParser:
    def __init__(self, st: _State, network: _Network, logger: _Logger):
        self.st, self.network, self.num_errors = st, network, 0

    def parse(self, data: bytes, path: str) -> bool:
        self.st.calls["parsed"], self.st.calls["parse_path"] = bytes(data), path
        model = onnx.load_from_string(data)
        if self.st.parse_errors:
            self.num_errors = self.st.parse_errors
            return False
        inp = model.graph.input[0]
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
        self.network.inputs.append(_Tensor(inp.name, "FLOAT", dims))
        for n in model.graph.node:
            dt = ("UINT8",) if n.op_type == "Cast" else (("HALF", "INT32") if n.op_type == "ArgMax" else ("HALF",))
            self.network.layers.append(_Layer(self.st, n.name, _LAYER_TYPES.get(n.op_type, "ELEMENTWISE"), dt))
        return True

    def get_error(self, i: int) -> _ParserError:
        return _ParserError(i)


class _Profile:
    def __init__(self, st: _State):
        self.st = st

    def set_shape(self, name, mn, op, mx) -> None:
        self.st.calls["profile"] = (name, tuple(mn), tuple(op), tuple(mx))


class _TimingCache:
    def serialize(self) -> bytes:
        return b"cache"


class _Config:
    def __init__(self, st: _State):
        self.st = st

    def set_flag(self, flag) -> None:
        self.st.calls["flags"].append(flag.name)

    def set_memory_pool_limit(self, pool, size) -> None:
        self.st.calls["workspace"] = size

    def add_optimization_profile(self, p) -> int:
        return 0

    def create_timing_cache(self, blob: bytes) -> _TimingCache:
        return _TimingCache()

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        return True

    def get_timing_cache(self) -> _TimingCache:
        return _TimingCache()


class _Builder:
    num_DLA_cores = 0

    def __init__(self, st: _State, logger: _Logger):
        self.st = st

    def create_network(self, flags: int) -> _Network:
        return _Network(self.st, flags)

    def create_builder_config(self) -> _Config:
        return _Config(self.st)

    def create_optimization_profile(self) -> _Profile:
        return _Profile(self.st)

    def build_serialized_network(self, network: _Network, config: _Config):
        self.st.calls["pinned"] = [layer.name for layer in network.layers if layer.precision is self.st.float32]
        return memoryview(b"ENGINE")


def fake_trt(version: str, parse_errors: int = 0) -> types.ModuleType:
    st = _State(version, parse_errors)
    trt = types.ModuleType("tensorrt")
    trt.__version__, trt.calls, trt.float32 = version, st.calls, st.float32
    flags = {"FP16": 0, "INT8": 1, "GPU_FALLBACK": 3, "OBEY_PRECISION_CONSTRAINTS": 9,
             "PREFER_PRECISION_CONSTRAINTS": 10}
    if st.major >= 11:  # removed in 11 (pyCore.cpp v11.1)
        for name in _DEPRECATED_10_12:
            flags.pop(name)
    trt.BuilderFlag = _Enum(flags, _DEPRECATED_10_12 if st.strongly else set(), st.calls, "BuilderFlag")
    if st.major >= 11:
        net_flags, net_deprecated = {"STRONGLY_TYPED": 0}, {"STRONGLY_TYPED"}
    elif st.major == 10:
        net_flags, net_deprecated = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}, {"EXPLICIT_BATCH"}
    else:
        net_flags, net_deprecated = {"EXPLICIT_BATCH": 0}, set()
    trt.NetworkDefinitionCreationFlag = _Enum(net_flags, net_deprecated, st.calls, "NetworkDefinitionCreationFlag")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=_Named("WORKSPACE"))
    trt.DeviceType = types.SimpleNamespace(DLA=_Named("DLA"))
    trt.Dims = lambda shape: list(shape)
    trt.Logger = _Logger
    trt.Builder = lambda logger: _Builder(st, logger)
    trt.OnnxParser = lambda network, logger: _OnnxParser(st, network, logger)
    return trt


@pytest.fixture(scope="module")
def onnx_files():
    pytest.importorskip("onnxruntime")
    return family_export("pvt_v2"), family_export("pvt_v2", dynamic=True)


@pytest.fixture(scope="module")
def qdq_onnx(onnx_files, tmp_path_factory):
    """The static export quantized by ONNX Runtime (symmetric INT8, float bias) + an int8 sidecar."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    dest = tmp_path_factory.mktemp("qdq") / "m_int8.onnx"
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": rng.standard_normal((1, 3, 64, 64)).astype(np.float32)} for _ in range(2)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(onnx_files[0]), str(dest), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=["Conv", "MatMul"],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    meta = meta_mod.read(onnx_files[0])
    meta.pop(meta_mod.ARTIFACTS_KEY, None)
    meta_mod.write(dest, dict(meta, precision="int8"))
    return dest


@pytest.fixture
def with_trt(monkeypatch):
    def install(version: str, **kw):
        trt = fake_trt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(B, "gpu_info", lambda device=0: ("Fake Orin", "8.7", ""))
        return trt
    return install


@pytest.mark.parametrize("version", ["8.5.2", "8.6.2", "10.3.0"])
def test_fp16_builder_flag_pins_islands(tmp_path, onnx_files, with_trt, version):
    trt = with_trt(version)
    engine, saved = tmp_path / "m.engine", tmp_path / "parsed.onnx"
    logs: list = []
    meta = B.build_engine(onnx_files[0], engine, fp16=True, workspace_mb=256, timing_cache=str(tmp_path / "t.cache"),
                          save_onnx=saved, log=logs.append)
    c = trt.calls
    assert c["flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"] and c["workspace"] == 256 << 20
    assert c["network_flags"] == (1 if version.startswith("8.") else 0) and c["deprecated"] == []
    # The parser gets exactly the prepared (adapted) graph, which --save-onnx writes.
    assert c["parsed"] == prepare_build(onnx_files[0], version, fp16=True).model_bytes == saved.read_bytes()
    assert c["parse_path"] == str(onnx_files[0]) and c["profile"] is None
    pinned = " ".join(c["pinned"])
    ln = "pvtseg_ln/ReduceMean_var" if version == "8.5.2" else "LayerNormalization"
    assert ln in pinned and "Softmax" in pinned and "ArgMax" in pinned
    assert "Conv" not in pinned and "MatMul" not in pinned
    assert sum(p.endswith("/Resize") for p in c["pinned"]) == 1  # only the final upsample
    assert engine.read_bytes() == b"ENGINE" and (tmp_path / "t.cache").read_bytes() == b"cache"
    on_disk = meta_mod.read(engine)
    assert on_disk == meta
    assert (on_disk["precision"], on_disk["tensorrt_version"], on_disk["compute_capability"]) == ("fp16", version, "8.7")
    assert on_disk["fp16_mechanism"] == "builder_flag" and on_disk["class_names"][0] == "Sky"
    assert on_disk["output"]["dtype"] == ("int32" if version == "8.5.2" else "uint8")
    assert len(on_disk["tensorrt_build"]["adaptations"]) == (2 if version == "8.5.2" else 1)
    assert any("pinned to FP32" in ln for ln in logs) and any(ln.startswith("TensorRT ") for ln in logs)


@pytest.mark.parametrize("version,network_flags", [("10.13.0", 1 << 1), ("11.1.0", 0)])
def test_fp16_strongly_typed_makes_no_deprecated_call(tmp_path, onnx_files, with_trt, version, network_flags):
    trt = with_trt(version)
    engine = tmp_path / "m.engine"
    meta = B.build_engine(onnx_files[0], engine, fp16=True, log=lambda s: None)
    c = trt.calls
    assert c["network_flags"] == network_flags and c["flags"] == [] and c["pinned"] == []
    assert c["deprecated"] == [] and c["workspace"] == 1 << 30
    parsed = onnx.load_from_string(c["parsed"])
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in parsed.graph.initializer)
    assert parsed.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert meta["fp16_mechanism"] == "strongly_typed" and meta["precision"] == "fp16"
    assert meta["output"]["dtype"] == "uint8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.json"]


def test_fake_records_deprecated_api():
    """The fake is a real check: reading a deprecated flag on 10.13 is recorded, on 11 it is gone."""
    trt = fake_trt("10.13.0")
    assert trt.BuilderFlag.FP16.name == "FP16" and trt.calls["deprecated"] == ["BuilderFlag.FP16"]
    with pytest.raises(AttributeError):
        fake_trt("11.1.0").BuilderFlag.FP16


@pytest.mark.parametrize("version,flags,network_flags", [
    ("8.6.2", ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"], 1), ("10.3.0", ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"], 0),
    ("10.13.0", [], 1 << 1), ("11.1.0", [], 0)])
def test_int8_builds_qdq_graphs(tmp_path, qdq_onnx, with_trt, version, flags, network_flags):
    trt = with_trt(version)
    meta = B.build_engine(qdq_onnx, tmp_path / "q.engine", int8=True, log=lambda s: None)
    c = trt.calls
    assert (c["flags"], c["network_flags"], c["deprecated"]) == (flags, network_flags, [])
    assert meta["precision"] == "int8" and prepare_build(qdq_onnx, version, int8=True).plan.problems == []
    parsed = onnx.load_from_string(c["parsed"])
    assert sum(n.op_type == "QuantizeLinear" for n in parsed.graph.node) > 0


def test_int8_on_a_float_graph_is_refused(tmp_path, onnx_files, with_trt):
    with_trt("10.3.0")
    with pytest.raises(EngineError, match="pvtseg quantize"):
        B.build_engine(onnx_files[0], tmp_path / "m.engine", int8=True, log=lambda s: None)
    assert not list(tmp_path.iterdir())


def test_fp32_and_dynamic_profile(tmp_path, onnx_files, with_trt):
    trt = with_trt("10.3.0")
    meta = B.build_engine(onnx_files[1], tmp_path / "d.engine", log=lambda s: None)
    src = meta_mod.read(onnx_files[1])["input"]["dynamic"]
    name, mn, op, mx = trt.calls["profile"]
    assert name == "input" and op == (1, 3, 64, 64)
    assert mn == (src["batch"][0], 3, src["height"][0], src["width"][0])
    assert mx == (src["batch"][1], 3, src["height"][1], src["width"][1])
    assert trt.calls["flags"] == [] and meta["precision"] == "fp32"
    assert meta["input"]["dynamic"] == src


def test_parser_errors_all_printed_and_nothing_written(tmp_path, onnx_files, with_trt):
    with_trt("10.3.0", parse_errors=3)
    logs: list = []
    with pytest.raises(EngineError, match=r"rejected .*\(3 error"):
        B.build_engine(onnx_files[0], tmp_path / "m.engine", log=logs.append)
    assert [ln for ln in logs if "ONNX parser error" in ln] == [
        f"  ONNX parser error {i + 1}/3: fake error #{i} (node X)" for i in range(3)]
    assert not list(tmp_path.iterdir())


def test_no_gpu_and_dla(tmp_path, onnx_files, with_trt, monkeypatch):
    with_trt("8.5.2")
    monkeypatch.setattr(B, "gpu_info", lambda device=0: (None, None, "no NVIDIA driver (libcuda) found"))
    with pytest.raises(EngineError, match="no CUDA GPU.*libcuda"):
        B.build_engine(onnx_files[0], tmp_path / "m.engine", log=lambda s: None)
    with_trt("8.5.2")
    with pytest.raises(EngineError, match="DLA core"):
        B.build_engine(onnx_files[0], tmp_path / "m.engine", fp16=True, dla_core=0, log=lambda s: None)
    assert not list(tmp_path.iterdir())


def test_device_probe_without_gpu():
    from pvtseg.engine.device import gpu_info

    name, cc, why = gpu_info(0)
    assert (name is None) == (cc is None) and (name is not None or why)
