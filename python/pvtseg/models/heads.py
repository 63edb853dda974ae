"""Segmentation heads. Both take the backbone's 4 pyramid maps and return logits at 1/4.

SemanticFPN: the PVT paper's head (mmseg FPN neck + FPNHead). Own keys mirror mmseg's
    neck.lateral_convs.{i}.conv, neck.fpn_convs.{i}.conv,
    head.scale_heads.{i}.{k}.{conv,bn} (k = 0, 2, 4: upsamples sit between), head.conv_seg
SegFormerHead: SegFormer's All-MLP decoder. Own keys mirror NVlabs SegFormer's
    head.linear_c.{i}.proj, head.linear_fuse.{conv,bn}, head.linear_pred
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class ConvBNReLU(nn.Module):
    """mmcv ConvModule(conv, norm=BN, act=ReLU); the conv has no bias because BN follows."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class ConvOnly(nn.Module):
    """mmcv ConvModule without norm/act (FPN neck convs): keeps the `.conv.` key level."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample2x(nn.Module):
    """Bilinear x2 to an explicit size (static integers in exported graphs, same numerics)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=(x.shape[2] * 2, x.shape[3] * 2), mode="bilinear", align_corners=False)


class FPNNeck(nn.Module):
    def __init__(self, in_channels: Sequence[int], channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList([ConvOnly(c, channels, 1) for c in in_channels])
        self.fpn_convs = nn.ModuleList([ConvOnly(channels, channels, 3) for _ in in_channels])

    def forward(self, feats: List[Tensor]) -> List[Tensor]:
        laterals: List[Tensor] = []
        for i, conv in enumerate(self.lateral_convs):
            laterals.append(conv(feats[i]))
        # Top-down path: nearest upsample of the coarser level, added to the finer one.
        for i in range(len(laterals) - 1, 0, -1):
            prev = laterals[i - 1]
            laterals[i - 1] = prev + F.interpolate(laterals[i], size=(prev.shape[2], prev.shape[3]), mode="nearest")
        outs: List[Tensor] = []
        for i, conv in enumerate(self.fpn_convs):
            outs.append(conv(laterals[i]))
        return outs


class FPNHead(nn.Module):
    """Per level: (3x3 conv-BN-ReLU, x2 upsample) until stride 4; sum; 1x1 classifier."""

    def __init__(self, num_classes: int, in_channels: int = 256, channels: int = 128,
                 strides: Sequence[int] = (4, 8, 16, 32), dropout: float = 0.1):
        super().__init__()
        heads = []
        for s in strides:
            n = max(1, int(math.log2(s) - math.log2(strides[0])))
            layers: List[nn.Module] = []
            for k in range(n):
                layers.append(ConvBNReLU(in_channels if k == 0 else channels, channels, 3))
                if s != strides[0]:
                    layers.append(Upsample2x())
            heads.append(nn.Sequential(*layers))
        self.scale_heads = nn.ModuleList(heads)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: List[Tensor]) -> Tensor:
        out = torch.zeros(1)
        for i, head in enumerate(self.scale_heads):
            y = head(feats[i])
            if i == 0:
                out = y
            else:
                if y.shape[2] != out.shape[2] or y.shape[3] != out.shape[3]:
                    y = F.interpolate(y, size=(out.shape[2], out.shape[3]), mode="bilinear", align_corners=False)
                out = out + y
        return self.conv_seg(self.dropout(out))


class SemanticFPN(nn.Module):
    """FPN neck (256 ch) + FPNHead (128 ch at 1/4): the PVT paper's segmentation head."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, neck_channels: int = 256,
                 head_channels: int = 128, dropout: float = 0.1):
        super().__init__()
        self.neck = FPNNeck(in_channels, neck_channels)
        self.head = FPNHead(num_classes, neck_channels, head_channels, dropout=dropout)

    def forward(self, feats: List[Tensor]) -> Tensor:
        return self.head(self.neck(feats))


class LinearProj(nn.Module):
    """SegFormer's per-level MLP (a Linear over channels), applied as a 1x1 conv on NCHW.

    Keeps the `proj.weight` key of the original Linear but skips the NCHW<->tokens
    transposes, which is what TensorRT wants to see.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Linear(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.proj.weight[:, :, None, None], self.proj.bias)


class SegFormerHead(nn.Module):
    """All-MLP decoder: project each level to `embed_dim`, upsample to 1/4, concat, fuse, classify."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.linear_c = nn.ModuleList([LinearProj(c, embed_dim) for c in in_channels])
        self.linear_fuse = ConvBNReLU(embed_dim * len(in_channels), embed_dim, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, feats: List[Tensor]) -> Tensor:
        size = (feats[0].shape[2], feats[0].shape[3])
        projected: List[Tensor] = []
        for i, proj in enumerate(self.linear_c):
            y = proj(feats[i])
            if i > 0:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            projected.append(y)
        projected.reverse()  # SegFormer concatenates coarsest first: [c4, c3, c2, c1]
        x = self.linear_fuse(torch.cat(projected, dim=1))
        return self.linear_pred(self.dropout(x))
