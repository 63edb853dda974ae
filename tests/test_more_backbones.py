"""Swin, MobileViT, DAT and MSwin backbones (issue 7).

- parity (max abs diff <= 1e-5, fp32) with Hugging Face transformers `SwinModel` (tiny
  config) and `MobileViTModel` (xxs and s configs) built with random weights, through
  models/formats/ (swin.py, mobilevit.py); the other checkpoint layouts round-trip;
- the defining properties: Swin's shift mask (same as the official construction, never
  crossed), DAT's zero offsets (= sampling at the reference points) and gather sampler
  (= grid_sample to 1e-6), MSwin's branches (attend only inside their window);
- segmentors through the export pipeline (pvtseg.export.export_model: ONNX Runtime and
  TorchScript parity, TensorRT op check, static sizes), both heads. To keep this file at
  a few minutes on 2 CPU cores the default runs the tiniest variant of each family:
  mobilevit_xxs at 512x512, swin_tiny, dat_tiny and mswin_tiny at 256x256 (at 256 every
  Swin/DAT stage pads to the window and shifts and MSwin's 16-windows pad, so every code
  path is traced; at 512 nothing pads).
  PVTSEG_EXPORT_ALL=1 adds swin_small, mobilevit_xs/s and mswin_small (256x256);
  PVTSEG_EXPORT_512=1 runs all of them at 512x512.
"""

from __future__ import annotations

import math
import os
import re

import pytest
import torch
import torch.nn.functional as F

from pvtseg.models import create_model, list_models
from pvtseg.models import dat, mswin, swin
from pvtseg.models.formats import convert_family as convert_extra
from pvtseg.models.formats import detect_family_format as detect_extra_format
from pvtseg.models.formats import to_canonical
from pvtseg.models.formats.dat import convert_official_dat
from pvtseg.models.formats.mobilevit import convert_hf_mobilevit
from pvtseg.models.formats.swin import convert_hf_swin, convert_official_swin

try:
    import transformers
except ImportError:  # the dev extra installs it
    transformers = None
needs_hf = pytest.mark.skipif(transformers is None, reason="needs transformers (pip install -e '.[dev]')")
TOL = 1e-5


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (incl. tables, BN statistics): zero-initialised HF tables
    or unit norms would hide key mix-ups."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.02 if p.dim() > 1 else 0.1))
            if p.dim() == 1 and name.endswith("weight"):
                p.add_(1.0)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model.eval()


def _maxdiff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


# ============================================================================ registry
def test_registered_with_both_heads():
    for name in ("swin_tiny", "swin_small", "mobilevit_xxs", "mobilevit_xs", "mobilevit_s", "dat_tiny",
                 "mswin_tiny", "mswin_small"):
        assert name in list_models(kind="classifier")
        assert {f"{name}_fpn", f"{name}_segformer"} <= set(list_models(f"{name}_*", kind="segmentor"))


@pytest.mark.parametrize("name,params", [
    # official Swin classifiers (timm / microsoft: 28,288,354 and 49,606,258) + our LayerNorms of levels 0..2
    ("swin_tiny", 28_288_354 + 2 * (96 + 192 + 384)), ("swin_small", 49_606_258 + 2 * (96 + 192 + 384)),
    # MobileViT paper / HF / timm: 1.27M, 2.32M, 5.58M
    ("mobilevit_xxs", 1_272_024), ("mobilevit_xs", 2_317_848), ("mobilevit_s", 5_578_632),
])
def test_param_counts(name, params):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params


# ============================================================================ Hugging Face parity
def _hf_swin_config(**kw):
    return transformers.SwinConfig(image_size=224, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                                   window_size=7, drop_path_rate=0.0, **kw)


def _hf_swin_reference(hf, x):
    """HF SwinModel pyramid: per-stage maps before patch merging (stages 1-3 through an
    identity-affine LayerNorm, which is what our converter gives the levels a classification
    checkpoint has no norm for) and the final layernorm-ed stage 4."""
    o = hf(x, output_hidden_states=True, output_hidden_states_before_downsampling=True)
    refs = [F.layer_norm(t.permute(0, 2, 3, 1), (t.shape[1],)).permute(0, 3, 1, 2)
            for t in o.reshaped_hidden_states[1:4]]
    B, L, C = o.last_hidden_state.shape
    side = int(math.isqrt(L))
    refs.append(o.last_hidden_state.transpose(1, 2).reshape(B, C, side, side))
    return refs


