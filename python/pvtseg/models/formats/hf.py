"""Hugging Face transformers checkpoints of the PVT family.

    hf-pvt           PvtModel / PvtForImageClassification
                     pvt.encoder.patch_embeddings.0.position_embeddings, pvt.encoder.block.0.0.attention.self.key
    hf-pvt-v2        PvtV2Model / PvtV2ForImageClassification
                     pvt_v2.encoder.layers.0.blocks.0.attention.query, ...mlp.dwconv.dwconv
    hf-segformer     Segformer{Model,ForSemanticSegmentation,ForImageClassification} with the 4.x
                     key names that checkpoints on the Hub use (segformer.encoder.block.0.0...)
    hf-segformer-5   the same models' state_dict() under transformers 5.x (segformer.stages.0...)

HF keeps key and value as two Linears; rules.fuse_kv joins them into pvtseg's attn.kv.
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Tuple

from torch import Tensor

from .registry import Converted, Format, add_format, any_key
from .rules import BN, WB, block, convert_by_rules, inner, rules, stage

_PVT_BLOCK = inner([
    ("layer_norm_1", "norm1"), ("attention.self.query", "attn.q"), ("attention.self.key", "attn.k"),
    ("attention.self.value", "attn.v"), ("attention.self.sequence_reduction", "attn.sr"),
    ("attention.self.layer_norm", "attn.norm"), ("attention.output.dense", "attn.proj"),
    ("layer_norm_2", "norm2"), ("mlp.dense1", "mlp.fc1"), ("mlp.dense2", "mlp.fc2")])
_PVT2_BLOCK = inner([
    ("layer_norm_1", "norm1"), ("attention.query", "attn.q"), ("attention.key", "attn.k"),
    ("attention.value", "attn.v"), ("attention.spatial_reduction", "attn.sr"),
    ("attention.layer_norm", "attn.norm"), ("attention.proj", "attn.proj"), ("layer_norm_2", "norm2"),
    ("mlp.dense1", "mlp.fc1"), ("mlp.dwconv.dwconv", "mlp.dwconv"), ("mlp.dense2", "mlp.fc2")])
_SEG4_BLOCK = inner([
    ("layer_norm_1", "norm1"), ("attention.self.query", "attn.q"), ("attention.self.key", "attn.k"),
    ("attention.self.value", "attn.v"), ("attention.self.sr", "attn.sr"),
    ("attention.self.layer_norm", "attn.norm"), ("attention.output.dense", "attn.proj"),
    ("layer_norm_2", "norm2"), ("mlp.dense1", "mlp.fc1"), ("mlp.dwconv.dwconv", "mlp.dwconv"),
    ("mlp.dense2", "mlp.fc2")])
_SEG5_BLOCK = inner([
    ("layernorm_before", "norm1"), ("attention.q_proj", "attn.q"), ("attention.k_proj", "attn.k"),
    ("attention.v_proj", "attn.v"), ("attention.o_proj", "attn.proj"),
    ("attention.sequence_reduction.sequence_reduction", "attn.sr"),
    ("attention.sequence_reduction.layer_norm", "attn.norm"), ("layernorm_after", "norm2"),
    ("mlp.fc1", "mlp.fc1"), ("mlp.dwconv.dwconv", "mlp.dwconv"), ("mlp.fc2", "mlp.fc2")])

_CLASSIFIER = (r"classifier\." + WB, r"backbone.head.\g<p>")
_SEGFORMER_HEAD = [
    (r"decode_head\.linear_fuse\.weight", "head.linear_fuse.conv.weight"),
    (r"decode_head\.batch_norm\." + BN, r"head.linear_fuse.bn.\g<p>"),
    (r"decode_head\.classifier\." + WB, r"head.linear_pred.\g<p>"),
    _CLASSIFIER,
]


def _pyramid(embed: str, embed_norm: str, blocks: str, block_table: Callable[[str], Optional[str]],
             stage_norm: str = "") -> List[Tuple[str, Any]]:
    """Rules of the four per-stage parts; the key templates (regexes) mark the stage `{s}`
    and the block `{j}`."""
    def rx(t: str) -> str:
        return t.replace("{s}", r"(?P<s>\d)").replace("{j}", r"(?P<j>\d+)")

    out: List[Tuple[str, Any]] = [
        (rx(embed) + r"\." + WB, stage("backbone.stages.{s}.patch_embed.proj.{p}")),
        (rx(embed_norm) + r"\." + WB, stage("backbone.stages.{s}.patch_embed.norm.{p}")),
        (rx(blocks) + r"\.(?P<rest>.+)", block(block_table)),
    ]
    if stage_norm:
        out.append((rx(stage_norm) + r"\." + WB, stage("backbone.stages.{s}.norm.{p}")))
    return out


_RULES = {
    "hf-pvt": rules(
        (r"(pvt\.)?encoder\.patch_embeddings\.(?P<s>\d)\.position_embeddings", stage("backbone.stages.{s}.pos_embed")),
        (r"(pvt\.)?encoder\.patch_embeddings\.3\.cls_token", "backbone.cls_token"),
        *_pyramid(r"(pvt\.)?encoder\.patch_embeddings\.{s}\.projection",
                  r"(pvt\.)?encoder\.patch_embeddings\.{s}\.layer_norm",
                  r"(pvt\.)?encoder\.block\.{s}\.{j}", _PVT_BLOCK),
        (r"(pvt\.)?encoder\.layer_norm\." + WB, r"backbone.norm.\g<p>"),
        _CLASSIFIER,
    ),
    "hf-pvt-v2": rules(
        *_pyramid(r"(pvt_v2\.)?encoder\.layers\.{s}\.patch_embedding\.proj",
                  r"(pvt_v2\.)?encoder\.layers\.{s}\.patch_embedding\.layer_norm",
                  r"(pvt_v2\.)?encoder\.layers\.{s}\.blocks\.{j}", _PVT2_BLOCK,
                  r"(pvt_v2\.)?encoder\.layers\.{s}\.layer_norm"),
        _CLASSIFIER,
    ),
    "hf-segformer": rules(
        *_pyramid(r"(segformer\.)?encoder\.patch_embeddings\.{s}\.proj",
                  r"(segformer\.)?encoder\.patch_embeddings\.{s}\.layer_norm",
                  r"(segformer\.)?encoder\.block\.{s}\.{j}", _SEG4_BLOCK, r"(segformer\.)?encoder\.layer_norm\.{s}"),
        (r"decode_head\.linear_c\.(?P<i>\d)\.proj\." + WB, r"head.linear_c.\g<i>.proj.\g<p>"),
        *_SEGFORMER_HEAD,
    ),
    "hf-segformer-5": rules(
        *_pyramid(r"(segformer\.)?stages\.{s}\.patch_embeddings\.proj",
                  r"(segformer\.)?stages\.{s}\.patch_embeddings\.layer_norm",
                  r"(segformer\.)?stages\.{s}\.blocks\.{j}", _SEG5_BLOCK, r"(segformer\.)?stages\.{s}\.layer_norm"),
        (r"decode_head\.linear_projections\.(?P<i>\d)\.proj\." + WB, r"head.linear_c.\g<i>.proj.\g<p>"),
        *_SEGFORMER_HEAD,
    ),
}

# (name, description, detection pattern, priority): 5.x before 4.x, SegFormer before PVT.
_FORMATS = [
    ("hf-segformer-5", "Hugging Face transformers Segformer* state_dict() under transformers 5.x",
     r"(segformer\.)?stages\.\d+\.patch_embeddings\.", 30),
    ("hf-segformer", "Hugging Face transformers Segformer* (4.x key names, as on the Hub)",
     r"(segformer\.)?encoder\.patch_embeddings\.\d+\.proj\.", 40),
    ("hf-pvt", "Hugging Face transformers PvtModel / PvtForImageClassification",
     r"(pvt\.)?encoder\.patch_embeddings\.\d+\.projection\.", 50),
    ("hf-pvt-v2", "Hugging Face transformers PvtV2Model / PvtV2ForImageClassification",
     r"(pvt_v2\.)?encoder\.layers\.\d+\.patch_embedding\.", 60),
]


def _register(name: str, description: str, pattern: str, priority: int) -> None:
    def detect(sd: Mapping[str, Tensor]) -> bool:
        return any_key(sd, pattern)

    def convert(sd: Mapping[str, Tensor]) -> Converted:
        return convert_by_rules(sd, name, _RULES[name])

    add_format(Format(name, description, detect, convert, priority=priority))


for _args in _FORMATS:
    _register(*_args)
