"""The official PVT classification releases (whai362/PVT, v1 and v2) and NVlabs SegFormer's
ImageNet MiT encoders (the same layout), optionally wrapped in {'model': ...}.

    v1: patch_embed1.proj.weight, pos_embed1, block1.0.attn.kv.weight, norm, cls_token, head
    v2: patch_embed1.proj.weight, block1.0.mlp.dwconv.dwconv.weight, norm1..norm4, head

Stages are numbered from 1 in these files, from 0 in pvtseg. mmseg.py reuses BACKBONE_RULES
under `backbone.`.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

from .registry import Converted, Format, add_format
from .rules import WB, block, convert_by_rules, inner, rules, stage

NAME = "pvt-official"
_BLOCK = inner([(n, n) for n in ("norm1", "attn.q", "attn.kv", "attn.sr", "attn.norm", "attn.proj", "norm2",
                                 "mlp.fc1", "mlp.fc2")] + [("mlp.dwconv.dwconv", "mlp.dwconv")])
BACKBONE_RULES = [  # (pattern, replacement) pairs, not yet compiled
    (r"patch_embed(?P<s>[1-4])\.(?P<m>proj|norm)\." + WB, stage("backbone.stages.{s}.patch_embed.{m}.{p}", True)),
    (r"pos_embed(?P<s>[1-4])", stage("backbone.stages.{s}.pos_embed", True)),
    (r"block(?P<s>[1-4])\.(?P<j>\d+)\.(?P<rest>.+)", block(_BLOCK, True)),
    (r"norm(?P<s>[1-4])\." + WB, stage("backbone.stages.{s}.norm.{p}", True)),
    (r"norm\." + WB, r"backbone.norm.\g<p>"),
    (r"cls_token", "backbone.cls_token"),
    (r"head\." + WB, r"backbone.head.\g<p>"),
]
_RULES = rules(*BACKBONE_RULES)


def detect(sd: Mapping[str, Tensor]) -> bool:
    return "patch_embed1.proj.weight" in sd


def convert(sd: Mapping[str, Tensor]) -> Converted:
    return convert_by_rules(sd, NAME, _RULES)


add_format(Format(NAME, "whai362/PVT classification release (v1 or v2) or NVlabs SegFormer ImageNet MiT "
                        "(patch_embed1.proj, block1.0.attn.kv, ...), optionally wrapped in {'model': ...}",
                  detect, convert, priority=80))