@needs_hf
def test_hf_swin_model_parity():
    hf = _randomize(transformers.SwinModel(_hf_swin_config()))
    sd = hf.state_dict()
    assert detect_extra_format(sd) == "hf_swin"
    m = create_model("swin_tiny", num_classes=0).eval()
    m.load_state_dict(convert_hf_swin(sd), strict=True)
    # 256 first: at 224 HF's SwinModel turns the shift of its 7x7 last stage off for good.
    # 256: every stage pads to the window and shifts; 224: no padding, last stage unshifted.
    for size in (256, 224):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            ours, ref = m.forward_features(x), _hf_swin_reference(hf, x)
        assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in ref]
        assert _maxdiff(ours, ref) <= TOL, size


def _to_hub_layout(sd):
    """transformers >= 5 Swin keys -> the Hub checkpoints' (pre-5) keys, as stored on disk."""
    out = {}
    for k, v in sd.items():
        k2 = (k.replace("attention.q_proj", "attention.self.query").replace("attention.k_proj", "attention.self.key")
              .replace("attention.v_proj", "attention.self.value")
              .replace("attention.relative_position_bias.relative_position_bias_table",
                       "attention.self.relative_position_bias_table")
              .replace("attention.o_proj", "attention.output.dense").replace("mlp.fc1", "intermediate.dense")
              .replace("mlp.fc2", "output.dense"))
        out[k2] = v
        if k2.endswith("attention.self.relative_position_bias_table"):
            out[k2.replace("bias_table", "index")] = swin.relative_position_index(7).flatten()
    return out


