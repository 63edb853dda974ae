"""Swin Transformer (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows", ICCV 2021): tiny and small, as a 4-level pyramid backbone.

W-MSA / SW-MSA alternate inside each stage; SW-MSA cyclically shifts the map by
window // 2 and masks attention between tokens that the shift brought together from
different image regions. The mask is built inside `forward` from the actual (padded) map
size, never at construction time, so TorchScript computes it for whatever size it gets
and an ONNX graph traced at H x W carries the mask for exactly H x W. Maps that are not
a multiple of the window are zero-padded after norm1 (as in the official segmentation
code and Hugging Face); a stage whose map is no larger than one window does not shift
(as in the official classifier and HF `SwinModel`).

Own state-dict layout (the official microsoft layout; formats/swin.py converts HF):
    patch_embed.{proj,norm}
    layers.{i}.blocks.{j}.{norm1,attn.{qkv,proj,relative_position_bias_table},norm2,mlp.{fc1,fc2}}
    layers.{i}.downsample.{norm,reduction}       (i < 3)
    norms.{i}                                    LayerNorm of each pyramid output
                                                 (official segmentation `norm{i}`; the
                                                 classifier's final `norm` is norms.3)
    head                                         ImageNet classifier (classifiers only)

The window helpers here (`window_partition`, `window_reverse`, `relative_position_index`,
`shifted_window_mask`, `window_attention`, `WindowAttention`, `PatchMerging`) are shared
with dat.py and mswin.py.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .layers import DropPath, Mlp, PatchEmbed, check_input, init_weights, pyramid_feature_info, stochastic_depth_rates
from .registry import register_configs
from .segmentor import register_segmentors

# Added to attention logits that a mask forbids (the official value; exp(-100) underflows
# to 0 in fp16 and is ~4e-44 in fp32). TorchScript cannot read module globals, so the
# functions below take it as a default argument.
MASK_VALUE = -100.0


# ----------------------------------------------------------------------------- helpers
def relative_position_index(window: int) -> Tensor:
    """(N, N) index into a ((2w-1)^2, heads) bias table, N = w*w (official construction)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) -> (B * nW, window * window, C); H and W multiples of window."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // window, window, W // window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B * (H // window) * (W // window), window * window, C)


def window_reverse(x: Tensor, window: int, H: int, W: int) -> Tensor:
    """(B * nW, window * window, C) -> (B, H, W, C)."""
    C = x.shape[-1]
    x = x.reshape(-1, H // window, W // window, window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def pad_to_window(x: Tensor, window: int) -> Tuple[Tensor, int, int]:
    """Zero-pad a (B, H, W, C) map at the bottom/right to multiples of `window`."""
    H, W = x.shape[1], x.shape[2]
    pad_b = (window - H % window) % window
    pad_r = (window - W % window) % window
    if pad_b > 0 or pad_r > 0:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    return x, H + pad_b, W + pad_r


def shifted_window_mask(H: int, W: int, window: int, shift: int, device: torch.device,
                        value: float = MASK_VALUE) -> Tensor:
    """SW-MSA mask for a (padded) H x W map: (nW, N, N), 0 inside a region, `value` across.

    Each position belongs to one of 3 x 3 regions of the shifted map (rows
    [0, H-w), [H-w, H-s), [H-s, H), likewise columns); after the cyclic shift a window
    may hold tokens of several regions, which must not attend to each other.
    """
    h = torch.arange(H, device=device)
    w = torch.arange(W, device=device)
    h_region = (h >= H - window).to(torch.float32) + (h >= H - shift).to(torch.float32)
    w_region = (w >= W - window).to(torch.float32) + (w >= W - shift).to(torch.float32)
    region = (h_region[:, None] * 3.0 + w_region[None, :]).reshape(1, H, W, 1)
    region = window_partition(region, window).squeeze(-1)  # (nW, N)
    diff = region[:, None, :] - region[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, value)


def window_attention(qkv: Tensor, num_heads: int, scale: float, bias: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Multi-head attention inside windows.

    qkv: (Bw, N, 3C) projected tokens of Bw windows; bias: (heads, N, N) relative position
    bias; mask: None or (nW, N, N) additive mask, Bw = B * nW. Returns (Bw, N, C).
    Plain MatMul / Add / Softmax / MatMul in exported graphs.
    """
    Bw, N, C3 = qkv.shape
    C = C3 // 3
    qkv = qkv.reshape(Bw, N, 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * scale, qkv[1], qkv[2]
    attn = q @ k.transpose(-2, -1) + bias.unsqueeze(0)
    if mask is not None:
        nW = mask.shape[0]
        attn = attn.reshape(Bw // nW, nW, num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.reshape(Bw, num_heads, N, N)
    attn = attn.softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(Bw, N, C)


# ----------------------------------------------------------------------------- modules
class PatchMerging(nn.Module):
    """2x2 neighbours -> 4C channels (official order x[0::2,0::2], x[1::2,0::2], x[0::2,1::2],
    x[1::2,1::2]) -> LayerNorm -> Linear to 2C. Done with one reshape/transpose, no strided slices."""

    def __init__(self, dim: int, out_dim: int = 0, norm_eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, out_dim or 2 * dim, bias=False)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        B, L, C = x.shape
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5)
        x = x.reshape(B, (H // 2) * (W // 2), 4 * C)
        return self.reduction(self.norm(x))


class WindowAttention(nn.Module):
    """(S)W-MSA on a (B, H, W, C) map, with a learned relative position bias ((2w-1)^2 x heads).

    `forward(x, shift, mask)`: zero-pad to multiples of the window, cyclically shift by
    -shift when a mask is given, attend inside each window (plus the mask), undo the shift,
    crop. DAT's local attention reuses it.
    """

    def __init__(self, dim: int, num_heads: int, window: int, qkv_bias: bool = True, table_std: float = 0.02):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.scale = float((dim // num_heads) ** -0.5)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=table_std)
        self.register_buffer("relative_position_index", relative_position_index(window).flatten(), persistent=False)

    def position_bias(self) -> Tensor:
        N = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index]  # type: ignore[index]
        return bias.reshape(N, N, -1).permute(2, 0, 1)

    def attend(self, x: Tensor, shift: int, mask: Optional[Tensor]) -> Tensor:
        B, H, W, C = x.shape
        w = self.window
        y, Hp, Wp = pad_to_window(x, w)
        if mask is not None:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        y = window_attention(self.qkv(window_partition(y, w)), self.num_heads, self.scale, self.position_bias(), mask)
        y = window_reverse(self.proj(y), w, Hp, Wp)
        if mask is not None:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        if Hp != H or Wp != W:
            y = y[:, :H, :W, :]
        return y

    def forward(self, x: Tensor, shift: int, mask: Optional[Tensor]) -> Tensor:
        return self.attend(x, shift, mask)


class SwinBlock(nn.Module):
    """Pre-norm block: x + (S)W-MSA(norm1(x)); x + MLP(norm2(x)). Shifted iff a mask is given."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, qkv_bias: bool,
                 drop_path: float, norm_eps: float = 1e-5):
        super().__init__()
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim, num_heads, window, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, H: int, W: int, mask: Optional[Tensor]) -> Tensor:
        B, L, C = x.shape
        y = self.attn(self.norm1(x).reshape(B, H, W, C), self.shift, mask)
        x = x + self.drop_path(y.reshape(B, L, C))
        return x + self.drop_path(self.mlp(self.norm2(x), H, W))


