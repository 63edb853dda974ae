"""Backbone + head = segmentor, registered as `<backbone>_fpn` and `<backbone>_segformer`.

`forward(x)` returns logits at 1/4 of the input (training, mmseg convention). For export,
`output="logits"` returns logits upsampled to the input size and `output="labels"`
returns argmax labels at the input size (uint8, or int32 with label_dtype="int32"), so
an engine hands back labels and no float logits cross PCIe.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
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
        pred = head.linear_pred if isinstance(head, SegFormerHead) else head.head.conv_seg
        self.num_classes = int(pred.out_channels)
        self.output = "logits_4x"
        self.label_dtype = torch.uint8
        self.set_output(output, label_dtype)

    def set_output(self, output: str, label_dtype: str = "uint8") -> "Segmentor":
        if output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}, got {output!r}")
        if label_dtype not in _LABEL_DTYPES:
            raise ConfigError(f"label_dtype must be one of {tuple(_LABEL_DTYPES)}, got {label_dtype!r}")
        self.output = output
        self.label_dtype = _LABEL_DTYPES[label_dtype]
        return self

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


def register_segmentors(backbone_name: str, build_backbone: Callable[..., nn.Module],
                        segformer_dim: int = 256) -> None:
    """Register `<backbone>_fpn` and `<backbone>_segformer` for a backbone constructor.

    `build_backbone(**kw)` must return a module with `feature_info` (4 levels, strides
    4..32) and `forward_features(x) -> List[Tensor]`.
    """

    def make(head_kind: str) -> Callable[..., Segmentor]:
        def build(num_classes: int = 150, output: str = "logits_4x", label_dtype: str = "uint8",
                  decoder_dim: int = 0, dropout: float = 0.1, **kw: Any) -> Segmentor:
            backbone = build_backbone(**kw)
            chans = [f["num_chs"] for f in backbone.feature_info]
            if head_kind == "fpn":
                head: nn.Module = SemanticFPN(chans, num_classes, dropout=dropout)
            else:
                head = SegFormerHead(chans, num_classes, embed_dim=decoder_dim or segformer_dim, dropout=dropout)
            return Segmentor(backbone, head, output=output, label_dtype=label_dtype)

        return build

    for head_kind in ("fpn", "segformer"):
        register_model(f"{backbone_name}_{head_kind}", "segmentor")(make(head_kind))


def _register_pvt() -> None:
    for name, cfg in pvt_v1.CONFIGS.items():
        register_segmentors(name, functools.partial(pvt_v1.build, name, num_classes=0, dense_only=True),
                            _segformer_dim([c for c in cfg["embed_dims"]], list(cfg["depths"])))
    for name, cfg in pvt_v2.CONFIGS.items():
        register_segmentors(name, functools.partial(pvt_v2.build, name, num_classes=0),
                            _segformer_dim([c for c in cfg["embed_dims"]], list(cfg["depths"])))


_register_pvt()
