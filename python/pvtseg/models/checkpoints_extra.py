"""Checkpoint formats of the Swin / MobileViT / DAT backbones -> pvtseg's own keys.

    fmt = detect_extra_format(sd)            # "hf_swin" | "official_swin" | "hf_mobilevit" | "official_dat" | None
    own, dropped = convert_extra(sd, fmt)    # own backbone/classifier keys, source keys left out on purpose

Formats (wrappers {"model": ...} / {"state_dict": ...} / {"module": ...} and the prefixes
`backbone.`, `module.`, `swin.`, `mobilevit.` are taken off first):
- "hf_swin": transformers `SwinModel`, `SwinForImageClassification`, `SwinBackbone`, in the
  Hub layout (`attention.self.query`, `attention.output.dense`, `intermediate.dense`,
  `output.dense`) and the transformers >= 5 layout (`attention.q_proj`, `o_proj`,
  `relative_position_bias.relative_position_bias_table`, `mlp.fc1`).
- "official_swin": microsoft/Swin-Transformer classification releases (`layers.0.blocks.0.
  attn.qkv`, `norm`, `head`) and its segmentation (mmseg) releases (`backbone.norm0`..`norm3`).
- "hf_mobilevit": transformers `MobileViTModel`, `MobileViTForImageClassification`,
  `MobileViTForSemanticSegmentation` (its DeepLabV3 head is dropped: pvtseg's heads differ).
- "official_dat": LeapLabTHU/DAT (CVPR 2022 release) classification checkpoints, and the
  same keys under `backbone.` with per-level `norms.{i}.norm` (mmseg segmentation code).

Outputs are in the classifier layout of swin.py / mobilevit.py / dat.py (no `backbone.`
prefix). For a backbone or segmentor, leave out the keys under CLASSIFIER_ONLY_PREFIXES
(the ImageNet head, MobileViT's 1x1 expansion conv) and, for a segmentor, prefix the rest
with "backbone."; the segmentation head's keys are then missing and need training. Classification checkpoints have no LayerNorm for pyramid levels
0..2 (`norms.0`..`norms.2` of Swin and DAT): like mmseg, they start as identity-affine
LayerNorms, and the converter puts those ones/zeros in the output so a strict load passes.
Buffers the models recompute (`relative_position_index`, `attn_mask`) and heads pvtseg
does not have are returned in `dropped`.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

StateDict = Dict[str, Tensor]
FORMATS = ("hf_swin", "official_swin", "hf_mobilevit", "official_dat")
# Converted keys that only a classifier has (drop them when loading into a backbone/segmentor).
CLASSIFIER_ONLY_PREFIXES = ("head.", "final_conv.", "cls_head.")


# ----------------------------------------------------------------------------- helpers
def _unwrap(sd: Mapping) -> StateDict:
    for key in ("state_dict", "model", "module"):
        if key in sd and isinstance(sd[key], Mapping):
            return _unwrap(sd[key])
    return {k: v for k, v in sd.items() if isinstance(v, Tensor)}


def _strip(sd: StateDict, prefixes: Tuple[str, ...]) -> StateDict:
    """Remove a leading `module.` and then one of `prefixes` from keys that carry it."""
    out: StateDict = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def _any(sd: Mapping, pattern: str) -> bool:
    rx = re.compile(pattern)
    return any(rx.search(k) for k in sd)


def _identity_norms(out: StateDict, levels: List[int], key: Callable[[int], str], width: Callable[[int], int],
                    like: Tensor) -> None:
    """Fresh LayerNorms (weight 1, bias 0) for pyramid levels a classification checkpoint lacks."""
    for i in levels:
        if f"{key(i)}.weight" not in out:
            c = width(i)
            out[f"{key(i)}.weight"] = torch.ones(c, dtype=like.dtype)
            out[f"{key(i)}.bias"] = torch.zeros(c, dtype=like.dtype)


# ----------------------------------------------------------------------------- detection
def detect_extra_format(sd: Mapping) -> Optional[str]:
    """One of FORMATS, or None (not one of these formats, e.g. already pvtseg's own keys)."""
    sd = _strip(_unwrap(sd), ("backbone.", "swin.", "mobilevit."))
    if _any(sd, r"^embeddings\.patch_embeddings\.projection\.weight$") and _any(sd, r"^encoder\.layers\.0\.blocks\."):
        return "hf_swin"
    if _any(sd, r"^conv_stem\.convolution\.weight$") and _any(sd, r"^encoder\.layer\.0\."):
        return "hf_mobilevit"
    if _any(sd, r"^layers\.0\.blocks\.0\.attn\.qkv\.weight$") and _any(sd, r"^patch_embed\.proj\.weight$") \
            and not _any(sd, r"^norms\.\d\.") and not _any(sd, r"\.attn\.pwmsa\."):
        return "official_swin"
    if _any(sd, r"^patch_proj\.0\.weight$") and _any(sd, r"^stages\.0\.(layer_norms|attns|mlps)\."):
        return "official_dat"
    return None


def convert_extra(sd: Mapping, fmt: Optional[str] = None) -> Tuple[StateDict, List[str]]:
    """Convert `sd` (format `fmt`, detected when None) -> (own keys, dropped source keys)."""
    fmt = fmt or detect_extra_format(sd)
    if fmt not in _CONVERTERS:
        raise ValueError(f"not a Swin / MobileViT / DAT checkpoint format: {fmt!r}; known: {', '.join(FORMATS)}")
    return _CONVERTERS[fmt](_unwrap(sd))


def convert_hf_swin(sd: Mapping) -> StateDict:
    return convert_extra(sd, "hf_swin")[0]


def convert_official_swin(sd: Mapping) -> StateDict:
    return convert_extra(sd, "official_swin")[0]


def convert_hf_mobilevit(sd: Mapping) -> StateDict:
    return convert_extra(sd, "hf_mobilevit")[0]


def convert_official_dat(sd: Mapping) -> StateDict:
    return convert_extra(sd, "official_dat")[0]


# ----------------------------------------------------------------------------- Swin
_HF_SWIN_BLOCK = [  # (HF suffix after `blocks.{j}.`, own suffix); q/k/v handled apart
    (r"layernorm_before\.", "norm1."), (r"layernorm_after\.", "norm2."),
    (r"attention\.(o_proj|output\.dense)\.", "attn.proj."),
    (r"attention\.(relative_position_bias\.|self\.)relative_position_bias_table$", "attn.relative_position_bias_table"),
    (r"(mlp\.fc1|intermediate\.dense)\.", "mlp.fc1."), (r"(mlp\.fc2|output\.dense)\.", "mlp.fc2."),
]
_QKV = {"q_proj": 0, "query": 0, "k_proj": 1, "key": 1, "v_proj": 2, "value": 2}


def _hf_swin(sd: StateDict) -> Tuple[StateDict, List[str]]:
    sd = _strip(sd, ("swin.", "backbone."))
    out: StateDict = {}
    dropped: List[str] = []
    qkv: Dict[str, Dict[str, List[Optional[Tensor]]]] = {}
    for k, v in sd.items():
        m = re.match(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.*)$", k)
        if m:
            prefix, rest = f"layers.{m.group(1)}.blocks.{m.group(2)}.", m.group(3)
            q = re.match(r"^attention\.(?:self\.)?(q_proj|k_proj|v_proj|query|key|value)\.(weight|bias)$", rest)
            if q:
                qkv.setdefault(prefix + "attn.qkv", {}).setdefault(q.group(2), [None, None, None])[_QKV[q.group(1)]] = v
                continue
            for pat, rep in _HF_SWIN_BLOCK:
                if re.match(pat, rest):
                    out[prefix + re.sub("^" + pat, rep, rest)] = v
                    break
            else:
                dropped.append(k)  # relative_position_index buffers
            continue
        m = re.match(r"^encoder\.layers\.(\d+)\.downsample\.(.*)$", k)
        if m:
            out[f"layers.{m.group(1)}.downsample.{m.group(2)}"] = v
            continue
        m = re.match(r"^hidden_states_norms\.stage(\d)\.(weight|bias)$", k)
        if m:
            out[f"norms.{int(m.group(1)) - 1}.{m.group(2)}"] = v
            continue
        simple = {"embeddings.patch_embeddings.projection.": "patch_embed.proj.", "embeddings.norm.": "patch_embed.norm.",
                  "layernorm.": "norms.3.", "classifier.": "head."}
        for src, dst in simple.items():
            if k.startswith(src):
                if not (dst == "norms.3." and f"norms.3.{k[len(src):]}" in out):
                    out[dst + k[len(src):]] = v
                break
        else:
            dropped.append(k)  # mask_token, position_embeddings (absent in Swin-T/S), pooler...
    for key, parts in qkv.items():
        for kind, tensors in parts.items():
            if any(t is None for t in tensors):
                raise ValueError(f"HF Swin checkpoint lacks one of query/key/value {kind} for {key}")
            out[f"{key}.{kind}"] = torch.cat([t for t in tensors if t is not None], dim=0)
    _swin_identity_norms(out)
    return out, dropped


def _swin_identity_norms(out: StateDict) -> None:
    embed = out["patch_embed.proj.weight"]
    _identity_norms(out, [0, 1, 2, 3], lambda i: f"norms.{i}", lambda i: embed.shape[0] * 2 ** i, embed)


def _official_swin(sd: StateDict) -> Tuple[StateDict, List[str]]:
    sd = _strip(sd, ("backbone.",))
    out: StateDict = {}
    dropped: List[str] = []
    for k, v in sd.items():
        if k.endswith("relative_position_index") or k.endswith("attn_mask") or k.startswith(
                ("decode_head.", "auxiliary_head.", "neck.")):
            dropped.append(k)
            continue
        m = re.match(r"^norm(\d)?\.(weight|bias)$", k)
        if m:
            out[f"norms.{m.group(1) or 3}.{m.group(2)}"] = v
        else:
            out[k] = v
    _swin_identity_norms(out)
    return out, dropped


# ----------------------------------------------------------------------------- MobileViT
_HF_MV2 = [(r"expand_1x1\.", "expand."), (r"conv_3x3\.", "dw."), (r"reduce_1x1\.", "reduce.")]
_HF_CONV = [(r"\.convolution\.", ".conv."), (r"\.normalization\.", ".bn.")]
_HF_MVIT_LAYER = [
    (r"attention\.output\.dense\.", "attn.proj."), (r"intermediate\.dense\.", "mlp.fc1."),
    (r"output\.dense\.", "mlp.fc2."), (r"layernorm_before\.", "norm1."), (r"layernorm_after\.", "norm2."),
]


def _conv_names(s: str) -> str:
    for pat, rep in _HF_CONV + _HF_MV2:
        s = re.sub(pat, rep, s)
    return s


def _hf_mobilevit(sd: StateDict) -> Tuple[StateDict, List[str]]:
    sd = _strip(sd, ("mobilevit.",))
    out: StateDict = {}
    dropped: List[str] = []
    qkv: Dict[str, Dict[str, List[Optional[Tensor]]]] = {}
    for k, v in sd.items():
        if k.startswith("conv_stem."):
            out["stem." + _conv_names("." + k[len("conv_stem."):])[1:]] = v
            continue
        if k.startswith("conv_1x1_exp."):
            out["final_conv." + _conv_names("." + k[len("conv_1x1_exp."):])[1:]] = v
            continue
        if k.startswith("classifier."):
            out["head.1." + k[len("classifier."):]] = v
            continue
        m = re.match(r"^encoder\.layer\.(\d)\.(.*)$", k)
        if not m:
            dropped.append(k)  # segmentation_head.* (DeepLabV3)
            continue
        i, rest = int(m.group(1)), m.group(2)
        if i < 2:  # MobileNetV2 layers: encoder.layer.i.layer.j.<mv2>
            mj = re.match(r"^layer\.(\d+)\.(.*)$", rest)
            if not mj:
                dropped.append(k)
                continue
            out[f"stages.{i}.{mj.group(1)}." + _conv_names("." + mj.group(2))[1:]] = v
            continue
        mt = re.match(r"^transformer\.layer\.(\d+)\.(.*)$", rest)
        if mt:
            prefix, r2 = f"stages.{i}.transformer.{mt.group(1)}.", mt.group(2)
            q = re.match(r"^attention\.attention\.(query|key|value)\.(weight|bias)$", r2)
            if q:
                qkv.setdefault(prefix + "attn.qkv", {}).setdefault(q.group(2), [None, None, None])[_QKV[q.group(1)]] = v
                continue
            for pat, rep in _HF_MVIT_LAYER:
                if re.match(pat, r2):
                    out[prefix + re.sub("^" + pat, rep, r2)] = v
                    break
            else:
                dropped.append(k)
            continue
        rest = re.sub(r"^downsampling_layer\.", "down.", rest)
        rest = re.sub(r"^conv_projection\.", "conv_proj.", rest)
        rest = re.sub(r"^layernorm\.", "norm.", rest)
        out[f"stages.{i}." + _conv_names("." + rest)[1:]] = v
    for key, parts in qkv.items():
        for kind, tensors in parts.items():
            if any(t is None for t in tensors):
                raise ValueError(f"HF MobileViT checkpoint lacks one of query/key/value {kind} for {key}")
            out[f"{key}.{kind}"] = torch.cat([t for t in tensors if t is not None], dim=0)
    return out, dropped


# ----------------------------------------------------------------------------- DAT
def _official_dat(sd: StateDict) -> Tuple[StateDict, List[str]]:
    sd = _strip(sd, ("backbone.",))
    out: StateDict = {}
    dropped: List[str] = []
    for k, v in sd.items():
        if k.endswith("relative_position_index") or k.endswith("attn_mask") or k.startswith(
                ("decode_head.", "auxiliary_head.", "neck.")):
            dropped.append(k)
            continue
        m = re.match(r"^stages\.(\d)\.layer_norms\.(\d+)\.(.*)$", k)
        if m:
            j, which = divmod(int(m.group(2)), 2)
            out[f"stages.{m.group(1)}.blocks.{j}.norm{which + 1}.{m.group(3)}"] = v
            continue
        m = re.match(r"^stages\.(\d)\.(attns|mlps)\.(\d+)\.(.*)$", k)
        if m:
            out[f"stages.{m.group(1)}.blocks.{m.group(3)}.{'attn' if m.group(2) == 'attns' else 'mlp'}.{m.group(4)}"] = v
            continue
        m = re.match(r"^down_projs\.(\d)\.(.*)$", k)
        if m:
            out[f"stages.{m.group(1)}.downsample.{m.group(2)}"] = v
            continue
        if k.startswith("cls_norm."):
            out["norms.3." + k[len("cls_norm."):]] = v
            continue
        if re.match(r"^stages\.\d\.proj\.", k):
            dropped.append(k)  # 1x1 stage projection; Identity in every released config
            continue
        out[k] = v
    stem = out["patch_proj.0.weight"]
    _identity_norms(out, [0, 1, 2, 3], lambda i: f"norms.{i}.norm", lambda i: stem.shape[0] * 2 ** i, stem)
    return out, dropped


_CONVERTERS: Dict[str, Callable[[StateDict], Tuple[StateDict, List[str]]]] = {
    "hf_swin": _hf_swin, "official_swin": _official_swin, "hf_mobilevit": _hf_mobilevit,
    "official_dat": _official_dat,
}
