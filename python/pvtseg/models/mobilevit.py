"""MobileViT (Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and
Mobile-friendly Vision Transformer", ICLR 2022): xxs, xs, s.

MobileNetV2 blocks for the first stages, then MobileViT blocks: local 3x3 conv, 1x1 to the
transformer width, unfold into 2x2 patches (every pixel offset of a patch is a sequence
over all patches), transformer, fold back, 1x1 projection, concat with the block's input,
3x3 fusion. Unfold/fold are one reshape + transpose each, with sizes that are plain
integers at trace time, so an exported graph holds only static shapes (no Resize with
run-time scales). Maps with an odd side are bilinearly resized to the next even size and
back, as in the reference implementation; for inputs that are multiples of 64 no resize
happens at all.

Pyramid levels (strides 4, 8, 16, 32) are the outputs of layers 2..5; the classifier adds
the 1x1 expansion conv (`final_conv`) and a linear head.

Own state-dict layout (formats/mobilevit.py converts Hugging Face's):
    stem.{conv,bn}
    stages.{0,1}.{j}.{expand,dw,reduce}.{conv,bn}                     MobileNetV2 layers
    stages.{2,3,4}.down.{expand,dw,reduce}.{conv,bn}                  stride-2 MV2 block
    stages.{2,3,4}.{conv_kxk.{conv,bn}, conv_1x1.conv, norm, conv_proj.{conv,bn}, fusion.{conv,bn}}
    stages.{2,3,4}.transformer.{j}.{norm1,attn.{qkv,proj},norm2,mlp.{fc1,fc2}}
    final_conv.{conv,bn}, head                                        classifiers only
"""

from __future__ import annotations

