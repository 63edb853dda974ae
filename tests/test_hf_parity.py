"""Numerical parity with the Hugging Face transformers implementations (independent references).

Reference models are built from configs with random weights (no download); every tensor is
randomised (LayerNorm / BatchNorm included) so a key mix-up shows. Their state dicts are
converted by pvtseg's own loader. Tolerance: max abs diff <= 1e-5 in fp32.

HF uses one LayerNorm eps everywhere (layer_norm_eps = 1e-6 for PVT / PVT v2; the nn.LayerNorm
default 1e-5 in transformers 5.x Segformer), while the official code uses 1e-6 in blocks and
1e-5 in the patch-embedding and spatial-reduction norms; the pvtseg models are built with the
reference's eps for the comparison.
"""

from __future__ import annotations

import pytest
import torch

from _pvt_helpers import randomize_, to_hf_pvt, to_hf_pvt_v2, to_hf_segformer4, to_hf_segformer5
from pvtseg.models import create_model, load_checkpoint

transformers = pytest.importorskip("transformers")

TOL = 1e-5
HF_EPS_PVT = dict(norm_eps=1e-6, patch_norm_eps=1e-6, sr_norm_eps=1e-6)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def _hf_pvt_v2(b2_li: bool, cls: bool = False):
    cfg = transformers.PvtV2Config(
        hidden_sizes=[64, 128, 320, 512] if b2_li else [32, 64, 160, 256],
        depths=[3, 4, 6, 3] if b2_li else [2, 2, 2, 2],
        linear_attention=b2_li, num_labels=10)
    model_cls = transformers.PvtV2ForImageClassification if cls else transformers.PvtV2Model
    return randomize_(model_cls(cfg).eval(), seed=1)


@pytest.fixture(scope="module")
def pvt_v2_pairs():
    pairs = {}
    for name in ("pvt_v2_b0", "pvt_v2_b2_li"):
        hf = _hf_pvt_v2(name == "pvt_v2_b2_li")
        ours = create_model(name, num_classes=0, **HF_EPS_PVT).eval()
        report = load_checkpoint(ours, hf.state_dict())
        assert report.format == "hf-pvt-v2" and report.ok, str(report)
        pairs[name] = (hf, ours)
    return pairs


