"""DAT: Vision Transformer with Deformable Attention (Xia et al., CVPR 2022), tiny.

Stages alternate window attention (L: local, S: shifted by ceil(w/2)) with deformable
attention (D). A D block projects queries, predicts one offset field per group with a
small conv net (`conv_offset`: depth-wise k x k conv, LayerNorm, GELU, 1x1 conv to 2
channels), adds it to a uniform grid of reference points, samples keys/values there
bilinearly, and biases the logits with a relative-position table sampled at the
query-to-key displacement.

Sampling: `sampler="grid_sample"` (default) uses F.grid_sample, which exports as ONNX
GridSample (opset >= 16; TensorRT >= 8.5). `sampler="gather"` uses `bilinear_gather`,
the same bilinear interpolation written with Floor / Gather / arithmetic only, for
TensorRT versions whose GridSample is missing or misbehaves; the two agree to ~1e-7.
`set_sampler(model, "gather")` switches a built model (e.g. before export).

Window attention zero-pads maps that are not a multiple of the window (as the official
segmentation code does) and builds the shift mask from the actual size in `forward`.
The relative-position table of a D block has the size of the map at `img_size` (224 for
the ImageNet weights: 27x27 in stage 3, 13x13 in stage 4); since it is sampled at
normalized displacements, other input sizes use the same table (no resize needed).

Own state-dict layout: the official one (LeapLabTHU/DAT, CVPR 2022 release) regrouped
per block (TorchScript cannot index `layer_norms[2 * d]`), with the segmentation code's
per-level output norms, less the recomputed buffers (`relative_position_index`,
`attn_mask`). formats/dat.py (convert_official_dat) maps
`stages.i.layer_norms.{2j,2j+1}` -> `stages.i.blocks.j.norm{1,2}`, `stages.i.attns.j` ->
`stages.i.blocks.j.attn` (in L/S blocks `proj_qkv` -> `qkv`, `proj_out` -> `proj`: they are
Swin's window attention), `stages.i.mlps.j` -> `stages.i.blocks.j.mlp`, `down_projs.i` ->
`stages.i.downsample`, `cls_norm` -> `norms.3`.
    patch_proj.{0,1.norm}                          4x4/4 conv, LayerNorm
    stages.{i}.blocks.{j}.{norm1.norm,norm2.norm,mlp.chunk.{linear1,linear2}}
    stages.{i}.blocks.{j}.attn.{qkv,proj,relative_position_bias_table}                  L / S (Swin's names)
    stages.{i}.blocks.{j}.attn.{conv_offset.{0,1.norm,3},proj_q,proj_k,proj_v,proj_out,rpe_table}   D
    stages.{i}.downsample.{0,1.norm}               2x2/2 conv, LayerNorm (i < 3)
    norms.{i}.norm                                 pyramid output norms
    cls_head                                       ImageNet classifier (classifiers only)
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .layers import DropPath, check_input, pyramid_feature_info
from .registry import register_configs
from .segmentor import register_segmentors
from .swin import WindowAttention, init_weights, shifted_window_mask

SAMPLERS = ("grid_sample", "gather")


# ----------------------------------------------------------------------------- sampling
def bilinear_gather(inp: Tensor, grid: Tensor) -> Tensor:
    """F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    written with Floor / Gather / arithmetic only (no GridSample op in exported graphs).

    inp: (N, C, H, W); grid: (N, Ho, Wo, 2) holding (x, y) in [-1, 1]. Returns (N, C, Ho, Wo).
    Indices are formed in int64, so they stay exact when the graph runs in FP16.
    """
    N, C, H, W = inp.shape
    Ho, Wo = grid.shape[1], grid.shape[2]
    L = Ho * Wo
    gx = (grid[..., 0].reshape(N, L) + 1.0) * 0.5 * float(W - 1)
    gy = (grid[..., 1].reshape(N, L) + 1.0) * 0.5 * float(H - 1)
    x0f = torch.floor(gx)
    y0f = torch.floor(gy)
    x1f = x0f + 1.0
    y1f = y0f + 1.0
    # Corner weights in grid_sample's own form and order (nw, ne, sw, se).
    w_nw = (x1f - gx) * (y1f - gy)
    w_ne = (gx - x0f) * (y1f - gy)
    w_sw = (x1f - gx) * (gy - y0f)
    w_se = (gx - x0f) * (gy - y0f)
    x0 = x0f.to(torch.int64)
    y0 = y0f.to(torch.int64)
    x1 = x0 + 1
    y1 = y0 + 1
    flat = inp.permute(0, 2, 3, 1).reshape(N * H * W, C)  # rows: (n, y, x)
    base = (torch.arange(N, device=inp.device, dtype=torch.int64) * (H * W)).reshape(N, 1)
    out = torch.zeros(N, L, C, dtype=inp.dtype, device=inp.device)
    xs, ys, ws = [x0, x1, x0, x1], [y0, y0, y1, y1], [w_nw, w_ne, w_sw, w_se]
    for c in range(4):
        xi, yi, w = xs[c], ys[c], ws[c]
        valid = (xi >= 0) & (xi <= W - 1) & (yi >= 0) & (yi <= H - 1)
        idx = base + yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)
        taps = torch.index_select(flat, 0, idx.reshape(N * L)).reshape(N, L, C)
        out = out + taps * (w * valid.to(w.dtype)).unsqueeze(-1)
    return out.permute(0, 2, 1).reshape(N, C, Ho, Wo)


def bilinear_sample(inp: Tensor, grid: Tensor, use_gather: bool) -> Tensor:
    """Bilinear, zero padding, align_corners=True (the official DAT sampling)."""
    if use_gather:
        return bilinear_gather(inp, grid)
    return F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def reference_points(H: int, W: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(1, H, W, 2) cell centres as (y, x) normalized by (i + 0.5) / H * 2 - 1 (official)."""
    ys = (torch.arange(H, device=device, dtype=dtype) + 0.5) / float(H) * 2.0 - 1.0
    xs = (torch.arange(W, device=device, dtype=dtype) + 0.5) / float(W) * 2.0 - 1.0
    return torch.stack((ys[:, None].expand(H, W), xs[None, :].expand(H, W)), dim=-1).unsqueeze(0)


