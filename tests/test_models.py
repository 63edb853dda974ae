"""Model zoo: published parameter counts and FLOPs, pyramid shapes, input checks, names, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from _pvt_helpers import randomize_
from pvtseg.errors import InputShapeError, ModelNotFoundError
from pvtseg.models import create_model, list_models, model_kind
from pvtseg.models.complexity import count_params, model_complexity

# Official ImageNet classifiers (1000 classes), millions of parameters (whai362/PVT README, papers).
PARAMS_M = {
    "pvt_v2_b0": 3.7, "pvt_v2_b1": 14.0, "pvt_v2_b2": 25.4, "pvt_v2_b2_li": 22.6, "pvt_v2_b3": 45.2,
    "pvt_v2_b4": 62.6, "pvt_v2_b5": 82.0,
    "pvt_v1_tiny": 13.2, "pvt_v1_small": 24.5, "pvt_v1_medium": 44.2, "pvt_v1_large": 61.4,
}
# GFLOPs at 224x224 from the same tables (one decimal).
GFLOPS_224 = {
    "pvt_v2_b0": 0.6, "pvt_v2_b1": 2.1, "pvt_v2_b2": 4.0, "pvt_v2_b2_li": 3.9, "pvt_v2_b3": 6.9,
    "pvt_v2_b4": 10.1, "pvt_v2_b5": 11.8,
    "pvt_v1_tiny": 1.9, "pvt_v1_small": 3.8, "pvt_v1_medium": 6.7, "pvt_v1_large": 9.8,
}
# Segmentors on ADE20K (150 classes): (params M, GFLOPs, input size). PVT paper (Semantic FPN),
# PVT v2 paper (Semantic FPN), SegFormer paper (MiT + All-MLP head; B5 at 640x640).
SEGMENTORS = {
    "pvt_v1_tiny_fpn": (17.0, 33.2, 512), "pvt_v1_small_fpn": (28.2, 44.5, 512),
    "pvt_v1_medium_fpn": (48.0, 61.0, 512), "pvt_v1_large_fpn": (65.1, 79.6, 512),
    "pvt_v2_b0_fpn": (7.6, 25.0, 512), "pvt_v2_b1_fpn": (17.8, 34.2, 512), "pvt_v2_b2_fpn": (29.1, 45.8, 512),
    "pvt_v2_b3_fpn": (49.0, 62.4, 512), "pvt_v2_b4_fpn": (66.3, 81.3, 512), "pvt_v2_b5_fpn": (85.7, 91.1, 512),
    "mit_b0_segformer": (3.8, 8.4, 512), "mit_b1_segformer": (13.7, 15.9, 512),
    "mit_b2_segformer": (27.5, 62.4, 512), "mit_b3_segformer": (47.3, 79.0, 512),
    "mit_b4_segformer": (64.1, 95.7, 512), "mit_b5_segformer": (84.7, 183.3, 640),
}


@pytest.mark.parametrize("name", PARAMS_M)
def test_classifier_params_match_official_table(name):
    c = model_complexity(name, with_flops=False)
    assert round(c.params / 1e6, 1) == PARAMS_M[name], c.params


def test_meta_count_equals_a_real_model():
    assert count_params(create_model("pvt_v2_b0")) == model_complexity("pvt_v2_b0", with_flops=False).params


@pytest.mark.parametrize("name", GFLOPS_224)
def test_classifier_gflops_match_papers(name):
    g = model_complexity(name, (224, 224)).gflops
    assert abs(g - GFLOPS_224[name]) <= 0.1, g


@pytest.mark.parametrize("name", SEGMENTORS)
def test_segmentor_params_and_gflops_match_papers(name):
    params_m, gflops, size = SEGMENTORS[name]
    c = model_complexity(name, (size, size))
    assert abs(c.params / 1e6 - params_m) <= 0.06, c.params  # papers round to 0.1M
    # The papers' counters (mmcv, fvcore) add norms/activations; ours counts matmuls and convs.
    assert abs(c.gflops - gflops) <= 0.01 * gflops, c.gflops


def test_attention_is_counted():
    """Attention MACs (QK^T and AV: 2 * N * M * C per block, M = keys after spatial reduction)
    are in the count: on the meta device SDPA decomposes into batched matmuls the counter sees."""
    from torch.utils.flop_counter import FlopCounterMode

    from pvtseg.models.complexity import count_flops

    with torch.device("meta"):
        model = create_model("pvt_v2_b0").eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.empty(1, 3, 224, 224, device="meta"))
    bmm = sum(v for k, v in fc.get_flop_counts()["Global"].items() if "bmm" in str(k)) // 2
    grids, dims, keys = (56, 28, 14, 7), (32, 64, 160, 256), 49  # sr 8, 4, 2, 1: 7x7 keys everywhere
    expected = sum(2 * 2 * g * g * keys * c for g, c in zip(grids, dims))  # 2 blocks per stage
    assert bmm == expected
    # The memoised counter (identical blocks run once) gives the same total as the plain one.
    assert count_flops(model, (224, 224)) == fc.get_total_flops() // 2


def test_official_layernorm_eps():
    """The official code: blocks and stage norms eps 1e-6 (norm_layer), patch-embedding norm and
    the spatial-reduction norm inside attention are plain nn.LayerNorm (eps 1e-5)."""
    for name in ("pvt_v2_b0", "pvt_v1_tiny", "mit_b0", "pvt_v2_b2_li"):
        model = create_model(name)
        eps = {n: m.eps for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
        for n, e in eps.items():
            want = 1e-5 if (".patch_embed." in n or ".attn." in n) else 1e-6
            assert e == want, (name, n, e)
        assert any(".attn.norm" in n for n in eps)


@pytest.mark.parametrize("name", ["pvt_v2_b0", "pvt_v1_tiny", "mit_b0", "pvt_v2_b2_li"])
def test_pyramid_shapes_and_feature_info(name):
    model = create_model(name, num_classes=0).eval()
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        feats = model.forward_features(x)
    assert len(feats) == 4
    for f, info in zip(feats, model.feature_info):
        assert f.shape == (2, info["num_chs"], 64 // info["reduction"], 96 // info["reduction"])


@pytest.mark.parametrize("name", ["pvt_v2_b0", "pvt_v1_tiny"])
def test_classifier_runs_at_other_sizes(name):
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 160)).shape == (1, 10)


def test_v1_segmentor_backbone_is_dense_only():
    seg = create_model("pvt_v1_tiny_fpn")
    keys = seg.state_dict().keys()
    assert not any(k in keys for k in ("backbone.cls_token", "backbone.norm.weight", "backbone.head.weight"))
    assert seg.state_dict()["backbone.stages.3.pos_embed"].shape == (1, 7 * 7 + 1, 512)  # official layout


@pytest.mark.parametrize("size", [(64, 65), (100, 64), (31, 32)])
def test_input_not_multiple_of_32(size):
    model = create_model("pvt_v2_b0_segformer").eval()
    with pytest.raises(InputShapeError) as e:
        model(torch.randn(1, 3, *size))
    msg = str(e.value)
    assert "multiples of 32" in msg and f"{size[0]}x{size[1]}" in msg
    up = tuple((s + 31) // 32 * 32 for s in size)
    assert f"{up[0]}x{up[1]}" in msg


def test_input_rank_and_channels():
    model = create_model("pvt_v2_b0").eval()
    with pytest.raises(InputShapeError, match="batch dimension"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(InputShapeError):
        model(torch.randn(1, 1, 64, 64))


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(ModelNotFoundError) as e:
        create_model("pvt_v2_b7_segformer")
    msg = str(e.value)
    assert "pvt_v2_b" in msg and "Did you mean" in msg
    assert isinstance(e.value, KeyError)
    with pytest.raises(ModelNotFoundError, match="pvt_v1_tiny"):
        create_model("pvt_tiny")


def test_registry_names():
    names = list_models()
    for bb in list(PARAMS_M) + [f"mit_b{i}" for i in range(6)]:
        assert bb in names and f"{bb}_fpn" in names and f"{bb}_segformer" in names
        assert model_kind(bb) == "classifier" and model_kind(f"{bb}_fpn") == "segmentor"
    assert list_models("pvt_v2_b0*") == ["pvt_v2_b0", "pvt_v2_b0_fpn", "pvt_v2_b0_segformer"]
    assert all(model_kind(n) == "segmentor" for n in list_models(kind="segmentor"))


@pytest.mark.parametrize("name", ["pvt_v2_b0_fpn", "pvt_v1_tiny_segformer"])
def test_segmentor_outputs(name):
    model = randomize_(create_model(name, num_classes=11).eval())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits4 = model(x)
        assert logits4.shape == (2, 11, 16, 24)
        model.set_output("logits")
        logits = model(x)
        assert logits.shape == (2, 11, 64, 96)
        model.set_output("labels")
        labels = model(x)
        assert labels.dtype == torch.uint8 and labels.shape == (2, 64, 96)
        assert torch.equal(labels, logits.argmax(1).to(torch.uint8))
        model.set_output("labels", label_dtype="int32")
        assert model(x).dtype == torch.int32
    assert model.num_classes == 11


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def _run_cli(args, tmp_path):
    env = dict(os.environ, PVTSEG_CACHE=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "pvtseg", "models", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_cli_lists_models_with_params_and_gflops(tmp_path):
    out = _run_cli(["--list", "pvt_v2_b0*"], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.startswith("pvt_v2_b0")}
    assert set(lines) == {"pvt_v2_b0", "pvt_v2_b0_fpn", "pvt_v2_b0_segformer"}
    assert lines["pvt_v2_b0"][1:4] == ["classifier", "3.67", "3.80"]
    assert lines["pvt_v2_b0_fpn"][1:4] == ["segmentor", "7.55", "24.98"]
    assert "GFLOPs@512x512" in out.stdout and "multiply-adds" in out.stdout
    assert (tmp_path / "complexity.json").is_file()
    again = _run_cli(["--json", "pvt_v2_b0*"], tmp_path)  # served from the cache
    data = json.loads(again.stdout)
    assert [m["name"] for m in data["models"]] == ["pvt_v2_b0", "pvt_v2_b0_fpn", "pvt_v2_b0_segformer"]
    assert data["models"][0]["weights"] == "pvt_v2_b0.pth"


def test_pvtseg_models_command(capsys, tmp_path, monkeypatch):
    from pvtseg.apps.cli import main

    monkeypatch.setenv("PVTSEG_CACHE", str(tmp_path))
    assert main(["models", "--weights"]) == 0
    out = capsys.readouterr().out
    assert "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth" in out
    assert main(["models", "mit_b0_segformer", "--size", "512"]) == 0
    out = capsys.readouterr().out
    assert "mit_b0_segformer" in out and "8.39" in out
    assert main(["models", "no_such_model*"]) == 1