@pytest.mark.parametrize("name", ["pvt_v2_b0", "pvt_v2_b2_li"])
@pytest.mark.parametrize("size", [224, 512])
def test_pvt_v2_stage_maps_match_hf(pvt_v2_pairs, name, size):
    hf, ours = pvt_v2_pairs[name]
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True).hidden_states
        got = ours.forward_features(x)
    assert len(ref) == len(got) == 4
    for i, (r, g) in enumerate(zip(ref, got)):
        assert g.shape == (1, ours.feature_info[i]["num_chs"], size // (4 << i), size // (4 << i))
        assert _max_diff(r, g) <= TOL, f"{name} stage {i + 1} at {size}: {_max_diff(r, g)}"
        assert float(r.abs().max()) > 0.1  # the comparison is not between near-zero maps


def test_pvt_v2_classifier_logits_match_hf():
    hf = _hf_pvt_v2(False, cls=True)
    ours = create_model("pvt_v2_b0", num_classes=10, **HF_EPS_PVT).eval()
    report = load_checkpoint(ours, hf.state_dict())
    assert report.ok, str(report)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(hf(x).logits, ours(x)) <= TOL


def test_pvt_v2_written_in_hf_layout_loads_into_hf():
    """pvtseg weights -> HF key names (writer) -> the real HF model accepts them strictly and agrees."""
    ours = randomize_(create_model("pvt_v2_b0", num_classes=10, **HF_EPS_PVT).eval(), seed=3)
    hf = transformers.PvtV2ForImageClassification(transformers.PvtV2Config(num_labels=10)).eval()
    hf.load_state_dict(to_hf_pvt_v2(ours.state_dict()), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(hf(x).logits, ours(x)) <= TOL


def _hf_pvt_v1():
    cfg = transformers.PvtConfig(num_labels=10)  # defaults = PVT-Tiny
    return randomize_(transformers.PvtForImageClassification(cfg).eval(), seed=2)


def test_pvt_v1_tiny_matches_hf_at_224():
    hf = _hf_pvt_v1()
    ours = create_model("pvt_v1_tiny", num_classes=10, **HF_EPS_PVT).eval()
    report = load_checkpoint(ours, hf.state_dict())
    assert report.format == "hf-pvt" and report.ok, str(report)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = hf(x, output_hidden_states=True)
        hf_tokens = hf.pvt(x).last_hidden_state
        logits = ours(x)
        tokens = ours.forward_tokens(x)
        maps = ours.forward_features(x)
    assert _max_diff(out.logits, logits) <= TOL
    # Stage maps 1-3: HF's hidden_states are per-block token sequences; take each stage's last block.
    depths = [2, 2, 2, 2]
    for i in range(3):
        h = out.hidden_states[sum(depths[: i + 1]) - 1]
        ref = h.transpose(1, 2).reshape(maps[i].shape)
        assert _max_diff(ref, maps[i]) <= TOL, f"stage {i + 1}"
    # Last stage with the class token, after the final norm.
    assert _max_diff(hf_tokens, tokens) <= TOL


def test_pvt_v1_written_in_hf_layout_loads_into_hf():
    ours = randomize_(create_model("pvt_v1_tiny", num_classes=10, **HF_EPS_PVT).eval(), seed=4)
    hf = transformers.PvtForImageClassification(transformers.PvtConfig(num_labels=10)).eval()
    hf.load_state_dict(to_hf_pvt(ours.state_dict()), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(hf(x).logits, ours(x)) <= TOL


def _segformer_eps(hf) -> dict:
    """The LayerNorm eps the HF Segformer actually uses (5.x: nn.LayerNorm default everywhere)."""
    import torch.nn as nn

    eps = {m.eps for m in hf.modules() if isinstance(m, nn.LayerNorm)}
    assert len(eps) == 1, f"this transformers version mixes LayerNorm eps: {eps}"
    e = eps.pop()
    return dict(norm_eps=e, patch_norm_eps=e, sr_norm_eps=e)


@pytest.fixture(scope="module")
def segformer_pair():
    hf = randomize_(transformers.SegformerForSemanticSegmentation(
        transformers.SegformerConfig(num_labels=11)).eval(), seed=5)  # defaults = MiT-B0, decoder 256
    ours = create_model("mit_b0_segformer", num_classes=11, **_segformer_eps(hf)).eval()
    return hf, ours


def test_segformer_b0_logits_match_hf(segformer_pair):
    hf, ours = segformer_pair
    report = load_checkpoint(ours, hf.state_dict())
    assert report.format in ("hf-segformer", "hf-segformer-5") and report.ok, str(report)
    for size in (224, 512):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            ref = hf(x).logits
            got = ours(x)
        assert got.shape == (1, 11, size // 4, size // 4)
        assert _max_diff(ref, got) <= TOL, f"{size}: {_max_diff(ref, got)}"


def test_segformer_hub_folder_4x_names_loads(segformer_pair, tmp_path):
    """save_pretrained writes the 4.x key names of Hub checkpoints, as model.safetensors in a folder."""
    hf, _ = segformer_pair
    hf.save_pretrained(tmp_path)
    ours = create_model("mit_b0_segformer", num_classes=11, **_segformer_eps(hf)).eval()
    report = load_checkpoint(ours, tmp_path)
    assert report.format == "hf-segformer" and report.ok, str(report)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert _max_diff(hf(x).logits, ours(x)) <= TOL


@pytest.mark.parametrize("writer", [to_hf_segformer4, to_hf_segformer5], ids=["4.x", "5.x"])
def test_segformer_written_in_hf_layout_round_trips(segformer_pair, writer, tmp_path):
    hf, _ = segformer_pair
    src = randomize_(create_model("mit_b0_segformer", num_classes=11, **_segformer_eps(hf)).eval(), seed=6)
    sd = writer(src.state_dict())
    if writer is to_hf_segformer5:
        ref = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(num_labels=11)).eval()
        ref.load_state_dict(sd, strict=True)  # the names are exactly the installed transformers' names
    path = tmp_path / "seg.bin"
    torch.save(sd, path)
    dst = create_model("mit_b0_segformer", num_classes=11, **_segformer_eps(hf)).eval()
    report = load_checkpoint(dst, path)
    assert report.ok, str(report)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
