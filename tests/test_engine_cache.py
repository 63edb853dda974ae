"""The engine cache: built once, reused, rebuilt when any part of the key changes.

TensorRT is not installed here, so the build step is a stand-in that writes an engine file
and its sidecar the way engine/builder.py does; what is tested is the cache's own logic
(keys, names, reuse, invalidation, atomic results) and the Segmenter's refusal without TensorRT.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _runtime_artifacts import cached_artifacts
from pvtseg import meta as meta_mod
from pvtseg.errors import ConfigError, EngineError
from pvtseg.runtime import Segmenter
from pvtseg.runtime.engine_cache import DEFAULT_WORKSPACE_MB, cache_key, cached_engine

TARGET = {"trt": "10.3.0", "cc": "8.7"}


@pytest.fixture()
def onnx_copy(tmp_path):
    arts = cached_artifacts("cache_src", output="labels", formats=("onnx",))
    dst = tmp_path / "m.onnx"
    shutil.copy(arts["onnx"], dst)
    shutil.copy(arts["json"], tmp_path / "m.json")
    return dst


class FakeBuild:
    """Writes what build_engine writes: the engine bytes and a sidecar with TensorRT facts."""

    def __init__(self):
        self.calls = []

    def __call__(self, onnx_path, engine_path, *, fp16, int8, workspace_mb, meta, log):
        self.calls.append({"onnx": onnx_path, "engine": engine_path, "fp16": fp16, "int8": int8,
                           "workspace_mb": workspace_mb})
        Path(engine_path).write_bytes(b"engine for " + Path(onnx_path).read_bytes()[:16])
        m = {k: v for k, v in meta.items() if k != meta_mod.ARTIFACTS_KEY}  # as engine/prepare.py does
        m.update(precision="fp16" if fp16 else "int8" if int8 else "fp32", tensorrt_version=TARGET["trt"],
                 compute_capability=TARGET["cc"])
        meta_mod.write(engine_path, m)


def test_built_once_then_reused(onnx_copy):
    build, lines = FakeBuild(), []
    first = cached_engine(onnx_copy, target=TARGET, build=build, log=lines.append)
    second = cached_engine(onnx_copy, target=TARGET, build=build, log=lines.append)
    assert first == second and first.is_file() and len(build.calls) == 1
    assert first.parent == onnx_copy.parent and first.name.startswith("m.fp16.trt10.3.0.sm87.")
    assert build.calls[0]["fp16"] and build.calls[0]["workspace_mb"] == DEFAULT_WORKSPACE_MB
    assert any("building" in s for s in lines) and any("reusing" in s for s in lines)
    assert meta_mod.read(first)["engine_cache_key"]


@pytest.mark.parametrize("change", ["onnx", "trt", "cc", "precision", "profile"])
def test_any_key_change_rebuilds(onnx_copy, change):
    build = FakeBuild()
    first = cached_engine(onnx_copy, target=TARGET, build=build, log=lambda s: None)
    target, precision = dict(TARGET), "fp16"
    if change == "onnx":
        with open(onnx_copy, "ab") as f:
            f.write(b"\0")  # trailing bytes: a different file, same graph for the stand-in
    elif change == "trt":
        target["trt"] = "10.13.0"
    elif change == "cc":
        target["cc"] = "8.6"
    elif change == "precision":
        precision = "fp32"
    else:
        m = meta_mod.read(onnx_copy)
        m["input"].update(height=96)
        meta_mod.write(onnx_copy, m)
    second = cached_engine(onnx_copy, target=target, build=build, precision=precision, log=lambda s: None)
    assert second != first and len(build.calls) == 2


def test_engine_without_key_is_rebuilt(onnx_copy):
    build = FakeBuild()
    engine = cached_engine(onnx_copy, target=TARGET, build=build, log=lambda s: None)
    m = meta_mod.read(engine)
    del m["engine_cache_key"]  # e.g. a build killed between the engine and the key write
    meta_mod.write(engine, m)
    assert cached_engine(onnx_copy, target=TARGET, build=build, log=lambda s: None) == engine
    assert len(build.calls) == 2


def test_failed_build_leaves_no_cache_entry(onnx_copy):
    def failing(onnx_path, engine_path, **kw):
        raise EngineError("parser rejected the graph")

    with pytest.raises(EngineError, match="parser rejected"):
        cached_engine(onnx_copy, target=TARGET, build=failing, log=lambda s: None)
    assert not list(onnx_copy.parent.glob("*.engine"))


def test_key_is_stable_and_sensitive():
    base = cache_key("a" * 64, "10.3.0", "8.7", "fp16", {"height": 320, "width": 416, "dynamic": None})
    assert base == cache_key("a" * 64, "10.3.0", "8.7", "fp16", {"width": 416, "height": 320, "dynamic": None})
    assert base != cache_key("b" * 64, "10.3.0", "8.7", "fp16", {"height": 320, "width": 416, "dynamic": None})


def test_segmenter_tensorrt_on_onnx_without_tensorrt_says_why(onnx_copy):
    with pytest.raises(EngineError):
        Segmenter(onnx_copy, backend="tensorrt")


def test_segmenter_refuses_impossible_backend(onnx_copy):
    with pytest.raises(ConfigError, match="cannot run on backend 'torchscript'"):
        Segmenter(onnx_copy, backend="torchscript")