# ----------------------------------------------------------------------------- modules
class LayerNormProxy(nn.Module):
    """LayerNorm over the channels of an NCHW map (official name, keeps the `.norm.` key level)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TransformerMLP(nn.Module):
    """Linear -> GELU -> Linear over the channels of an NCHW map."""

    def __init__(self, dim: int, expansion: int, drop: float = 0.0):
        super().__init__()
        self.chunk = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(dim, dim * expansion)), ("act", nn.GELU()), ("drop1", nn.Dropout(drop)),
            ("linear2", nn.Linear(dim * expansion, dim)), ("drop2", nn.Dropout(drop))]))

    def forward(self, x: Tensor) -> Tensor:
        return self.chunk(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LocalAttention(WindowAttention):
    """Window attention on NCHW maps (official `LocalAttention`); `shift > 0` makes it the
    shifted variant (`ShiftWindowAttention`, which always shifts, with the mask of its size)."""

    def __init__(self, dim: int, heads: int, window: int, shift: int = 0):
        super().__init__(dim, heads, window, qkv_bias=True, table_std=0.01)
        self.shift = shift

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        H, W = x.shape[2], x.shape[3]
        w = self.window
        mask: Optional[Tensor] = None
        if self.shift > 0:
            mask = shifted_window_mask((H + w - 1) // w * w, (W + w - 1) // w * w, w, self.shift, x.device)
            mask = mask.to(x.dtype)
        return self.attend(x.permute(0, 2, 3, 1), self.shift, mask).permute(0, 3, 1, 2)


class DAttention(nn.Module):
    """Deformable multi-head attention (official `DAttentionBaseline`, stride 1, learned rpe table)."""

    def __init__(self, dim: int, heads: int, groups: int, offset_range_factor: float, kernel: int,
                 table_size: int, use_pe: bool = True, use_gather: bool = False):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.groups = groups
        self.group_channels = dim // groups
        self.group_heads = heads // groups
        self.scale = float(self.head_dim ** -0.5)
        self.offset_range_factor = float(offset_range_factor)
        self.use_pe = use_pe
        self.use_gather = use_gather
        gc = self.group_channels
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gc, gc, kernel, 1, kernel // 2, groups=gc), LayerNormProxy(gc), nn.GELU(),
            nn.Conv2d(gc, 2, 1, 1, 0, bias=False))
        self.proj_q = nn.Conv2d(dim, dim, 1)
        self.proj_k = nn.Conv2d(dim, dim, 1)
        self.proj_v = nn.Conv2d(dim, dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.rpe_table = nn.Parameter(torch.zeros(heads, 2 * table_size - 1, 2 * table_size - 1) if use_pe
                                      else torch.zeros(0))
        nn.init.trunc_normal_(self.rpe_table, std=0.01)

    def sample_points(self, x: Tensor, q: Tensor) -> List[Tensor]:
        """[keys/values sampled at the deformed points (B*g, C/g, Hk, Wk),
        sampling positions (B*g, Hk, Wk, 2), reference points (1, Hk, Wk, 2)], (y, x) order."""
        B, C, H, W = x.shape
        offset = self.conv_offset(q.reshape(B * self.groups, self.group_channels, H, W))
        Hk, Wk = offset.shape[2], offset.shape[3]
        if self.offset_range_factor > 0:
            rng = torch.tensor([1.0 / Hk, 1.0 / Wk], device=x.device, dtype=x.dtype).reshape(1, 2, 1, 1)
            offset = offset.tanh() * rng * self.offset_range_factor
        reference = reference_points(Hk, Wk, x.device, x.dtype)
        pos = offset.permute(0, 2, 3, 1) + reference
        if self.offset_range_factor < 0:
            pos = pos.tanh()
        sampled = bilinear_sample(x.reshape(B * self.groups, self.group_channels, H, W), pos.flip(-1),
                                  self.use_gather)
        return [sampled, pos, reference]

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q = self.proj_q(x)
        sampled, pos, _ = self.sample_points(x, q)
        Ns = sampled.shape[2] * sampled.shape[3]
        sampled = sampled.reshape(B, C, 1, Ns)
        bh = B * self.heads
        q = q.reshape(bh, self.head_dim, H * W)
        k = self.proj_k(sampled).reshape(bh, self.head_dim, Ns)
        v = self.proj_v(sampled).reshape(bh, self.head_dim, Ns)
        attn = (q.transpose(1, 2) @ k) * self.scale  # (B*heads, HW, Ns)
        if self.use_pe:
            Bg = B * self.groups
            table = self.rpe_table.unsqueeze(0).expand(B, -1, -1, -1)
            table = table.reshape(Bg, self.group_heads, self.rpe_table.shape[1], self.rpe_table.shape[2])
            q_grid = reference_points(H, W, x.device, x.dtype).reshape(1, H * W, 1, 2)
            displacement = (q_grid - pos.reshape(Bg, 1, Ns, 2)) * 0.5  # (B*g, HW, Ns, 2)
            bias = bilinear_sample(table, displacement.flip(-1), self.use_gather)  # (B*g, heads/g, HW, Ns)
            attn = attn + bias.reshape(bh, H * W, Ns)
        attn = attn.softmax(dim=2)
        out = (v @ attn.transpose(1, 2)).reshape(B, C, H, W)
        return self.proj_out(out)


class DATBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)); x + mlp(norm2(x)), on NCHW maps."""

    def __init__(self, attn: nn.Module, dim: int, expansion: int, drop_path: float):
        super().__init__()
        self.norm1 = LayerNormProxy(dim)
        self.attn = attn
        self.norm2 = LayerNormProxy(dim)
        self.mlp = TransformerMLP(dim, expansion)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DATStage(nn.Module):
    def __init__(self, dim: int, spec: Sequence[str], heads: int, window: int, groups: int, use_pe: bool,
                 offset_range_factor: float, kernel: int, table_size: int, expansion: int,
                 drop_path: Sequence[float], use_gather: bool, out_dim: int = 0):
        super().__init__()
        blocks: List[nn.Module] = []
        for j, kind in enumerate(spec):
            if kind == "L":
                attn: nn.Module = LocalAttention(dim, heads, window)
            elif kind == "S":
                attn = LocalAttention(dim, heads, window, shift=math.ceil(window / 2))
            elif kind == "D":
                attn = DAttention(dim, heads, groups, offset_range_factor, kernel, table_size, use_pe, use_gather)
            else:
                raise ConfigError(f"stage spec {kind!r} is not one of L, S, D")
            blocks.append(DATBlock(attn, dim, expansion, drop_path[j]))
        self.blocks = nn.ModuleList(blocks)
        # The official model's down_projs[i] (2x2/2 conv + LayerNorm), owned by the stage before it.
        self.downsample = (nn.Sequential(nn.Conv2d(dim, out_dim, 2, 2, bias=False), LayerNormProxy(out_dim))
                           if out_dim > 0 else None)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Returns (this stage's output, input of the next stage)."""
        for blk in self.blocks:
            x = blk(x)
        nxt = x
        if self.downsample is not None:
            nxt = self.downsample(x)
        return x, nxt


class DAT(nn.Module):
    """Backbone (num_classes=0) or ImageNet classifier (num_classes > 0)."""

    def __init__(self, dims: Sequence[int] = (96, 192, 384, 768), depths: Sequence[int] = (2, 2, 6, 2),
                 heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7,
                 stage_spec: Sequence[Sequence[str]] = (("L", "S"), ("L", "S"), ("L", "D") * 3, ("L", "D")),
                 groups: Sequence[int] = (-1, -1, 3, 6), use_pes: Sequence[bool] = (False, False, True, True),
                 offset_range_factor: Sequence[float] = (-1, -1, 2, 2), ksizes: Sequence[int] = (9, 7, 5, 3),
                 expansion: int = 4, img_size: int = 224, patch_size: int = 4, num_classes: int = 1000,
                 in_chans: int = 3, drop_path_rate: float = 0.0, sampler: str = "grid_sample"):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.num_classes = num_classes
        dims = list(dims)
        self.patch_proj = nn.Sequential(nn.Conv2d(in_chans, dims[0], patch_size, patch_size), LayerNormProxy(dims[0]))
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # official: linspace
        fmap = img_size // patch_size
        stages = []
        for i in range(4):
            spec = list(stage_spec[i])
            if len(spec) != depths[i]:
                raise ConfigError(f"stage {i}: stage_spec {spec} has {len(spec)} entries, depth is {depths[i]}")
            stages.append(DATStage(dims[i], spec, heads[i], window_size, groups[i], bool(use_pes[i]),
                                   float(offset_range_factor[i]), ksizes[i], fmap, expansion,
                                   rates[sum(depths[:i]):sum(depths[:i + 1])], sampler == "gather",
                                   dims[i + 1] if i < 3 else 0))
            fmap //= 2
        self.stages = nn.ModuleList(stages)
        self.norms = nn.ModuleList([LayerNormProxy(d) for d in dims])
        self.cls_head = nn.Linear(dims[3], num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info: List[Dict[str, int]] = pyramid_feature_info(dims)
        self.apply(init_weights)

    def forward_features(self, x: Tensor) -> List[Tensor]:
        """The 4 pyramid maps (each stage's output, LayerNorm-ed), NCHW."""
        if not torch.jit.is_scripting():
            check_input(x)
        x = self.patch_proj(x)
        outs: List[Tensor] = []
        for stage, norm in zip(self.stages, self.norms):
            y, x = stage(x)
            outs.append(norm(y))
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits: global average of the normed last map -> linear head (official)."""
        return self.cls_head(self.forward_features(x)[3].mean((2, 3)))


def set_sampler(model: nn.Module, sampler: str) -> nn.Module:
    """Switch every deformable-attention block of `model` (a DAT or a segmentor on one) to
    "grid_sample" or "gather" sampling. Returns the model."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    for m in model.modules():
        if isinstance(m, DAttention):
            m.use_gather = sampler == "gather"
    return model


CONFIGS: Dict[str, dict] = {
    # configs/dat_tiny.yaml of the CVPR 2022 release.
    "dat_tiny": dict(dims=(96, 192, 384, 768), depths=(2, 2, 6, 2), heads=(3, 6, 12, 24)),
}


def build(name: str, **kw) -> DAT:
    return DAT(**{**CONFIGS[name], **kw})


register_configs(CONFIGS, build)
for _name in CONFIGS:
    register_segmentors(_name, functools.partial(build, _name, num_classes=0), 768)