class SwinStage(nn.Module):
    """`depth` blocks (odd ones shifted), then optional patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, qkv_bias: bool,
                 drop_path: Sequence[float], downsample: bool, norm_eps: float = 1e-5):
        super().__init__()
        self.window = window
        self.shift = window // 2
        self.blocks = nn.ModuleList([
            SwinBlock(dim, num_heads, window, 0 if j % 2 == 0 else window // 2, mlp_ratio, qkv_bias,
                      drop_path[j], norm_eps)
            for j in range(depth)])
        self.downsample = PatchMerging(dim, norm_eps=norm_eps) if downsample else None

    def forward(self, x: Tensor, H: int, W: int) -> Tuple[Tensor, Tensor]:
        """Returns (this stage's tokens at H x W, tokens for the next stage)."""
        mask: Optional[Tensor] = None
        if len(self.blocks) > 1 and min(H, W) > self.window:
            Hp = (H + self.window - 1) // self.window * self.window
            Wp = (W + self.window - 1) // self.window * self.window
            mask = shifted_window_mask(Hp, Wp, self.window, self.shift, x.device).to(x.dtype)
        for j, blk in enumerate(self.blocks):
            x = blk(x, H, W, mask if j % 2 == 1 else None)
        nxt = x
        if self.downsample is not None:
            nxt = self.downsample(x, H, W)
        return x, nxt


class WindowPyramid(nn.Module):
    """What Swin and MSwin share after their constructors: patch embed -> 4 stages that each
    return (output, next stage's input after patch merging) -> per-level LayerNorm.
    Subclasses set patch_embed, layers, norms and head."""

    def forward_features(self, x: Tensor) -> List[Tensor]:
        """The 4 pyramid maps (each stage's output before patch merging, LayerNorm-ed), NCHW."""
        if not torch.jit.is_scripting():
            check_input(x)
        x, H, W = self.patch_embed(x)
        outs: List[Tensor] = []
        for stage, norm in zip(self.layers, self.norms):
            y, x = stage(x, H, W)
            B, L, C = y.shape
            outs.append(norm(y).transpose(1, 2).reshape(B, C, H, W))
            H, W = H // 2, W // 2
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits: mean of the last (normed) map -> linear head."""
        return self.head(self.forward_features(x)[3].flatten(2).mean(2))


class SwinTransformer(WindowPyramid):
    """Backbone (num_classes=0) or ImageNet classifier (num_classes > 0)."""

    def __init__(self, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, num_classes: int = 1000, in_chans: int = 3, drop_path_rate: float = 0.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.num_classes = num_classes
        self.window_size = window_size
        dims = [embed_dim * 2 ** i for i in range(4)]
        dpr = stochastic_depth_rates(list(depths), drop_path_rate)
        self.patch_embed = PatchEmbed(in_chans, embed_dim, 4, norm_eps=norm_eps)
        self.layers = nn.ModuleList([
            SwinStage(dims[i], depths[i], num_heads[i], window_size, mlp_ratio, qkv_bias, dpr[i], i < 3, norm_eps)
            for i in range(4)])
        self.norms = nn.ModuleList([nn.LayerNorm(d, eps=norm_eps) for d in dims])
        self.head = nn.Linear(dims[3], num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info: List[Dict[str, int]] = pyramid_feature_info(dims)
        self.apply(init_weights)


CONFIGS: Dict[str, dict] = {
    "swin_tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "swin_small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7),
}


def build(name: str, **kw) -> SwinTransformer:
    return SwinTransformer(**{**CONFIGS[name], **kw})


register_configs(CONFIGS, build)
for _name in CONFIGS:
    # UperNet/Swin decoders use 512; SegFormer's All-MLP head on Swin-T/S uses 768 like MiT-B2+.
    register_segmentors(_name, functools.partial(build, _name, num_classes=0), 768)
