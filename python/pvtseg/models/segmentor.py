"""Backbone + head = segmentor, registered as `<backbone>_fpn` and `<backbone>_segformer`.

`forward(x)` returns logits at 1/4 of the input (training, mmseg convention). For export,
`output="logits"` returns logits upsampled to the input size and `output="labels"`
returns argmax labels at the input size (uint8, or int32 with label_dtype="int32"), so
an engine hands back labels and no float logits cross PCIe.
"""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import pvt_v1, pvt_v2
from .heads import SegFormerHead, SemanticFPN
from .registry import register_model

OUTPUTS = ("logits_4x", "logits", "labels")
_LABEL_DTYPES: Dict[str, torch.dtype] = {"uint8": torch.uint8, "int32": torch.int32, "int64": torch.int64}


class Segmentor(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, output: str = "logits_4x", label_dtype: str = "uint8"):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_info: List[Dict[str, int]] = list(backbone.feature_info)
        self.output = "logits_4x"
        self.label_dtype = torch.uint8
        self.set_output(output, label_dtype)

    def set_output(self, output: str, label_dtype: str = "uint8") -> "Segmentor":
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if label_dtype not in _LABEL_DTYPES:
            raise ValueError(f"label_dtype must be one of {tuple(_LABEL_DTYPES)}, got {label_dtype!r}")
        self.output = output
        self.label_dtype = _LABEL_DTYPES[label_dtype]
        return self

    @property
    def num_classes(self) -> int:
        head = self.head
        pred = head.linear_pred if isinstance(head, SegFormerHead) else head.head.conv_seg
        return int(pred.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(self.backbone.forward_features(x))
        if self.output == "logits_4x":
            return logits
        logits = F.interpolate(logits, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        if self.output == "logits":
            return logits
        return logits.argmax(dim=1).to(self.label_dtype)


def _segformer_dim(channels: List[int], depths: List[int]) -> int:
    # SegFormer: B0 and B1 decode with 256 channels, B2..B5 with 768.
    return 256 if channels[3] == 256 or sum(depths) <= 8 else 768


def _make(backbone_name: str, head_kind: str):
    module = pvt_v1 if backbone_name.startswith("pvt_v1") else pvt_v2

    def build(num_classes: int = 150, output: str = "logits_4x", label_dtype: str = "uint8",
              decoder_dim: int = 0, dropout: float = 0.1, **kw) -> Segmentor:
        if module is pvt_v1:
            kw["dense_only"] = True
        backbone = module.build(backbone_name, num_classes=0, **kw)
        chans = [f["num_chs"] for f in backbone.feature_info]
        if head_kind == "fpn":
            head: nn.Module = SemanticFPN(chans, num_classes, dropout=dropout)
        else:
            depths = list(module.CONFIGS[backbone_name]["depths"])
            dim = decoder_dim or _segformer_dim(chans, depths)
            head = SegFormerHead(chans, num_classes, embed_dim=dim, dropout=dropout)
        return Segmentor(backbone, head, output=output, label_dtype=label_dtype)

    return build


for _bb in list(pvt_v1.CONFIGS) + list(pvt_v2.CONFIGS):
    for _head in ("fpn", "segformer"):
        register_model(f"{_bb}_{_head}", "segmentor")(_make(_bb, _head))