@needs_hf
def test_hf_swin_classifier_backbone_and_hub_layouts():
    cls = _randomize(transformers.SwinForImageClassification(_hf_swin_config(num_labels=10)), seed=1)
    sd = cls.state_dict()
    m = create_model("swin_tiny", num_classes=10).eval()
    m.load_state_dict(convert_hf_swin(sd), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert float((m(x) - cls(x).logits).abs().max()) <= TOL
    # The Hub's on-disk layout converts to the same tensors; its index buffers are dropped.
    hub = _to_hub_layout(sd)
    assert detect_extra_format(hub) == "hf_swin"
    own, dropped, origin = convert_extra(hub)
    ref = convert_hf_swin(sd)
    assert own.keys() == ref.keys() and all(torch.equal(own[k], ref[k]) for k in own)
    assert dropped and all(k.endswith("relative_position_index") for k, _ in dropped)
    assert origin["layers.2.blocks.5.attn.qkv.weight"] == " + ".join(
        f"swin.encoder.layers.2.blocks.5.attention.self.{p}.weight" for p in ("query", "key", "value"))
    assert origin["head.weight"] == "classifier.weight" and origin["norms.0.weight"].startswith("(new")
    canon, canon_dropped = to_canonical(hub, "hf_swin")  # what the format registry's converter gives
    assert canon.keys() == {"backbone." + k for k in own} and canon_dropped == dropped
    # SwinBackbone: its per-stage norms become norms.0..3; feature maps match exactly.
    bb = _randomize(transformers.SwinBackbone(_hf_swin_config(out_features=["stage1", "stage2", "stage3", "stage4"])),
                    seed=2)
    m = create_model("swin_tiny", num_classes=0).eval()
    m.load_state_dict(convert_hf_swin(bb.state_dict()), strict=True)
    x = torch.randn(1, 3, 256, 256)  # at 256 every stage is larger than a window: no shift clamp anywhere
    with torch.no_grad():
        assert _maxdiff(m.forward_features(x), bb(x).feature_maps) <= TOL


_MOBILEVIT_HF = {  # the apple/mobilevit-xx-small and apple/mobilevit-small configs
    "mobilevit_xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0),
    "mobilevit_s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}


@needs_hf
@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_s"])
def test_hf_mobilevit_model_parity(name):
    hf = _randomize(transformers.MobileViTModel(transformers.MobileViTConfig(**_MOBILEVIT_HF[name])))
    sd = hf.state_dict()
    assert detect_extra_format(sd) == "hf_mobilevit"
    own = convert_hf_mobilevit(sd)
    m = create_model(name, num_classes=1000).eval()  # the classifier has conv_1x1_exp (final_conv)
    missing, unexpected = m.load_state_dict(own, strict=False)
    assert unexpected == [] and all(k.startswith("head.") for k in missing)
    bb = create_model(name, num_classes=0).eval()
    missing, unexpected = bb.load_state_dict(own, strict=False)
    assert missing == [] and all(k.startswith("final_conv.") for k in unexpected)
    # 256: even maps everywhere; 224: 7x7 at stride 32 takes the resize-to-even path.
    for size in ((256, 224) if name == "mobilevit_xxs" else (256,)):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            ref = hf(x, output_hidden_states=True).hidden_states[1:5]
            assert _maxdiff(bb.forward_features(x), ref) <= TOL


@needs_hf
def test_hf_mobilevit_classification_and_segmentation_checkpoints():
    cfg = transformers.MobileViTConfig(num_labels=7, **_MOBILEVIT_HF["mobilevit_xxs"])
    cls = _randomize(transformers.MobileViTForImageClassification(cfg), seed=3)
    m = create_model("mobilevit_xxs", num_classes=7).eval()
    m.load_state_dict(convert_hf_mobilevit(cls.state_dict()), strict=True)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert float((m(x) - cls(x).logits).abs().max()) <= TOL
    seg = _randomize(transformers.MobileViTForSemanticSegmentation(cfg), seed=4)
    sd = {"state_dict": seg.state_dict()}  # wrappers are taken off too
    assert detect_extra_format(sd) == "hf_mobilevit"
    own, dropped, _ = convert_extra(sd)
    assert dropped and all(k.startswith("segmentation_head.") for k, _ in dropped)  # DeepLabV3 head: not ours
    segm = create_model("mobilevit_xxs_segformer", num_classes=7).eval()
    missing, unexpected = segm.load_state_dict({"backbone." + k: v for k, v in own.items()}, strict=False)
    assert unexpected == [] and all(k.startswith("head.") for k in missing)
    with torch.no_grad():
        ref = seg.mobilevit(x, output_hidden_states=True).hidden_states[1:5]
        assert _maxdiff(segm.backbone.forward_features(x), ref) <= TOL


# ============================================================================ official layouts
def _own_to_official_swin(sd, seg: bool):
    out = {}
    for k, v in sd.items():
        m = re.match(r"^norms\.(\d)\.(.*)$", k)
        if m:
            if seg:
                out[f"backbone.norm{m.group(1)}.{m.group(2)}"] = v
            elif m.group(1) == "3":
                out[f"norm.{m.group(2)}"] = v
            continue
        if seg and k.startswith("head."):
            continue
        out[("backbone." if seg else "") + k] = v
        if k.endswith("attn.relative_position_bias_table"):
            out[("backbone." if seg else "") + k.replace("bias_table", "index")] = swin.relative_position_index(7)
    if seg:
        out["decode_head.conv_seg.weight"] = torch.zeros(150, 512, 1, 1)
    return {"state_dict": out} if seg else {"model": out}


def test_official_swin_layouts_round_trip():
    src = _randomize(create_model("swin_tiny", num_classes=10), seed=5)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = src(x)
    # classification release: no norm0..2 -> identity-affine LayerNorms (what mmseg starts from)
    ck = _own_to_official_swin(src.state_dict(), seg=False)
    assert detect_extra_format(ck) == "official_swin"
    own = convert_official_swin(ck)
    assert torch.equal(own["norms.0.weight"], torch.ones(96)) and torch.equal(own["norms.2.bias"], torch.zeros(384))
    m = create_model("swin_tiny", num_classes=10).eval()
    m.load_state_dict(own, strict=True)
    with torch.no_grad():
        assert torch.allclose(m(x), ref, atol=0, rtol=0)
    # segmentation (mmseg) release: every norm{i} present, decode head dropped
    ck = _own_to_official_swin(src.state_dict(), seg=True)
    assert detect_extra_format(ck) == "official_swin"
    own, dropped, origin = convert_extra(ck)
    assert "decode_head.conv_seg.weight" in dict(dropped) and origin["norms.1.weight"] == "backbone.norm1.weight"
    bb = create_model("swin_tiny", num_classes=0).eval()
    bb.load_state_dict(own, strict=True)
    with torch.no_grad():
        assert _maxdiff(bb.forward_features(x), src.forward_features(x)) == 0.0


def _own_to_official_dat(sd):
    """pvtseg DAT keys -> the CVPR 2022 release's keys (models/dat.py, dat_blocks.py)."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"^stages\.(\d)\.blocks\.(\d+)\.(norm1|norm2|attn|mlp)\.(.*)$", k)
        if m:
            i, j, part, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            if part.startswith("norm"):
                out[f"stages.{i}.layer_norms.{2 * j + int(part[-1]) - 1}.{rest}"] = v
            else:
                if part == "attn":  # window attention (L/S) uses Swin's names in pvtseg
                    rest = re.sub(r"^qkv\.", "proj_qkv.", re.sub(r"^proj\.", "proj_out.", rest))
                out[f"stages.{i}.{part}s.{j}.{rest}"] = v
                if rest == "relative_position_bias_table":
                    out[f"stages.{i}.attns.{j}.relative_position_index"] = swin.relative_position_index(7)
            continue
        m = re.match(r"^stages\.(\d)\.downsample\.(.*)$", k)
        if m:
            out[f"down_projs.{m.group(1)}.{m.group(2)}"] = v
        elif k.startswith("norms.3."):
            out["cls_norm." + k[len("norms.3."):]] = v
        elif not k.startswith("norms."):
            out[k] = v
    out["stages.0.attns.1.attn_mask"] = torch.zeros(64, 49, 49)
    return {"model": out}


def test_official_dat_layout_round_trip():
    src = _randomize(create_model("dat_tiny", num_classes=10), seed=6)
    ck = _own_to_official_dat(src.state_dict())
    keys = set(ck["model"])
    # spot checks of the release's names
    assert {"patch_proj.0.weight", "patch_proj.1.norm.weight", "stages.2.layer_norms.3.norm.bias",
            "stages.2.attns.1.conv_offset.0.weight", "stages.2.attns.1.conv_offset.1.norm.weight",
            "stages.2.attns.1.conv_offset.3.weight", "stages.2.attns.1.rpe_table", "stages.3.attns.1.proj_q.weight",
            "stages.0.attns.1.relative_position_bias_table", "stages.0.attns.1.proj_qkv.weight",
            "stages.3.attns.0.proj_out.bias", "stages.3.attns.1.proj_out.weight",
            "stages.1.mlps.0.chunk.linear1.weight", "down_projs.2.0.weight", "down_projs.2.1.norm.weight",
            "cls_norm.norm.weight", "cls_head.weight"} <= keys
    assert ck["model"]["stages.2.attns.1.rpe_table"].shape == (12, 27, 27)  # 14x14 map at 224
    assert ck["model"]["stages.3.attns.1.conv_offset.3.weight"].shape == (2, 128, 1, 1)  # 768 / 6 groups
    assert detect_extra_format(ck) == "official_dat"
    own, dropped, origin = convert_extra(ck)
    assert origin["stages.2.blocks.1.norm2.norm.weight"] == "stages.2.layer_norms.3.norm.weight"
    assert set(dict(dropped)) == {k for k in keys if k.endswith(("relative_position_index", "attn_mask"))}
    m = create_model("dat_tiny", num_classes=10).eval()
    m.load_state_dict(own, strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(m(x), src(x))
    assert torch.equal(convert_official_dat(ck)["norms.0.norm.weight"], torch.ones(96))


def test_own_layouts_are_not_mistaken_for_other_formats():
    for name in ("swin_tiny", "mobilevit_xxs", "dat_tiny", "mswin_tiny", "pvt_v2_b0"):
        assert detect_extra_format(create_model(name).state_dict()) is None, name


# ============================================================================ Swin properties
def _small_dat(sampler):
    return dat.DAT(dims=(32, 64, 128, 256), depths=(1, 1, 2, 2), heads=(1, 2, 4, 8),
                   stage_spec=(("L",), ("S",), ("L", "D"), ("L", "D")), groups=(-1, -1, 2, 4), num_classes=0,
                   sampler=sampler)


def _official_shift_mask(H, W, w, s):
    """The official Swin construction (slice assignment of 9 regions)."""
    img = torch.zeros(1, H, W, 1)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    win = img.view(1, H // w, w, W // w, w, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


@pytest.mark.parametrize("H,W,w,s", [(14, 14, 7, 3), (21, 35, 7, 3), (14, 28, 7, 4), (16, 8, 4, 2)])
def test_shift_mask_equals_official_construction(H, W, w, s):
    assert torch.equal(swin.shifted_window_mask(H, W, w, s, torch.device("cpu")), _official_shift_mask(H, W, w, s))


def test_shifted_window_never_attends_across_the_mask():
    blk = _randomize(swin.SwinBlock(32, 2, 7, 3, 4.0, True, 0.0), seed=7)
    H = W = 14
    mask = swin.shifted_window_mask(H, W, 7, 3, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, H * W, 32, generator=g)
    y = x.clone()
    y[0, 13 * W + 13] += 3.0 * torch.randn(32, generator=g)  # perturb the bottom-right token
    with torch.no_grad():
        d = (blk(y, H, W, mask) - blk(x, H, W, mask)).abs().amax(-1).reshape(H, W)
        zero = torch.zeros_like(mask)
        d_unmasked = (blk(y, H, W, zero) - blk(x, H, W, zero)).abs().amax(-1).reshape(H, W)
    # After the -3 cyclic shift, the bottom-right window holds image rows/cols 10..13 (the
    # token's real neighbours) and rows/cols 0..2 wrapped around from the opposite border.
    neighbours = torch.zeros(H, W, dtype=torch.bool)
    neighbours[10:, 10:] = True
    window = torch.zeros(H, W, dtype=torch.bool)
    for r in list(range(10, 14)) + [0, 1, 2]:
        for c in list(range(10, 14)) + [0, 1, 2]:
            window[r, c] = True
    wrapped = window & ~neighbours
    assert bool((d[neighbours] > 0).all())
    assert float(d[~neighbours].max()) == 0.0  # the wrapped tokens never see it (nor anything else)
    assert bool((d_unmasked[wrapped] > 0).all())  # ... which they would without the mask
    assert float(d_unmasked[~window].max()) == 0.0


def test_torchscript_computes_masks_for_each_size():
    """One scripted model runs at several sizes, each equal to eager: no size is baked in
    (Swin's shift mask, DAT's padding and reference points, MSwin's padding masks).
    Small widths, same code paths as the registered models."""
    models = [
        swin.SwinTransformer(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), num_classes=0),
        _small_dat("grid_sample"),
        mswin.MSwinTransformer(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), dim_heads=(8, 16, 32),
                               num_classes=0),
    ]
    for m in models:
        m = _randomize(m, seed=8)
        s = torch.jit.script(m)
        for size in (224, 256, 448):  # 448: Swin's last stage (14x14) shifts without padding
            x = torch.randn(1, 3, size, size)
            with torch.no_grad():
                assert _maxdiff(s.forward_features(x), m.forward_features(x)) <= TOL, (type(m).__name__, size)


# ============================================================================ DAT properties
def _manual_bilinear(img, ys, xs):
    """Bilinear value of img (C, H, W) at pixel coordinates (ys, xs), zero outside."""
    C, H, W = img.shape
    out = torch.zeros(C, len(ys), dtype=torch.float64)
    for n, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
        y0, x0 = math.floor(y), math.floor(x)
        for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
            if 0 <= yy < H and 0 <= xx < W:
                out[:, n] += img[:, yy, xx].double() * (1 - abs(y - yy)) * (1 - abs(x - xx))
    return out


@pytest.mark.parametrize("sampler", ["grid_sample", "gather"])
def test_dat_zero_offsets_sample_at_reference_points(sampler):
    att = _randomize(dat.DAttention(48, 6, 3, 2.0, 5, 8, use_gather=sampler == "gather"), seed=9)
    with torch.no_grad():
        att.conv_offset[3].weight.zero_()  # the offset head predicts 0 everywhere
        x = torch.randn(2, 48, 8, 10)
        sampled, pos, ref = att.sample_points(x, att.proj_q(x))
    assert torch.equal(pos, ref.expand_as(pos))
    # reference points: cell centres, (i + 0.5) / n * 2 - 1, as (y, x)
    assert torch.allclose(ref[0, :, 0, 0], (torch.arange(8) + 0.5) / 8 * 2 - 1)
    assert torch.allclose(ref[0, 0, :, 1], (torch.arange(10) + 0.5) / 10 * 2 - 1)
    # ... sampled bilinearly with align_corners=True (the official convention)
    ys = ((ref[0, ..., 0] + 1) / 2 * 7).flatten()
    xs = ((ref[0, ..., 1] + 1) / 2 * 9).flatten()
    groups = x.reshape(6, 16, 8, 10)  # (B * groups, C / groups, H, W)
    for bg in range(6):
        expect = _manual_bilinear(groups[bg], ys, xs)
        assert float((sampled[bg].reshape(16, -1).double() - expect).abs().max()) <= 1e-6


def test_gather_sampler_equals_grid_sample():
    g = torch.Generator().manual_seed(10)
    inp = torch.randn(3, 5, 9, 13, generator=g)
    grid = torch.rand(3, 7, 11, 2, generator=g) * 2.6 - 1.3  # inside and outside [-1, 1]
    grid[0, 0, :5] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0]])  # corners, centre
    grid[1, 0, :3] = torch.tensor([[-1.0 - 1e-7, 0.5], [1.0 + 1e-7, -0.5], [0.25, 1.0 + 1 / 8 - 1e-6]])  # borders
    ref = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    assert float((dat.bilinear_gather(inp, grid) - ref).abs().max()) <= 1e-6
    scripted = torch.jit.script(dat.bilinear_gather)
    assert float((scripted(inp, grid) - ref).abs().max()) <= 1e-6


def test_dat_gather_sampler_model_parity_and_onnx_ops(tmp_path):
    onnx = pytest.importorskip("onnx")
    from pvtseg.engine.trt_ops import check_onnx_for_tensorrt

    m = _randomize(_small_dat("grid_sample"), seed=11)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        ref = m.forward_features(x)
        dat.set_sampler(m, "gather")
        assert _maxdiff(m.forward_features(x), ref) <= 1e-5
    ops = {}
    for sampler in ("grid_sample", "gather"):
        dat.set_sampler(m, sampler)
        path = tmp_path / f"{sampler}.onnx"
        torch.onnx.export(m, (x,), str(path), opset_version=17, dynamo=False)
        model = onnx.load(str(path))
        ops[sampler] = {n.op_type for n in model.graph.node}
        assert check_onnx_for_tensorrt(model) == [], sampler
    assert "GridSample" in ops["grid_sample"] and "GridSample" not in ops["gather"]


# ============================================================================ MSwin properties
def test_mswin_branch_attends_only_inside_its_window():
    for window in (4, 8):
        br = _randomize(mswin.BaseWindowAttention(32, 2, 16, window), seed=12)
        x = torch.randn(1, 16, 16, 32)
        y = x.clone()
        y[0, 5, 6] += 5.0  # window row 5 // w, col 6 // w
        with torch.no_grad():
            d = (br(y) - br(x)).abs().amax(-1)[0]
        r0, c0 = 5 // window * window, 6 // window * window
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[r0:r0 + window, c0:c0 + window] = True
        assert float(d[~inside].max()) == 0.0
        assert bool((d[inside] > 0).all())


def test_mswin_padded_window_ignores_padding():
    """A 10x10 map in 4x4 windows pads to 12x12; the partial corner window (2x2 real tokens)
    must equal attention over its 4 real tokens alone."""
    br = _randomize(mswin.BaseWindowAttention(16, 2, 8, 4), seed=13)
    x = torch.randn(1, 10, 10, 16)
    with torch.no_grad():
        out = br(x)
        tok = x[0, 8:10, 8:10].reshape(4, 16)
        qkv = br.to_qkv(tok).reshape(4, 3, 2, 8).permute(1, 2, 0, 3)  # (3, heads, 4, 8)
        idx = torch.tensor([0, 1, 4, 5])  # positions of the real tokens inside the 4x4 window
        bias = br.pos_embedding.flatten()[br.relative_index].reshape(16, 16)[idx][:, idx]
        attn = (qkv[0] @ qkv[1].transpose(-2, -1) * 8 ** -0.5 + bias).softmax(-1)
        expect = br.to_out((attn @ qkv[2]).transpose(0, 1).reshape(4, 16)).reshape(2, 2, 16)
    assert float((out[0, 8:10, 8:10] - expect).abs().max()) <= 1e-6


def test_mswin_split_attention_weights_are_a_softmax_over_branches():
    sa = _randomize(mswin.SplitAttn(8, 3), seed=14)
    same = torch.randn(2, 4, 4, 8)
    with torch.no_grad():
        # identical branches -> the fused output is that branch (weights sum to 1 per channel)
        assert float((sa([same, same, same]) - same).abs().max()) <= 1e-6


# ============================================================================ export pipeline
# The tiniest variant of each family by default; PVTSEG_EXPORT_ALL=1 adds the others (same
# code, other widths/depths); PVTSEG_EXPORT_512=1 runs every case at 512x512.
FULL_512 = os.environ.get("PVTSEG_EXPORT_512", "") not in ("", "0")
EXPORT_ALL = FULL_512 or os.environ.get("PVTSEG_EXPORT_ALL", "") not in ("", "0")
EXPORT_SIZES = {"mobilevit_xxs": 512, "swin_tiny": 256, "dat_tiny": 256, "mswin_tiny": 256}
if EXPORT_ALL:
    EXPORT_SIZES.update({"swin_small": 256, "mobilevit_xs": 256, "mobilevit_s": 256, "mswin_small": 256})


def _static_graph_problems(model) -> list:
    """Shape-computing ops or non-constant size inputs left in an exported graph."""
    g = model.graph
    const = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    problems = [f"{n.op_type} {n.name}" for n in g.node if n.op_type in ("Shape", "Size", "Range", "NonZero")]
    for n in g.node:
        if n.op_type in ("Resize", "Reshape", "Expand", "Slice", "Tile", "ConstantOfShape", "Pad"):
            problems += [f"{n.op_type} {n.name}: run-time input {i}" for i in n.input[1:] if i and i not in const]
    return problems


@pytest.mark.parametrize("head", ["fpn", "segformer"])
@pytest.mark.parametrize("backbone", list(EXPORT_SIZES))
def test_export_parity_and_tensorrt_ops(backbone, head, tmp_path):
    """ONNX Runtime and TorchScript vs eager through export_model (raises on a mismatch
    > 1e-4 or < 99.9% label agreement); every ONNX op in TensorRT's parser matrix; every
    size in the graph a constant (no Shape-derived Resize/Reshape)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from pvtseg.engine.trt_ops import check_onnx_for_tensorrt
    from pvtseg.export import export_model

    size = 512 if FULL_512 else EXPORT_SIZES[backbone]
    name = f"{backbone}_{head}"
    model = _randomize(create_model(name, num_classes=11), seed=15)
    lines = []
    paths = export_model(model, tmp_path / name, arch=name, height=size, width=size, output="logits",
                         log=lines.append)
    checks = [ln for ln in lines if ln.startswith("check ")]
    assert len(checks) >= 4, lines  # ONNX Runtime + TorchScript, random input + a CamVid frame
    graph = onnx.load(str(paths["onnx"]))
    assert check_onnx_for_tensorrt(graph) == []
    assert _static_graph_problems(graph) == []


def test_load_checkpoint_detects_extra_formats():
    """load_checkpoint recognises the Swin layouts through the format registry."""
    from transformers import SwinConfig, SwinModel

    from pvtseg.models import create_model, load_checkpoint

    hf = SwinModel(SwinConfig()).eval()
    model = create_model("swin_tiny_fpn", num_classes=11)
    report = load_checkpoint(model, hf.state_dict(), strict=True)
    assert report.format == "hf_swin"
    # The converted weights really landed in the backbone: patch embedding equals HF's.
    ours = model.backbone.state_dict()
    hf_w = hf.state_dict()["embeddings.patch_embeddings.projection.weight"]
    assert any(torch.equal(v, hf_w) for v in ours.values())
