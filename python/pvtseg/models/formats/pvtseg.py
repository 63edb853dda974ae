"""pvtseg's own layout: any pvtseg model's state_dict(), classifier/backbone or segmentor.

    stages.0.patch_embed.proj.weight ...            a classifier / backbone (PVT v1 / v2, MiT)
    backbone.stages.0.blocks.0.attn.kv.weight ...   a segmentor; head.* is its segmentation head

(Models of other backbone families load their own state_dict() too: load_checkpoint
recognises those from the model's own keys, see loading.py.)
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

from .registry import Converted, Format, add_format, any_key
from .rules import convert_by_rules, rules

NAME = "pvtseg"
_SEGMENTOR = rules((r"(?P<k>(backbone|head)\..*)", r"\g<k>"))  # already canonical
_CLASSIFIER = rules((r"(?P<k>.+)", r"backbone.\g<k>"))


def detect(sd: Mapping[str, Tensor]) -> bool:
    return any_key(sd, r"backbone\.stages\.\d+\.(patch_embed|blocks)\.") or "stages.0.patch_embed.proj.weight" in sd


def convert(sd: Mapping[str, Tensor]) -> Converted:
    segmentor = any(k.startswith("backbone.") for k in sd)
    return convert_by_rules(sd, NAME, _SEGMENTOR if segmentor else _CLASSIFIER)


add_format(Format(NAME, "pvtseg's own state_dict() (classifier/backbone or segmentor)", detect, convert, priority=10))
