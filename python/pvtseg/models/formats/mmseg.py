"""mmsegmentation checkpoints ({'state_dict': ...}) of the official PVT Semantic FPN ADE20K
models and of NVlabs SegFormer (ADE20K / Cityscapes).

    backbone.<official PVT layout>            (see pvt_official.py)
    neck.lateral_convs.0.conv.weight, neck.fpn_convs.*, decode_head.scale_heads.1.0.bn.weight,
    decode_head.conv_seg.*                    Semantic FPN
    decode_head.linear_c4.proj.*, decode_head.linear_fuse.conv/bn.*, decode_head.linear_pred.*
                                              SegFormer's All-MLP head

The auxiliary head (training only) is dropped; so is SegFormer's decode_head.conv_seg, which
mmseg's BaseDecodeHead creates but SegFormer's forward never uses.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

from .pvt_official import BACKBONE_RULES
from .registry import Converted, Format, add_format
from .rules import BN, WB, convert_by_rules, rules, stage

NAME = "mmseg"
_RULES = rules(
    *[("backbone\\." + pat, fn) for pat, fn in BACKBONE_RULES],
    (r"neck\.(?P<c>lateral_convs|fpn_convs)\.(?P<i>\d)\.conv\." + WB, r"head.neck.\g<c>.\g<i>.conv.\g<p>"),
    (r"decode_head\.scale_heads\.(?P<i>\d)\.(?P<k>\d)\.conv\.weight", r"head.head.scale_heads.\g<i>.\g<k>.conv.weight"),
    (r"decode_head\.scale_heads\.(?P<i>\d)\.(?P<k>\d)\.bn\." + BN, r"head.head.scale_heads.\g<i>.\g<k>.bn.\g<p>"),
    (r"decode_head\.linear_c(?P<s>[1-4])\.proj\." + WB, stage("head.linear_c.{s}.proj.{p}", True)),
    (r"decode_head\.linear_fuse\.conv\.weight", "head.linear_fuse.conv.weight"),
    (r"decode_head\.linear_fuse\.bn\." + BN, r"head.linear_fuse.bn.\g<p>"),
    (r"decode_head\.linear_pred\." + WB, r"head.linear_pred.\g<p>"),
    (r"decode_head\.conv_seg\." + WB, r"head.head.conv_seg.\g<p>"),
)
_DROPS = [(r"auxiliary_head\..*", "mmseg auxiliary head (training only)")]


def detect(sd: Mapping[str, Tensor]) -> bool:
    return "backbone.patch_embed1.proj.weight" in sd


def convert(sd: Mapping[str, Tensor]) -> Converted:
    conv = convert_by_rules(sd, NAME, _RULES, _DROPS)
    if any(k.startswith("head.linear_pred.") for k in conv.tensors):
        for k in [k for k in conv.tensors if k.startswith("head.head.conv_seg.")]:
            conv.dropped.append((conv.origin.pop(k), "SegFormer's decode_head.conv_seg, unused by its forward"))
            del conv.tensors[k]
    return conv


add_format(Format(NAME, "mmsegmentation {'state_dict': ...} with backbone./neck./decode_head. (official PVT "
                        "Semantic FPN ADE20K, NVlabs SegFormer)", detect, convert, priority=70))
