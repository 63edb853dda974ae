"""Swin Transformer checkpoints -> pvtseg's Swin keys (models/swin.py, the official layout).

    hf_swin        transformers SwinModel / SwinForImageClassification / SwinBackbone, in the Hub
                   layout (attention.self.query, attention.output.dense, intermediate.dense,
                   output.dense) and the transformers >= 5 layout (attention.q_proj, o_proj,
                   relative_position_bias.relative_position_bias_table, mlp.fc1)
    official_swin  microsoft/Swin-Transformer classification releases (layers.0.blocks.0.attn.qkv,
                   norm, head) and its segmentation (mmseg) releases (backbone.norm0..norm3)

Buffers the model recomputes (relative_position_index, attn_mask) and the mmseg heads are dropped.
"""

from __future__ import annotations

import re
from typing import List, Mapping, Tuple

from .family import (BUFFER, FamilyConverted, KeyCollector, StateDict, drop_buffer_or_mmseg_head,
                     put_attention_block, register_family, strip_prefixes)
from .reader import unwrap_state_dict
from .registry import any_key

_HF_BLOCK = [  # (HF suffix after `blocks.{j}.`, own suffix); q/k/v handled apart
    (r"layernorm_before\.", "norm1."), (r"layernorm_after\.", "norm2."),
    (r"attention\.(o_proj|output\.dense)\.", "attn.proj."),
    (r"attention\.(relative_position_bias\.|self\.)relative_position_bias_table$", "attn.relative_position_bias_table"),
    (r"(mlp\.fc1|intermediate\.dense)\.", "mlp.fc1."), (r"(mlp\.fc2|output\.dense)\.", "mlp.fc2."),
]
_HF_QKV = r"^attention\.(?:self\.)?(q_proj|k_proj|v_proj|query|key|value)\.(weight|bias)$"
_HF_TOP = {"embeddings.patch_embeddings.projection.": "patch_embed.proj.", "embeddings.norm.": "patch_embed.norm.",
           "layernorm.": "norms.3.", "classifier.": "head."}


def detect_hf(sd: StateDict) -> bool:
    return (any_key(sd, r"^embeddings\.patch_embeddings\.projection\.weight$")
            and any_key(sd, r"^encoder\.layers\.0\.blocks\."))


def detect_official(sd: StateDict) -> bool:
    # pvtseg's own Swin keys add norms.{i}; MSwin's add attn.pwmsa: neither is an official release.
    return (any_key(sd, r"^layers\.0\.blocks\.0\.attn\.qkv\.weight$") and any_key(sd, r"^patch_embed\.proj\.weight$")
            and not any_key(sd, r"^norms\.\d\.") and not any_key(sd, r".*\.attn\.pwmsa\."))


def _hf_top_level(out: KeyCollector, k: str, v) -> None:
    for src, dst in _HF_TOP.items():
        if k.startswith(src):
            new = dst + k[len(src):]
            if dst == "norms.3." and new in out.tensors:
                out.drop(k, "SwinModel's final layernorm; SwinBackbone's stage-4 norm is used")
            else:
                out.put(new, k, v)
            return
    out.drop(k, "not part of pvtseg's Swin (mask token / absolute position embedding / pooler)")


def convert_hf_own(sd: StateDict) -> FamilyConverted:
    sd, names = strip_prefixes(sd, ("swin.", "backbone."))
    out = KeyCollector(names)
    for k, v in sd.items():
        m = re.match(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.*)$", k)
        if m:
            prefix = f"layers.{m.group(1)}.blocks.{m.group(2)}."
            put_attention_block(out, prefix, m.group(3), k, v, _HF_QKV, _HF_BLOCK, BUFFER)
            continue
        m = re.match(r"^encoder\.layers\.(\d+)\.downsample\.(.*)$", k)
        if m:
            out.put(f"layers.{m.group(1)}.downsample.{m.group(2)}", k, v)
            continue
        m = re.match(r"^hidden_states_norms\.stage(\d)\.(weight|bias)$", k)
        if m:  # SwinBackbone's per-level norms (its stage 4 norm wins over SwinModel's layernorm)
            out.put(f"norms.{int(m.group(1)) - 1}.{m.group(2)}", k, v)
            continue
        _hf_top_level(out, k, v)
    _identity_norms(out, "HF Swin")
    return out.result("HF Swin")


def convert_official_own(sd: StateDict) -> FamilyConverted:
    sd, names = strip_prefixes(sd, ("backbone.",))
    out = KeyCollector(names)
    for k, v in sd.items():
        if drop_buffer_or_mmseg_head(out, k):
            continue
        m = re.match(r"^norm(\d)?\.(weight|bias)$", k)
        out.put(f"norms.{m.group(1) or 3}.{m.group(2)}" if m else k, k, v)
    _identity_norms(out, "official Swin")
    return out.result("official Swin")


def _identity_norms(out: KeyCollector, what: str) -> None:
    embed = out.require("patch_embed.proj.weight", what)
    out.identity_norms([0, 1, 2, 3], lambda i: f"norms.{i}", lambda i: embed.shape[0] * 2 ** i, embed)


def convert_hf_swin(sd: Mapping) -> StateDict:
    """HF Swin state dict (any wrapper) -> pvtseg Swin classifier keys."""
    return convert_hf_own(unwrap_state_dict(sd)).tensors


def convert_official_swin(sd: Mapping) -> StateDict:
    """Official / mmseg Swin checkpoint (any wrapper) -> pvtseg Swin classifier keys."""
    return convert_official_own(unwrap_state_dict(sd)).tensors


_FORMATS: List[Tuple] = [
    ("hf_swin", "Hugging Face transformers SwinModel / SwinForImageClassification / SwinBackbone "
                "(Hub or transformers-5 key names)", detect_hf, convert_hf_own, 90),
    ("official_swin", "microsoft/Swin-Transformer release ({'model': ...}; layers.0.blocks.0.attn.qkv, norm, head) "
                      "or its mmseg segmentation release (backbone.norm0..3)", detect_official, convert_official_own,
     110),
]
for _fmt in _FORMATS:
    register_family(*_fmt)
