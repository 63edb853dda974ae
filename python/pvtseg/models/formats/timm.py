"""timm's pvt_v2_* state dicts.

    patch_embed.proj.weight, stages.1.downsample.proj.weight, stages.0.blocks.0.attn.kv.weight,
    stages.0.norm.weight, head.weight

The blocks use pvtseg's names; the first stage's patch embedding sits at the top level and
the others are each stage's `downsample`.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

from .registry import Converted, Format, add_format, any_key
from .rules import OWN_BLOCK, WB, block, convert_by_rules, rules, stage

NAME = "timm-pvt-v2"
_RULES = rules(
    (r"patch_embed\.(?P<m>proj|norm)\." + WB, r"backbone.stages.0.patch_embed.\g<m>.\g<p>"),
    (r"stages\.(?P<s>\d)\.downsample\.(?P<m>proj|norm)\." + WB, stage("backbone.stages.{s}.patch_embed.{m}.{p}")),
    (r"stages\.(?P<s>\d)\.blocks\.(?P<j>\d+)\.(?P<rest>.+)", block(OWN_BLOCK)),
    (r"stages\.(?P<s>\d)\.norm\." + WB, stage("backbone.stages.{s}.norm.{p}")),
    (r"head\." + WB, r"backbone.head.\g<p>"),
)


def detect(sd: Mapping[str, Tensor]) -> bool:
    return "patch_embed.proj.weight" in sd and any_key(sd, r"stages\.\d+\.blocks\.\d+\.")


def convert(sd: Mapping[str, Tensor]) -> Converted:
    return convert_by_rules(sd, NAME, _RULES)


add_format(Format(NAME, "timm pvt_v2_* state dict", detect, convert, priority=20))
