"""pvtseg bench: smoke only (tiny model, a few frames); no timing assertions."""

from __future__ import annotations

import json

import cv2
import pytest

from _runtime_artifacts import cached_artifacts

from pvtseg.apps import bench


@pytest.fixture(scope="module")
def art():
    return cached_artifacts("tiny", height=128, width=160, output="labels")


def test_bench_smoke(tmp_path, art, capsys):
    out, plot = tmp_path / "b.json", tmp_path / "b.png"
    rc = bench.main(["--model", str(art["onnx"]), "--frames", "3", "--warmup", "2", "--loop-frames", "3",
                     "--memory-frames", "12", "--json", str(out), "--plot", str(plot),
                     "--markdown", str(tmp_path / "b.md")])
    text = capsys.readouterr().out
    assert rc == 0, text
    res = json.loads(out.read_text())
    labels = [r["label"] for r in res["backends"]]
    assert labels == ["torchscript", "onnxruntime"]  # the artifact's family: x.ts beside x.onnx
    for r in res["backends"]:
        for stage in ("pre", "infer", "post", "total"):
            assert set(r[stage]) == {"p50", "p90", "p99", "mean"}
        assert r["fps"] > 0 and r["frames"] == 3
    ref = res["reference"]
    assert ref is not None and "Segformer" in ref["name"] and ref["fps"] > 0
    assert all(r["speedup"] > 0 for r in res["backends"])
    assert res["loop_overhead"]["frames"] == 3 and res["loop_overhead"]["bare_ms"] > 0
    assert res["memory"]["frames"] == 12 and res["memory"]["rss_end_mb"] > 10
    assert "vs ref" in text and "camera loop" in text and "memory" in text
    md = (tmp_path / "b.md").read_text()
    assert "| onnxruntime |" in md and "vs reference" in md and "Memory" in md
    img = cv2.imread(str(plot))
    assert img is not None and img.shape[1] == 900


def test_bench_backend_filter_and_no_reference(tmp_path, art, capsys):
    rc = bench.main(["--model", str(art["torchscript"]), "--backends", "onnxruntime", "--frames", "2", "--warmup",
                     "1", "--no-reference", "--loop-frames", "0"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "onnxruntime" in text and "reference:" not in text


def test_bench_errors(tmp_path, art, capsys):
    assert bench.main(["--model", str(art["onnx"]), "--backends", "tflite"]) == 1
    assert "unknown backend" in capsys.readouterr().err
    assert bench.main(["--model", str(tmp_path / "none.onnx")]) == 1


def test_hf_reference_config_matches_pvt_v2_b0():
    kw = bench.hf_config_kwargs("pvt_v2_b0_segformer", 11)
    assert kw["hidden_sizes"] == [32, 64, 160, 256] and kw["depths"] == [2, 2, 2, 2]
    assert kw["mlp_ratios"] == [8, 8, 4, 4] and kw["decoder_hidden_size"] == 256 and kw["num_labels"] == 11
    assert bench.hf_config_kwargs("mit_b0_segformer", 19)["mlp_ratios"] == [4, 4, 4, 4]
    assert bench.hf_config_kwargs("pvt_v1_tiny_fpn", 11) is None


def test_helpers():
    p = bench.percentiles([1.0, 2.0, 3.0, 4.0, 100.0])
    assert p["p50"] == 3.0 and p["p99"] > p["p90"] > p["p50"] and p["mean"] == 22.0
    assert bench.rss_mb() > 1.0
