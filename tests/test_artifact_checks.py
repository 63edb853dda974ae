"""Every runtime refuses a sidecar that does not match its graph (issue 12, finding 6).

Each case copies a real exported artifact (tiny PVT v2 b0, 128x160) beside an edited sidecar
and loads it through `pvtseg.runtime.Segmenter` with the ONNX Runtime and TorchScript
backends; the TensorRT backend runs the same `check_io` on the engine's declared tensors
(checked here with the specs an engine would report, since no TensorRT is installed).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from _runtime_artifacts import cached_artifacts
from pvtseg import meta as meta_mod
from pvtseg.errors import ArtifactMismatchError, MetaError
from pvtseg.runtime import Segmenter
from pvtseg.runtime.io_check import TensorSpec, check_io

SUFFIX = {"onnxruntime": ".onnx", "torchscript": ".ts"}


def labels_artifacts():
    return cached_artifacts("checks_labels", output="labels")


def logits_artifacts():
    return cached_artifacts("checks_logits", output="logits")


def with_sidecar(tmp_path: Path, arts, backend: str, edit) -> Path:
    """Copy the artifact for `backend` into tmp_path with an edited sidecar (no validation)."""
    src = Path(arts["onnx" if backend == "onnxruntime" else "torchscript"])
    dst = tmp_path / ("m" + SUFFIX[backend])
    shutil.copy(src, dst)
    m = json.loads(Path(arts["json"]).read_text())
    edit(m)
    (tmp_path / "m.json").write_text(json.dumps(m))
    return dst


def set_classes(m, n):
    m["num_classes"] = n
    m["class_names"] = [f"c{i}" for i in range(n)]
    m["palette"] = [[i, i, i] for i in range(n)]


BACKENDS = ["onnxruntime", "torchscript"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_matching_pair_loads_and_runs(tmp_path, backend):
    path = with_sidecar(tmp_path, labels_artifacts(), backend, lambda m: None)
    seg = Segmenter(path)
    labels = seg(np.zeros((90, 120, 3), np.uint8))
    assert labels.shape == (90, 120) and labels.dtype == np.uint8


@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_sidecar_on_labels_graph(tmp_path, backend):
    def edit(m):
        m["output"].update(kind="logits", dtype="float32")

    path = with_sidecar(tmp_path, labels_artifacts(), backend, edit)
    with pytest.raises(ArtifactMismatchError, match="sidecar says logits"):
        Segmenter(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_labels_sidecar_on_logits_graph(tmp_path, backend):
    def edit(m):
        m["output"].update(kind="labels", dtype="uint8", name="logits")

    path = with_sidecar(tmp_path, logits_artifacts(), backend, edit)
    with pytest.raises(ArtifactMismatchError, match="sidecar says labels"):
        Segmenter(path)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["labels", "logits"])
def test_wrong_class_count(tmp_path, backend, kind):
    arts = labels_artifacts() if kind == "labels" else logits_artifacts()
    path = with_sidecar(tmp_path, arts, backend, lambda m: set_classes(m, 5))
    with pytest.raises(ArtifactMismatchError, match="11 classes|classes is 11"):
        Segmenter(path)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("field,value", [("mean", [math.nan, 0.4, 0.4]), ("std", [0.2, math.inf, 0.2]),
                                         ("std", [0.2, 0.0, 0.2]), ("std", [0.2, -0.1, 0.2])])
def test_non_finite_or_non_positive_normalisation(tmp_path, backend, field, value):
    path = with_sidecar(tmp_path, labels_artifacts(), backend, lambda m: m["input"].update({field: value}))
    with pytest.raises(MetaError, match=f"input.{field}"):
        Segmenter(path)


def test_input_size_differs_from_static_onnx_graph(tmp_path):
    path = with_sidecar(tmp_path, labels_artifacts(), "onnxruntime",
                        lambda m: m["input"].update(height=160, width=160))
    with pytest.raises(ArtifactMismatchError, match="input height is 128 in the graph, 160 in the sidecar"):
        Segmenter(path)


def test_wrong_output_name(tmp_path):
    path = with_sidecar(tmp_path, labels_artifacts(), "onnxruntime", lambda m: m["output"].update(name="seg"))
    with pytest.raises(ArtifactMismatchError, match="'seg' is not among the graph's outputs"):
        Segmenter(path)


def test_batch_two_artifact_is_refused_by_the_segmenter(tmp_path):
    path = with_sidecar(tmp_path, labels_artifacts(), "onnxruntime", lambda m: m.update(batch=2))
    with pytest.raises(ArtifactMismatchError, match="batch of 2"):
        Segmenter(path)


def _meta(**kw):
    return meta_mod.make_meta(arch="pvt_v2_b0_segformer", num_classes=11, height=128, width=160, **kw)


def test_engine_specs_batch_two_engine_vs_batch_one_sidecar():
    """The TensorRT backend's case: a batch-2 engine would read past a batch-1 buffer."""
    m = _meta(output_kind="labels", output_dtype="uint8")
    engine_in = [TensorSpec("input", (2, 3, 128, 160), "float32")]
    engine_out = [TensorSpec("labels", (2, 128, 160), "uint8")]
    with pytest.raises(ArtifactMismatchError, match="input batch is 2 in the graph, 1 in the sidecar"):
        check_io("x.engine", m, engine_in, engine_out)


def test_engine_specs_int32_labels_vs_uint8_sidecar():
    m = _meta(output_kind="labels", output_dtype="uint8")
    with pytest.raises(ArtifactMismatchError, match="output dtype is int32 in the graph, uint8"):
        check_io("x.engine", m, [TensorSpec("input", (1, 3, 128, 160), "float32")],
                 [TensorSpec("labels", (1, 128, 160), "int32")])


def test_engine_specs_extra_outputs_and_dynamic_axes_are_fine():
    m = _meta(output_kind="logits", output_dtype="float32", output_stride=4,
              dynamic={"batch": [1, 4], "height": [64, 256], "width": [64, 256]})
    check_io("x.engine", m, [TensorSpec("input", (None, 3, None, None), "float32")],
             [TensorSpec("aux", (None, 19), "float32"), TensorSpec("logits", (None, 11, None, None), "float32")])
    with pytest.raises(ArtifactMismatchError, match="output classes is 19"):
        check_io("x.engine", m, [TensorSpec("input", (None, 3, None, None), "float32")],
                 [TensorSpec("logits", (None, 19, None, None), "float32")])


@pytest.mark.parametrize("edit,field", [
    (lambda m: m["input"].update(dynamic={"height": [256, 512]}), "input.dynamic.height"),
    (lambda m: m["input"].update(dtype="int8"), "input.dtype"),
    (lambda m: m["input"].update(name=""), "input.name"),
    (lambda m: m["output"].update(name=""), "output.name"),
    (lambda m: m.update(batch=0), "batch"),
])
def test_sidecar_values_the_c_plus_plus_reader_also_refuses(tmp_path, edit, field):
    """Same refusals as cpp/src/meta.cpp, so both runtimes accept exactly the same sidecars."""
    path = with_sidecar(tmp_path, labels_artifacts(), "onnxruntime", edit)
    with pytest.raises(MetaError, match=field):
        Segmenter(path)
