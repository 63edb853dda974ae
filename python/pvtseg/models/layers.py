"""Blocks shared by PVT v1 and v2: spatial-reduction attention, MLPs, DropPath.

All modules are TorchScript-scriptable; token tensors are (B, N, C) with N = H * W
(plus one class token in PVT v1's last stage when classifying).
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, InputShapeError


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """PVT v1 feed-forward: fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ConvMlp(nn.Module):
    """PVT v2 / MiT feed-forward: fc1 -> [ReLU if linear] -> 3x3 depth-wise conv -> GELU -> fc2.

    The depth-wise conv gives v2 its implicit positional information (no pos embeds).
    """

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, linear: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.relu = nn.ReLU() if linear else nn.Identity()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        x = self.relu(self.fc1(x))
        B, N, C = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(B, C, H, W)).flatten(2).transpose(1, 2)
        return self.drop(self.fc2(self.drop(self.act(x))))


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced map.

    sr_mode 0: plain attention (sr_ratio 1); 1: strided sr_ratio x sr_ratio conv + LayerNorm
    (PVT v1/v2); 2: "linear SRA" of pvt_v2_b2_li: 7x7 adaptive average pool, 1x1 conv,
    LayerNorm, GELU, so cost is linear in the number of tokens.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, sr_ratio: int = 1,
                 linear: bool = False, norm_eps: float = 1e-6, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ConfigError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = float(attn_drop)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_mode = 2 if linear else (1 if sr_ratio > 1 else 0)
        self.pool = nn.AdaptiveAvgPool2d(7) if linear else nn.Identity()
        if linear:
            self.sr = nn.Conv2d(dim, dim, kernel_size=1, stride=1)
        elif sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
        else:
            self.sr = nn.Identity()
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if self.sr_mode != 0 else nn.Identity()
        self.act = nn.GELU() if linear else nn.Identity()

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        if self.sr_mode != 0:
            kv_in = x.transpose(1, 2).reshape(B, C, H, W)
            kv_in = self.sr(self.pool(kv_in)).flatten(2).transpose(1, 2)
            kv_in = self.act(self.norm(kv_in))
        else:
            kv_in = x
        kv = self.kv(kv_in).reshape(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # Fused kernel on CPU/GPU in eager; decomposes to MatMul/Softmax/MatMul in ONNX.
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, sr_ratio: int,
                 conv_mlp: bool, linear: bool = False, drop_path: float = 0.0, norm_eps: float = 1e-6,
                 drop: float = 0.0, attn_drop: float = 0.0, sr_norm_eps: float = 1e-5):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        # The official code builds attn.norm as a plain nn.LayerNorm(dim) (eps 1e-5) while
        # norm1/norm2 get norm_layer (eps 1e-6); HF uses one eps everywhere.
        self.attn = SpatialReductionAttention(dim, num_heads, qkv_bias, sr_ratio, linear, sr_norm_eps,
                                              attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = ConvMlp(dim, hidden, drop, linear) if conv_mlp else Mlp(dim, hidden, drop)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        x = x + self.drop_path(self.mlp(self.norm2(x), H, W))
        return x


def tokens_to_nchw(x: Tensor, H: int, W: int) -> Tensor:
    B, N, C = x.shape
    return x.transpose(1, 2).reshape(B, C, H, W)


def stochastic_depth_rates(depths: List[int], drop_path_rate: float) -> List[List[float]]:
    """Linearly increasing drop-path rates over all blocks, split per stage."""
    total = sum(depths)
    rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    out, cur = [], 0
    for d in depths:
        out.append(rates[cur:cur + d])
        cur += d
    return out


def pyramid_feature_info(channels: Sequence[int]) -> List[Dict[str, int]]:
    """timm-style `feature_info` of a 4-level pyramid at strides 4, 8, 16, 32."""
    return [{"num_chs": int(c), "reduction": s} for c, s in zip(channels, (4, 8, 16, 32))]


@torch.jit.ignore
def check_input(x: Tensor, multiple: int = 32) -> None:
    """Reject inputs the pyramid cannot take, with a message that says how to fix it."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputShapeError(
            f"expected a (B, 3, H, W) image tensor, got shape {tuple(x.shape)}; "
            "add a batch dimension / convert to 3-channel RGB")
    H, W = int(x.shape[2]), int(x.shape[3])
    if H % multiple != 0 or W % multiple != 0:
        raise InputShapeError(
            f"input height and width must be multiples of {multiple}, got {H}x{W}; "
            f"resize or pad to e.g. {(H + multiple - 1) // multiple * multiple}x"
            f"{(W + multiple - 1) // multiple * multiple}")


def init_weights(m: nn.Module) -> None:
    """Truncated-normal Linear (std .02), unit LayerNorm, He-normal Conv: the usual ViT init."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class PatchEmbed(nn.Module):
    """Patches by a strided conv, then LayerNorm over channels: (B, C, H, W) -> tokens, H', W'.

    stride == patch_size (the default): non-overlapping patches (PVT v1, Swin, MSwin);
    stride < patch_size: overlapping patches padded by patch_size // 2 (PVT v2, SegFormer).
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int = 0, norm_eps: float = 1e-5):
        super().__init__()
        stride = stride or patch_size
        padding = 0 if stride == patch_size else patch_size // 2
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride, padding=padding)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, x: Tensor) -> Tuple[Tensor, int, int]:
        x = self.proj(x)
        H, W = x.shape[2], x.shape[3]
        return self.norm(x.flatten(2).transpose(1, 2)), H, W
