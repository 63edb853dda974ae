"""Exact inference-time rewrites of a segmentor (used by export; eval only).

`fuse_for_inference(model)` returns a copy in which
- SegFormerHead's `linear_fuse` (1x1 conv over the concat of the 4 upsampled projections,
  then BatchNorm) is folded into the 4 per-level projections. Bilinear upsampling is a
  per-channel linear map whose weights sum to 1, so it commutes with any per-pixel affine
  map: BN(W_f [U_3 P_3 x_3; ...; P_0 x_0]) = sum_i U_i (s * W_f,i W_i) x_i + bias. Each
  level is then projected straight to `embed_dim` at its own (coarse) resolution before
  upsampling, and the 4*E -> E conv at 1/4 resolution disappears;
- every ConvBNReLU (FPN heads) has its BatchNorm folded into the conv;
- optionally (`height`, `width` given) PVT v1 position embeddings are resampled once to the
  export grid, so a static graph carries them as constants instead of a Resize.

`static_adaptive_pool(model)` replaces AdaptiveAvgPool2d by an exact averaging-matrix
form where the input is not a multiple of the output size (ONNX AveragePool cannot
express that; two constant MatMuls can).

All rewrites keep numerics within float rounding of the original (tested to 1e-4).
"""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, ExportError
from ..models.heads import ConvBNReLU, SegFormerHead


def _bn_scale_shift(bn: nn.BatchNorm2d) -> Tuple[Tensor, Tensor]:
    if bn.running_var is None or bn.running_mean is None:
        raise ExportError("BatchNorm without running statistics cannot be folded; export with --no-fuse")
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias
    return scale, shift


class FusedConvReLU(nn.Module):
    """ConvBNReLU with the BN folded into the conv (conv now carries a bias)."""

    def __init__(self, block: ConvBNReLU):
        super().__init__()
        conv = block.conv
        scale, shift = _bn_scale_shift(block.bn)
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, bias=True)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
            b = conv.bias * scale + shift if conv.bias is not None else shift
            self.conv.bias.copy_(b)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x))


class FusedSegFormerHead(nn.Module):
    """SegFormerHead with linear_fuse + BN folded into the per-level projections."""

    def __init__(self, head: SegFormerHead):
        super().__init__()
        n = len(head.linear_c)
        fuse_w = head.linear_fuse.conv.weight[:, :, 0, 0]  # (E, n*E), concat order is coarsest first
        if head.linear_fuse.conv.bias is not None:
            raise ExportError("linear_fuse with a conv bias is not the SegFormer layout")
        scale, shift = _bn_scale_shift(head.linear_fuse.bn)
        embed = fuse_w.shape[0]
        self.proj = nn.ModuleList()
        total_bias = shift.clone()
        for i, lin in enumerate(head.linear_c):
            block = fuse_w[:, (n - 1 - i) * embed:(n - i) * embed]  # level i sits at slot n-1-i
            w = lin.proj.weight  # (E, C_i)
            conv = nn.Conv2d(w.shape[1], embed, 1, bias=(i == 0))
            with torch.no_grad():
                conv.weight.copy_((scale[:, None] * (block @ w))[:, :, None, None])
            total_bias = total_bias + scale * (block @ lin.proj.bias)
            self.proj.append(conv)
        with torch.no_grad():
            self.proj[0].bias.copy_(total_bias)  # proj[0] is built with bias=True above
        self.linear_pred = copy.deepcopy(head.linear_pred)

    def forward(self, feats: List[Tensor]) -> Tensor:
        size = (feats[0].shape[2], feats[0].shape[3])
        x = torch.zeros(1)
        for i, proj in enumerate(self.proj):
            y = proj(feats[i])
            if i == 0:
                x = y
            else:
                x = x + F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.linear_pred(F.relu(x))


def _pool_matrix(n_in: int, n_out: int, dtype: torch.dtype) -> Tensor:
    """Row i averages input [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out)): PyTorch's adaptive bins."""
    i = torch.arange(n_out)
    start = torch.div(i * n_in, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
    j = torch.arange(n_in)
    mask = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return mask.to(dtype) / (end - start).to(dtype)[:, None]


class StaticAdaptiveAvgPool2d(nn.Module):
    """AdaptiveAvgPool2d that exports as AveragePool when sizes divide, else as two MatMuls
    with constant averaging matrices (exact; the matrices depend on the static input size)."""

    def __init__(self, output_size: Tuple[int, int]):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        oh, ow = self.output_size
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % oh == 0 and w % ow == 0:
            return F.adaptive_avg_pool2d(x, (oh, ow))
        ph = _pool_matrix(h, oh, x.dtype)
        pw_t = _pool_matrix(w, ow, x.dtype).t()
        return torch.matmul(torch.matmul(ph, x), pw_t)


def static_adaptive_pool(model: nn.Module) -> nn.Module:
    """In place: AdaptiveAvgPool2d(k) -> StaticAdaptiveAvgPool2d(k). Static-shape export only."""
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.AdaptiveAvgPool2d):
                size = child.output_size
                size = (size, size) if isinstance(size, int) else tuple(size)
                if None in size:
                    continue
                setattr(mod, child_name, StaticAdaptiveAvgPool2d((int(size[0]), int(size[1]))))
    return model


def bake_pos_embed(model: nn.Module, height: int, width: int) -> nn.Module:
    """In place: resample every PVT v1 stage's position embedding to the grid of a
    `height` x `width` input, so the forward takes the no-interpolation path."""
    from ..models.pvt_v1 import PVTv1Stage

    stride = 4
    for mod in model.modules():
        if isinstance(mod, PVTv1Stage):
            h, w = height // stride, width // stride
            if (h, w) != (mod.grid_h, mod.grid_w):
                with torch.no_grad():
                    spatial = mod.spatial_pos_embed(h, w)
                    prefix = mod.pos_embed[:, :mod.num_prefix]
                    mod.grid_h, mod.grid_w = h, w
                    mod.pos_embed = nn.Parameter(torch.cat([prefix, spatial], dim=1))
            stride *= 2
    return model


def _replace(model: nn.Module) -> None:
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, SegFormerHead):
                setattr(mod, child_name, FusedSegFormerHead(child))
            elif isinstance(child, ConvBNReLU):
                setattr(mod, child_name, FusedConvReLU(child))


def fuse_for_inference(model: nn.Module, height: Optional[int] = None, width: Optional[int] = None) -> nn.Module:
    """An eval-mode copy with the exact rewrites above applied (the input is untouched)."""
    out = copy.deepcopy(model).eval()
    if isinstance(out, (SegFormerHead, ConvBNReLU)):
        raise ConfigError("fuse_for_inference takes a model that contains heads, not a head itself")
    _replace(out)
    if height is not None and width is not None:
        bake_pos_embed(out, height, width)
    for p in out.parameters():
        p.requires_grad_(False)
    return out
