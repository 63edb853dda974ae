"""PVT v2 (Wang et al., "PVT v2: Improved Baselines with Pyramid Vision Transformer", 2022)
and MiT, the SegFormer encoder (the same network with mlp_ratio 4 everywhere).

Own state-dict layout (models/formats/ converts every other layout to this):
    stages.{i}.patch_embed.{proj,norm}    overlapping patch embedding (7x7/4, then 3x3/2)
    stages.{i}.blocks.{j}.{norm1,attn.{q,kv,sr,norm,proj},norm2,mlp.{fc1,dwconv,fc2}}
    stages.{i}.norm                       per-stage LayerNorm
    head                                  ImageNet classifier (classifiers only)
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .layers import Block, PatchEmbed, check_input, init_weights, pyramid_feature_info, stochastic_depth_rates, tokens_to_nchw
from .registry import register_configs


class PVTv2Stage(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int, depth: int, num_heads: int,
                 mlp_ratio: float, sr_ratio: int, qkv_bias: bool, linear: bool, drop_path: Sequence[float],
                 norm_eps: float, patch_norm_eps: float, sr_norm_eps: float, drop: float, attn_drop: float):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, dim, patch_size, stride, patch_norm_eps)
        self.blocks = nn.ModuleList([
            Block(dim, num_heads, mlp_ratio, qkv_bias, sr_ratio, conv_mlp=True, linear=linear,
                  drop_path=drop_path[j], norm_eps=norm_eps, drop=drop, attn_drop=attn_drop,
                  sr_norm_eps=sr_norm_eps)
            for j in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, x: Tensor) -> Tuple[Tensor, int, int]:
        x, H, W = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x, H, W)
        return self.norm(x), H, W


class PyramidVisionTransformerV2(nn.Module):
    """Backbone (num_classes=0) or ImageNet classifier (num_classes > 0)."""

    def __init__(self, embed_dims: Sequence[int] = (64, 128, 320, 512), num_heads: Sequence[int] = (1, 2, 5, 8),
                 mlp_ratios: Sequence[float] = (8, 8, 4, 4), depths: Sequence[int] = (3, 4, 6, 3),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1), qkv_bias: bool = True, linear: bool = False,
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, norm_eps: float = 1e-6, patch_norm_eps: float = 1e-5,
                 sr_norm_eps: float = 1e-5):
        super().__init__()
        self.embed_dims = list(embed_dims)
        self.num_classes = num_classes
        dpr = stochastic_depth_rates(list(depths), drop_path_rate)
        stages = []
        for i in range(4):
            stages.append(PVTv2Stage(
                in_chans if i == 0 else embed_dims[i - 1], embed_dims[i],
                patch_size=7 if i == 0 else 3, stride=4 if i == 0 else 2, depth=depths[i],
                num_heads=num_heads[i], mlp_ratio=mlp_ratios[i], sr_ratio=sr_ratios[i], qkv_bias=qkv_bias,
                linear=linear, drop_path=dpr[i], norm_eps=norm_eps, patch_norm_eps=patch_norm_eps,
                sr_norm_eps=sr_norm_eps, drop=drop_rate, attn_drop=attn_drop_rate))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(embed_dims[3], num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info: List[Dict[str, int]] = pyramid_feature_info(embed_dims)
        self.apply(init_weights)

    def forward_features(self, x: Tensor) -> List[Tensor]:
        """The 4 pyramid maps, NCHW, at strides 4, 8, 16, 32."""
        if not torch.jit.is_scripting():
            check_input(x)
        outs: List[Tensor] = []
        for stage in self.stages:
            x, H, W = stage(x)
            x = tokens_to_nchw(x, H, W)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits: mean of the last stage's tokens -> linear head."""
        feats = self.forward_features(x)
        return self.head(feats[3].flatten(2).mean(2))


# Published configurations (official classification/pvt_v2.py and SegFormer's mix_transformer.py).
_SMALL = dict(embed_dims=(32, 64, 160, 256))
_BIG = dict(embed_dims=(64, 128, 320, 512))
PVT_V2_CONFIGS: Dict[str, dict] = {
    "pvt_v2_b0": dict(_SMALL, depths=(2, 2, 2, 2)),
    "pvt_v2_b1": dict(_BIG, depths=(2, 2, 2, 2)),
    "pvt_v2_b2": dict(_BIG, depths=(3, 4, 6, 3)),
    "pvt_v2_b2_li": dict(_BIG, depths=(3, 4, 6, 3), linear=True),
    "pvt_v2_b3": dict(_BIG, depths=(3, 4, 18, 3)),
    "pvt_v2_b4": dict(_BIG, depths=(3, 8, 27, 3)),
    "pvt_v2_b5": dict(_BIG, depths=(3, 6, 40, 3), mlp_ratios=(4, 4, 4, 4)),
}
# MiT (SegFormer encoders) = PVT v2 with mlp_ratio 4 in every stage.
MIT_CONFIGS: Dict[str, dict] = {
    name.replace("pvt_v2_", "mit_"): dict(cfg, mlp_ratios=(4, 4, 4, 4))
    for name, cfg in PVT_V2_CONFIGS.items() if name != "pvt_v2_b2_li"
}
CONFIGS: Dict[str, dict] = {**PVT_V2_CONFIGS, **MIT_CONFIGS}


def build(name: str, **kw) -> PyramidVisionTransformerV2:
    return PyramidVisionTransformerV2(**{**CONFIGS[name], **kw})


register_configs(CONFIGS, build)
