"""engine/builder.py end to end against a fake `tensorrt` module (TensorRT cannot be installed
here): the plan reaches the right API calls for 8.6 / 10.x / 11.x, FP32 layers get pinned,
parser errors are all printed, and the engine + sidecar are written (or nothing is)."""

from __future__ import annotations

import sys
import types

import pytest

onnx = pytest.importorskip("onnx")

from pvtseg import meta as meta_mod  # noqa: E402
from pvtseg.engine import builder as B  # noqa: E402
from pvtseg.errors import EngineError  # noqa: E402

_LAYER_TYPES = {"LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "ArgMax": "TOPK",
                "Conv": "CONVOLUTION", "MatMul": "MATRIX_MULTIPLY", "Gemm": "MATRIX_MULTIPLY",
                "Resize": "RESIZE", "Cast": "CAST", "ReduceMean": "REDUCE"}


class _Named:
    def __init__(self, name: str, value: int = 0):
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return self.name


def fake_trt(version: str, parse_errors: int = 0) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: dict = {"flags": [], "pinned": [], "profile": None, "network_flags": None, "parsed_fp16": None}
    trt.calls = calls
    trt.float32 = _Named("FLOAT")
    major = int(version.split(".")[0])

    class Logger:
        VERBOSE, WARNING = 4, 2

        def __init__(self, severity: int):
            self.severity = severity

    class Tensor:
        def __init__(self, name: str, dtype: str, shape=()):
            self.name, self.dtype, self.shape = name, _Named(dtype), list(shape)

    class Layer:
        def __init__(self, name: str, ltype: str, out_dtypes):
            self.name, self.type = name, _Named(ltype)
            self._outs = [Tensor(f"{name}:{i}", d) for i, d in enumerate(out_dtypes)]
            self.num_outputs = len(self._outs)
            self.precision = None

        def get_output(self, i: int) -> Tensor:
            return self._outs[i]

        def set_output_type(self, i: int, dtype) -> None:
            self._outs[i].dtype = dtype

    class Network:
        def __init__(self, flags: int):
            calls["network_flags"] = flags
            self.layers: list = []
            self.inputs: list = []

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, i: int) -> Layer:
            return self.layers[i]

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

    class ParserError:
        def __init__(self, i: int):
            self.i = i

        def __str__(self) -> str:
            return f"fake error #{self.i} (node X)"

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger):
            self.network, self.num_errors = network, 0

        def parse(self, data: bytes, path: str) -> bool:
            model = onnx.load_from_string(data)
            calls["parsed_fp16"] = any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
            if parse_errors:
                self.num_errors = parse_errors
                return False
            inp = model.graph.input[0]
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
            self.network.inputs.append(Tensor(inp.name, "FLOAT", dims))
            for n in model.graph.node:
                dt = ("UINT8",) if n.op_type == "Cast" else (("HALF", "INT32") if n.op_type == "ArgMax" else ("HALF",))
                self.network.layers.append(Layer(n.name, _LAYER_TYPES.get(n.op_type, "ELEMENTWISE"), dt))
            return True

        def get_error(self, i: int) -> ParserError:
            return ParserError(i)

    class Profile:
        def set_shape(self, name, mn, op, mx) -> None:
            calls["profile"] = (name, tuple(mn), tuple(op), tuple(mx))

    class TimingCache:
        def serialize(self) -> bytes:
            return b"cache"

    class Config:
        def set_flag(self, flag) -> None:
            calls["flags"].append(flag.name)

        def set_memory_pool_limit(self, pool, size) -> None:
            calls["workspace"] = size

        def add_optimization_profile(self, p) -> int:
            return 0

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> TimingCache:
            return TimingCache()

    class Builder:
        num_DLA_cores = 0

        def __init__(self, logger: Logger):
            pass

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config):
            calls["pinned"] = [layer.name for layer in network.layers if layer.precision is trt.float32]
            return memoryview(b"ENGINE")

    flags = {"FP16": 1, "OBEY_PRECISION_CONSTRAINTS": 2, "GPU_FALLBACK": 3}
    if major >= 11:
        flags.pop("FP16")  # TensorRT 11 removed the weakly typed flags
    trt.BuilderFlag = types.SimpleNamespace(**{k: _Named(k, v) for k, v in flags.items()})
    net_flags = {"STRONGLY_TYPED": 1} if major >= 11 else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**{k: _Named(k, v) for k, v in net_flags.items()})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=_Named("WORKSPACE"))
    trt.DeviceType = types.SimpleNamespace(DLA=_Named("DLA"))
    trt.Dims = lambda shape: list(shape)
    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from pvtseg.export import export_model
    from pvtseg.models import create_model

    d = tmp_path_factory.mktemp("fake_trt")
    model = create_model("pvt_v2_b0_segformer", num_classes=11, depths=(1, 1, 1, 1))
    kw = dict(height=64, width=64, formats=("onnx",), verify=False, log=lambda s: None)
    return (export_model(model, d / "static", **kw)["onnx"],
            export_model(model, d / "dyn", dynamic=True, **kw)["onnx"])


@pytest.fixture
def with_trt(monkeypatch):
    def install(version: str, **kw):
        trt = fake_trt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(B, "gpu_info", lambda device=0: ("Fake Orin", "8.7", ""))
        return trt
    return install


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0"])
def test_fp16_builder_flag_pins_islands(tmp_path, onnx_files, with_trt, version):
    trt = with_trt(version)
    engine = tmp_path / "m.engine"
    logs: list = []
    meta = B.build_engine(onnx_files[0], engine, fp16=True, workspace_mb=256, timing_cache=str(tmp_path / "t.cache"),
                          log=logs.append)
    c = trt.calls
    assert c["flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"] and c["workspace"] == 256 << 20
    assert c["network_flags"] == (1 if version.startswith("8.") else 0)
    assert c["parsed_fp16"] is False and c["profile"] is None
    pinned = " ".join(c["pinned"])
    assert "LayerNormalization" in pinned and "Softmax" in pinned and "ArgMax" in pinned
    assert "Conv" not in pinned and "MatMul" not in pinned
    assert sum("Resize" in p for p in c["pinned"]) == 1  # only the final upsample
    assert engine.read_bytes() == b"ENGINE" and (tmp_path / "t.cache").read_bytes() == b"cache"
    on_disk = meta_mod.read(engine)
    assert on_disk == meta
    assert (on_disk["precision"], on_disk["tensorrt_version"], on_disk["compute_capability"]) == ("fp16", version, "8.7")
    assert on_disk["fp16_mechanism"] == "builder_flag" and on_disk["class_names"][0] == "Sky"
    assert any("pinned to FP32" in ln for ln in logs)


def test_fp16_trt11_strongly_typed(tmp_path, onnx_files, with_trt):
    trt = with_trt("11.0.0")
    engine = tmp_path / "m.engine"
    meta = B.build_engine(onnx_files[0], engine, fp16=True, log=lambda s: None)
    c = trt.calls
    assert c["network_flags"] == 1 << 1  # STRONGLY_TYPED
    assert c["flags"] == [] and c["pinned"] == [] and c["parsed_fp16"] is True
    assert meta["fp16_mechanism"] == "strongly_typed" and meta["precision"] == "fp16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.json"]  # the FP16 ONNX temp is gone


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
