"""MSwin: the multi-scale window attention of V2X-ViT (Xu et al., "V2X-ViT: Vehicle-to-
Everything Cooperative Perception with Vision Transformer", ECCV 2022), made a 4-stage
pyramid backbone.

Each MSwin block runs several window-attention branches in parallel, one per window size
(4, 8, 16 here, as in V2X-ViT), each with its own heads, head width and relative
position table, and no shift: the large windows give the long-range context that Swin
gets from shifting. The branch outputs are fused by split-attention (global average
pool of their sum -> Linear -> LayerNorm -> ReLU -> Linear -> softmax across branches,
per channel). Stages are joined by Swin's patch merging; each pyramid level is
LayerNorm-ed, like Swin's.

A map that is not a multiple of a branch's window is zero-padded for that branch and the
padded keys are masked out (the mask is built in `forward` from the actual size). For
inputs that are multiples of 512 nothing is padded.

Own state-dict layout (V2X-ViT's names inside the attention: a block's `attn` takes the
state dict of V2X-ViT's `PyramidWindowAttention(fuse_method="split_attn")` as is, and
computes the same as that module with one agent):
    patch_embed.{proj,norm}
    layers.{i}.blocks.{j}.norm1, .norm2, .mlp.{fc1,fc2}
    layers.{i}.blocks.{j}.attn.pwmsa.{b}.{to_qkv,pos_embedding,to_out.0}   branch b
    layers.{i}.blocks.{j}.attn.split_attn.{fc1,bn1,fc2}                      fusion
    layers.{i}.downsample.{norm,reduction}                                   (i < 3)
    norms.{i}, head
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import ConfigError
from .layers import DropPath, Mlp, PatchEmbed, pyramid_feature_info, stochastic_depth_rates
from .registry import register_configs
from .segmentor import register_segmentors
from .swin import (MASK_VALUE, PatchMerging, WindowPyramid, init_weights, pad_to_window, relative_position_index,
                   window_attention, window_partition, window_reverse)


def padding_mask(H: int, W: int, Hp: int, Wp: int, window: int, device: torch.device,
                 value: float = MASK_VALUE) -> Tensor:
    """(nW, 1, N) additive key mask of an H x W map zero-padded to Hp x Wp: `value` on padding."""
    rows = (torch.arange(Hp, device=device) >= H).to(torch.float32)
    cols = (torch.arange(Wp, device=device) >= W).to(torch.float32)
    pad = (rows[:, None] + cols[None, :]).reshape(1, Hp, Wp, 1)
    pad = window_partition(pad, window).reshape(-1, 1, window * window)
    return torch.zeros_like(pad).masked_fill(pad > 0, value)


class BaseWindowAttention(nn.Module):
    """One branch: non-overlapping window attention with a (2w-1) x (2w-1) relative position
    table shared by the heads (V2X-ViT's `BaseWindowAttention`, one agent)."""

    def __init__(self, dim: int, heads: int, dim_head: int, window: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.window = window
        self.scale = float(dim_head ** -0.5)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.pos_embedding = nn.Parameter(torch.randn(2 * window - 1, 2 * window - 1))
        self.to_out = nn.Sequential(nn.Linear(inner, dim))
        # V2X-ViT indexes the table with (key - query) offsets: Swin's index, transposed.
        self.register_buffer("relative_index", relative_position_index(window).t().flatten(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C); every token attends only to tokens of its own window."""
        B, H, W, C = x.shape
        w = self.window
        y, Hp, Wp = pad_to_window(x, w)
        mask: Optional[Tensor] = None
        if Hp != H or Wp != W:
            mask = padding_mask(H, W, Hp, Wp, w, x.device).to(x.dtype)
        N = w * w
        bias = self.pos_embedding.flatten()[self.relative_index].reshape(1, N, N)  # type: ignore[index]
        y = window_attention(self.to_qkv(window_partition(y, w)), self.heads, self.scale, bias, mask)
        y = window_reverse(self.to_out(y), w, Hp, Wp)
        if Hp != H or Wp != W:
            y = y[:, :H, :W, :]
        return y


class SplitAttn(nn.Module):
    """Split-attention fusion of n branch outputs: per-channel softmax weights across branches
    from the globally pooled sum (V2X-ViT's `SplitAttn`, any number of branches)."""

    def __init__(self, dim: int, branches: int):
        super().__init__()
        self.branches = branches
        self.fc1 = nn.Linear(dim, dim, bias=False)
        self.bn1 = nn.LayerNorm(dim)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(dim, dim * branches, bias=False)

    def forward(self, xs: List[Tensor]) -> Tensor:
        x = torch.stack(xs, dim=3)  # (B, H, W, n, C)
        B, C = x.shape[0], x.shape[4]
        gap = x.sum(3).mean((1, 2))  # (B, C)
        a = self.fc2(self.act1(self.bn1(self.fc1(gap)))).reshape(B, 1, 1, self.branches, C).softmax(dim=3)
        return (x * a).sum(3)


class PyramidWindowAttention(nn.Module):
    def __init__(self, dim: int, heads: Sequence[int], dim_heads: Sequence[int], windows: Sequence[int]):
        super().__init__()
        self.pwmsa = nn.ModuleList([BaseWindowAttention(dim, h, d, w) for h, d, w in zip(heads, dim_heads, windows)])
        self.split_attn = SplitAttn(dim, len(windows))

    def forward(self, x: Tensor) -> Tensor:
        outs: List[Tensor] = []
        for branch in self.pwmsa:
            outs.append(branch(x))
        return self.split_attn(outs)


class MSwinBlock(nn.Module):
    def __init__(self, dim: int, heads: Sequence[int], dim_heads: Sequence[int], windows: Sequence[int],
                 mlp_ratio: float, drop_path: float, norm_eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = PyramidWindowAttention(dim, heads, dim_heads, windows)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        B, L, C = x.shape
        x = x + self.drop_path(self.attn(self.norm1(x).reshape(B, H, W, C)).reshape(B, L, C))
        return x + self.drop_path(self.mlp(self.norm2(x), H, W))


class MSwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: Sequence[int], dim_heads: Sequence[int], windows: Sequence[int],
                 mlp_ratio: float, drop_path: Sequence[float], downsample: bool, norm_eps: float = 1e-5):
        super().__init__()
        self.blocks = nn.ModuleList([
            MSwinBlock(dim, heads, dim_heads, windows, mlp_ratio, drop_path[j], norm_eps) for j in range(depth)])
        self.downsample = PatchMerging(dim, norm_eps=norm_eps) if downsample else None

    def forward(self, x: Tensor, H: int, W: int) -> Tuple[Tensor, Tensor]:
        for blk in self.blocks:
            x = blk(x, H, W)
        nxt = x
        if self.downsample is not None:
            nxt = self.downsample(x, H, W)
        return x, nxt


class MSwinTransformer(WindowPyramid):
    """Backbone (num_classes=0) or classifier (num_classes > 0).

    Branch b of a stage with width C has C // dim_heads[b] heads of width dim_heads[b]
    (V2X-ViT: 256 channels -> 16/8/4 heads of 16/32/64 for windows 4/8/16).
    """

    def __init__(self, embed_dims: Sequence[int] = (64, 128, 256, 512), depths: Sequence[int] = (2, 2, 6, 2),
                 windows: Sequence[int] = (4, 8, 16), dim_heads: Sequence[int] = (16, 32, 64),
                 mlp_ratio: float = 4.0, num_classes: int = 1000, in_chans: int = 3, drop_path_rate: float = 0.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        dims = list(embed_dims)
        self.num_classes = num_classes
        dpr = stochastic_depth_rates(list(depths), drop_path_rate)
        self.patch_embed = PatchEmbed(in_chans, dims[0], 4, norm_eps=norm_eps)
        layers = []
        for i in range(4):
            if dims[i] != dims[0] * 2 ** i:
                raise ConfigError(f"embed_dims must double per stage (patch merging), got {dims}")
            heads = [max(1, dims[i] // d) for d in dim_heads]
            layers.append(MSwinStage(dims[i], depths[i], heads, dim_heads, windows, mlp_ratio, dpr[i], i < 3,
                                     norm_eps))
        self.layers = nn.ModuleList(layers)
        self.norms = nn.ModuleList([nn.LayerNorm(d, eps=norm_eps) for d in dims])
        self.head = nn.Linear(dims[3], num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info: List[Dict[str, int]] = pyramid_feature_info(dims)
        self.apply(init_weights)


CONFIGS: Dict[str, dict] = {
    "mswin_tiny": dict(embed_dims=(32, 64, 128, 256), depths=(2, 2, 6, 2)),
    "mswin_small": dict(embed_dims=(64, 128, 256, 512), depths=(2, 2, 6, 2)),
}


def build(name: str, **kw) -> MSwinTransformer:
    return MSwinTransformer(**{**CONFIGS[name], **kw})


register_configs(CONFIGS, build)
for _name in CONFIGS:
    register_segmentors(_name, functools.partial(build, _name, num_classes=0), 256 if _name == "mswin_tiny" else 512)
