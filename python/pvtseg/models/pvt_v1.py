"""PVT v1 (Wang et al., "Pyramid Vision Transformer", ICCV 2021).

Non-overlapping patch embeddings + learned position embeddings per stage. The position
embeddings live on the grid the weights were trained at (224 / stride); other input
sizes interpolate them (bilinear, as the official detection/segmentation code does;
`pos_interp="bicubic"` is available).

Own state-dict layout:
    stages.{i}.patch_embed.{proj,norm}   stages.{i}.pos_embed (1, N [+1 in stage 4], C)
    stages.{i}.blocks.{j}.{norm1,attn.{q,kv,sr,norm,proj},norm2,mlp.{fc1,fc2}}
    cls_token, norm, head                 classification only (dense features skip them)
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .layers import Block, PatchEmbed, check_input, init_weights, pyramid_feature_info, stochastic_depth_rates, tokens_to_nchw
from .registry import register_configs


class PVTv1Stage(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch_size: int, grid: Tuple[int, int], has_cls: bool,
                 depth: int, num_heads: int, mlp_ratio: float, sr_ratio: int, qkv_bias: bool,
                 drop_path: Sequence[float], norm_eps: float, patch_norm_eps: float, sr_norm_eps: float,
                 pos_interp: str, drop: float, attn_drop: float):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, dim, patch_size, norm_eps=patch_norm_eps)
        self.num_prefix = 1 if has_cls else 0
        self.grid_h, self.grid_w = grid
        self.pos_interp = pos_interp
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1] + self.num_prefix, dim))
        self.pos_drop = nn.Dropout(drop)
        self.blocks = nn.ModuleList([
            Block(dim, num_heads, mlp_ratio, qkv_bias, sr_ratio, conv_mlp=False, drop_path=drop_path[j],
                  norm_eps=norm_eps, drop=drop, attn_drop=attn_drop,
                  sr_norm_eps=sr_norm_eps)
            for j in range(depth)])

    def set_grid(self, grid_h: int, grid_w: int) -> None:
        """Resize the pos_embed *parameter* (not its values) to a checkpoint's grid before loading."""
        self.grid_h, self.grid_w = grid_h, grid_w
        dim = self.pos_embed.shape[2]
        self.pos_embed = nn.Parameter(self.pos_embed.new_zeros(1, grid_h * grid_w + self.num_prefix, dim))

    def spatial_pos_embed(self, H: int, W: int) -> Tensor:
        pos = self.pos_embed[:, self.num_prefix:]
        if H == self.grid_h and W == self.grid_w:
            return pos
        pos = pos.reshape(1, self.grid_h, self.grid_w, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(H, W), mode=self.pos_interp, align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def forward(self, x: Tensor, cls_token: Optional[Tensor] = None) -> Tuple[Tensor, int, int]:
        x, H, W = self.patch_embed(x)
        pos = self.spatial_pos_embed(H, W)
        if cls_token is not None:
            # Classification path of the last stage: prepend the class token and its embedding.
            x = torch.cat([cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            pos = torch.cat([self.pos_embed[:, :self.num_prefix], pos], dim=1)
        x = self.pos_drop(x + pos)
        for blk in self.blocks:
            x = blk(x, H, W)
        return x, H, W


class PyramidVisionTransformerV1(nn.Module):
    def __init__(self, embed_dims: Sequence[int] = (64, 128, 320, 512), num_heads: Sequence[int] = (1, 2, 5, 8),
                 mlp_ratios: Sequence[float] = (8, 8, 4, 4), depths: Sequence[int] = (2, 2, 2, 2),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1), qkv_bias: bool = True, num_classes: int = 1000,
                 img_size: int = 224, in_chans: int = 3, pos_interp: str = "bilinear", drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, norm_eps: float = 1e-6,
                 patch_norm_eps: float = 1e-5, sr_norm_eps: float = 1e-5, dense_only: bool = False):
        super().__init__()
        if pos_interp not in ("bilinear", "bicubic"):
            raise ConfigError(f"pos_interp must be 'bilinear' or 'bicubic', got {pos_interp!r}")
        self.embed_dims = list(embed_dims)
        self.num_classes = num_classes
        dpr = stochastic_depth_rates(list(depths), drop_path_rate)
        stages = []
        for i, stride in enumerate((4, 8, 16, 32)):
            stages.append(PVTv1Stage(
                in_chans if i == 0 else embed_dims[i - 1], embed_dims[i], patch_size=4 if i == 0 else 2,
                grid=(img_size // stride, img_size // stride), has_cls=(i == 3), depth=depths[i],
                num_heads=num_heads[i], mlp_ratio=mlp_ratios[i], sr_ratio=sr_ratios[i], qkv_bias=qkv_bias,
                drop_path=dpr[i], norm_eps=norm_eps, patch_norm_eps=patch_norm_eps, sr_norm_eps=sr_norm_eps,
                pos_interp=pos_interp, drop=drop_rate, attn_drop=attn_drop_rate))
        self.stages = nn.ModuleList(stages)
        # dense_only (inside a segmentor): no class token, final norm or classifier, like the
        # official detection/segmentation backbone. pos_embed of stage 4 keeps its class slot
        # so official checkpoints load unchanged.
        self.cls_token: Optional[nn.Parameter] = None if dense_only else nn.Parameter(torch.zeros(1, 1, embed_dims[3]))
        self.norm = nn.Identity() if dense_only else nn.LayerNorm(embed_dims[3], eps=norm_eps)
        self.head = nn.Linear(embed_dims[3], num_classes) if num_classes > 0 and not dense_only else nn.Identity()
        self.feature_info: List[Dict[str, int]] = pyramid_feature_info(embed_dims)
        for stage in self.stages:
            nn.init.trunc_normal_(stage.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights)

    def forward_features(self, x: Tensor) -> List[Tensor]:
        """The 4 pyramid maps, NCHW, at strides 4, 8, 16, 32 (no class token, no final norm)."""
        if not torch.jit.is_scripting():
            check_input(x)
        outs: List[Tensor] = []
        for stage in self.stages:
            x, H, W = stage(x, None)
            x = tokens_to_nchw(x, H, W)
            outs.append(x)
        return outs

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Classification path: last stage with the class token, then the final norm. (B, 1 + N4, C)."""
        if not torch.jit.is_scripting():
            check_input(x)
        i = 0
        for stage in self.stages:
            if i < 3:
                x, H, W = stage(x, None)
                x = tokens_to_nchw(x, H, W)
            else:
                x, H, W = stage(x, self.cls_token)
            i += 1
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_tokens(x)[:, 0])


_V1 = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1))
CONFIGS: Dict[str, dict] = {
    "pvt_v1_tiny": dict(_V1, depths=(2, 2, 2, 2)),
    "pvt_v1_small": dict(_V1, depths=(3, 4, 6, 3)),
    "pvt_v1_medium": dict(_V1, depths=(3, 4, 18, 3)),
    "pvt_v1_large": dict(_V1, depths=(3, 8, 27, 3)),
}


def build(name: str, **kw) -> PyramidVisionTransformerV1:
    return PyramidVisionTransformerV1(**{**CONFIGS[name], **kw})


register_configs(CONFIGS, build)