import functools
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .layers import check_input, pyramid_feature_info
from .registry import register_configs
from .segmentor import register_segmentors
from .swin import init_weights


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never more than 10% down (MobileNetV2 rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * value else new)


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-5) -> SiLU; BN and SiLU can be left out."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 bn: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1) if bn else nn.Identity()
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depth-wise (stride) -> 1x1 reduce (+ identity)."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: float):
        super().__init__()
        hidden = make_divisible(int(round(cin * expand_ratio)), 8)
        self.use_residual = stride == 1 and cin == cout
        self.expand = ConvBNAct(cin, hidden, 1)
        self.dw = ConvBNAct(hidden, hidden, 3, stride, groups=hidden)
        self.reduce = ConvBNAct(hidden, cout, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.reduce(self.dw(self.expand(x)))
        return x + y if self.use_residual else y


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads != 0:
            raise ConfigError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = float((dim // num_heads) ** -0.5)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((qkv[0] * self.scale) @ qkv[1].transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ qkv[2]).transpose(1, 2).reshape(B, N, C))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTBlock(nn.Module):
    """[stride-2 MV2 block] -> local conv -> unfold -> transformer x depth -> fold -> fuse."""

    def __init__(self, cin: int, cout: int, dim: int, depth: int, expand_ratio: float, num_heads: int = 4,
                 mlp_ratio: float = 2.0, patch: int = 2, kernel: int = 3, norm_eps: float = 1e-5):
        super().__init__()
        self.patch = patch
        self.down = InvertedResidual(cin, cout, 2, expand_ratio)
        self.conv_kxk = ConvBNAct(cout, cout, kernel)
        self.conv_1x1 = ConvBNAct(cout, dim, 1, bn=False, act=False)
        self.transformer = nn.ModuleList([TransformerLayer(dim, num_heads, mlp_ratio, norm_eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.conv_proj = ConvBNAct(dim, cout, 1)
        self.fusion = ConvBNAct(2 * cout, cout, kernel)

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        y = self.conv_1x1(self.conv_kxk(x))
        B, C, H, W = y.shape
        p = self.patch
        Hn = (H + p - 1) // p * p
        Wn = (W + p - 1) // p * p
        resized = Hn != H or Wn != W
        if resized:  # odd map: resize to the next multiple of the patch (reference behaviour)
            y = F.interpolate(y, size=(Hn, Wn), mode="bilinear", align_corners=False)
        nh, nw = Hn // p, Wn // p
        # unfold: (B, C, nh*p, nw*p) -> (B * p*p, nh*nw, C): one sequence per pixel offset.
        y = y.reshape(B, C, nh, p, nw, p).permute(0, 3, 5, 2, 4, 1).reshape(B * p * p, nh * nw, C)
        for layer in self.transformer:
            y = layer(y)
        y = self.norm(y)
        # fold back: (B * p*p, nh*nw, C) -> (B, C, Hn, Wn).
        y = y.reshape(B, p, p, nh, nw, C).permute(0, 5, 3, 1, 4, 2).reshape(B, C, Hn, Wn)
        if resized:
            y = F.interpolate(y, size=(H, W), mode="bilinear", align_corners=False)
        return self.fusion(torch.cat((x, self.conv_proj(y)), dim=1))


class MobileViT(nn.Module):
    """Backbone (num_classes=0) or ImageNet classifier (num_classes > 0).

    channels: the 7 widths of the reference config (`neck_hidden_sizes`): stem, layers
    1..5, final 1x1 expansion; dims: transformer widths of layers 3..5.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 96, 128, 160, 640),
                 dims: Sequence[int] = (144, 192, 240), depths: Sequence[int] = (2, 4, 3),
                 expand_ratio: float = 4.0, num_heads: int = 4, mlp_ratio: float = 2.0, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.1, norm_eps: float = 1e-5):
        super().__init__()
        c = list(channels)
        self.num_classes = num_classes
        self.stem = ConvBNAct(in_chans, c[0], 3, 2)
        self.stages = nn.ModuleList([
            nn.Sequential(InvertedResidual(c[0], c[1], 1, expand_ratio)),
            nn.Sequential(*[InvertedResidual(c[1] if j == 0 else c[2], c[2], 2 if j == 0 else 1, expand_ratio)
                            for j in range(3)]),
            MobileViTBlock(c[2], c[3], dims[0], depths[0], expand_ratio, num_heads, mlp_ratio, norm_eps=norm_eps),
            MobileViTBlock(c[3], c[4], dims[1], depths[1], expand_ratio, num_heads, mlp_ratio, norm_eps=norm_eps),
            MobileViTBlock(c[4], c[5], dims[2], depths[2], expand_ratio, num_heads, mlp_ratio, norm_eps=norm_eps),
        ])
        if num_classes > 0:
            self.final_conv: nn.Module = ConvBNAct(c[5], c[6], 1)
            self.head: nn.Module = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(c[6], num_classes))
        else:
            self.final_conv = nn.Identity()
            self.head = nn.Identity()
        self.feature_info: List[Dict[str, int]] = pyramid_feature_info(c[2:6])
        self.apply(init_weights)

    def forward_features(self, x: Tensor) -> List[Tensor]:
        """Outputs of layers 2..5 (strides 4, 8, 16, 32), NCHW."""
        if not torch.jit.is_scripting():
            check_input(x)
        x = self.stem(x)
        outs: List[Tensor] = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i > 0:
                outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits: 1x1 expansion conv -> global average pool -> linear head."""
        return self.head(self.final_conv(self.forward_features(x)[3]).mean((2, 3)))


# Apple's configs (= the `apple/mobilevit-{xx-small,x-small,small}` Hugging Face configs).
CONFIGS: Dict[str, dict] = {
    "mobilevit_xxs": dict(channels=(16, 16, 24, 48, 64, 80, 320), dims=(64, 80, 96), expand_ratio=2.0),
    "mobilevit_xs": dict(channels=(16, 32, 48, 64, 80, 96, 384), dims=(96, 120, 144), expand_ratio=4.0),
    "mobilevit_s": dict(channels=(16, 32, 64, 96, 128, 160, 640), dims=(144, 192, 240), expand_ratio=4.0),
}


def build(name: str, **kw) -> MobileViT:
    return MobileViT(**{**CONFIGS[name], **kw})


register_configs(CONFIGS, build)
for _name in CONFIGS:
    register_segmentors(_name, functools.partial(build, _name, num_classes=0), 256)
