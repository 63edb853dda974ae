"""Test helpers for the model / checkpoint tests: deterministic random weights and writers that
produce checkpoints in each foreign layout from a pvtseg model's weights.

The writers are written from the layouts as documented (official whai362/PVT and NVlabs
SegFormer code, mmseg, timm, Hugging Face transformers), independently of the loader's
conversion tables in pvtseg.models.formats, so a wrong rule there fails a round trip.
"""

from __future__ import annotations

import contextlib
import re
from typing import Dict, Iterator

import torch
import torch.nn as nn
from torch import Tensor


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every float parameter and buffer distinct, well-scaled random values.

    Default initialisations leave LayerNorm at (1, 0), biases at 0 and BatchNorm statistics
    at (0, 1): a key mix-up between two such tensors would go unnoticed. Random values make
    every tensor matter. Weights are scaled by 1/sqrt(fan_in) so activations stay O(1).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            shape = t.shape
            if name.endswith("running_var"):
                new = torch.rand(shape, generator=g) + 0.5
            elif name.endswith("running_mean"):
                new = 0.1 * torch.randn(shape, generator=g)
            elif t.dim() == 1 and name.endswith("weight"):
                new = 1.0 + 0.2 * torch.randn(shape, generator=g)
            elif name.endswith("bias"):
                new = 0.1 * torch.randn(shape, generator=g)
            elif t.dim() >= 2 and "embed" not in name.split(".")[-1] and "cls_token" not in name:
                new = torch.randn(shape, generator=g) / max(1, t[0].numel()) ** 0.5
            else:  # position embeddings, class token
                new = 0.5 * torch.randn(shape, generator=g)
            t.copy_(new)
    return model


@contextlib.contextmanager
def fast_init() -> Iterator[None]:
    """trunc_normal_ -> normal_: same scale, a fraction of the cost (big models build faster)."""
    orig = nn.init.trunc_normal_

    def quick(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, **_: object):
        with torch.no_grad():
            return tensor.normal_(mean, std)

    nn.init.trunc_normal_ = quick  # type: ignore[assignment]
    try:
        yield
    finally:
        nn.init.trunc_normal_ = orig  # type: ignore[assignment]


# ----------------------------------------------------------------------------------------------
# Writers: pvtseg state dict -> foreign layouts
# ----------------------------------------------------------------------------------------------
def backbone_part(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Backbone keys (own classifier layout) of a classifier or segmentor state dict."""
    if any(k.startswith("backbone.") for k in sd):
        return {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    return dict(sd)


def to_official(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Own backbone/classifier keys -> whai362/PVT classification (v1 and v2) / NVlabs MiT keys."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"stages\.(\d)\.(.+)$", k)
        if not m:
            out[k] = v  # cls_token, norm.*, head.*
            continue
        n, rest = int(m.group(1)) + 1, m.group(2)
        if rest.startswith("patch_embed."):
            out[f"patch_embed{n}." + rest[len("patch_embed."):]] = v
        elif rest == "pos_embed":
            out[f"pos_embed{n}"] = v
        elif rest.startswith("norm."):
            out[f"norm{n}." + rest[len("norm."):]] = v
        elif rest.startswith("blocks."):
            _, j, inner = rest.split(".", 2)
            inner = inner.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
            out[f"block{n}.{j}.{inner}"] = v
        else:
            raise AssertionError(k)
    return out


def to_mmseg(sd: Dict[str, Tensor], add_conv_seg: bool = True) -> Dict[str, Tensor]:
    """Own segmentor keys -> mmseg (backbone./neck./decode_head.) as the official PVT Semantic FPN
    and NVlabs SegFormer checkpoints have them."""
    out = {"backbone." + k: v for k, v in to_official(backbone_part(sd)).items()}
    segformer = False
    for k, v in sd.items():
        if k.startswith("head.neck."):
            out["neck." + k[len("head.neck."):]] = v
        elif k.startswith("head.head."):
            out["decode_head." + k[len("head.head."):]] = v
        elif k.startswith("head.linear_c."):
            i, rest = k[len("head.linear_c."):].split(".", 1)
            out[f"decode_head.linear_c{int(i) + 1}.{rest}"] = v
            segformer = True
        elif k.startswith("head.linear_"):
            out["decode_head." + k[len("head."):]] = v
    if segformer and add_conv_seg:
        n = sd["head.linear_pred.weight"].shape[0]
        out["decode_head.conv_seg.weight"] = torch.randn(n, 128, 1, 1)  # BaseDecodeHead's unused layer
        out["decode_head.conv_seg.bias"] = torch.randn(n)
    return out


def to_timm(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Own PVT v2 classifier keys -> timm pvt_v2 keys."""
    out = {}
    for k, v in sd.items():
        if k.startswith("stages.0.patch_embed."):
            out["patch_embed." + k[len("stages.0.patch_embed."):]] = v
        elif re.match(r"stages\.\d\.patch_embed\.", k):
            out[k.replace(".patch_embed.", ".downsample.")] = v
        else:
            out[k] = v
    return out


def _split_kv(prefix: str, inner: str, v: Tensor, k_name: str, v_name: str, out: Dict[str, Tensor]) -> None:
    kw, vw = v.chunk(2, dim=0)
    out[f"{prefix}{k_name}.{inner}"] = kw.clone()
    out[f"{prefix}{v_name}.{inner}"] = vw.clone()


_HF_PVT_INNER = {"norm1": "layer_norm_1", "attn.q": "attention.self.query",
                 "attn.sr": "attention.self.sequence_reduction",
                 "attn.norm": "attention.self.layer_norm", "attn.proj": "attention.output.dense",
                 "norm2": "layer_norm_2", "mlp.fc1": "mlp.dense1", "mlp.fc2": "mlp.dense2"}
_HF_PVT2_INNER = {"norm1": "layer_norm_1", "attn.q": "attention.query", "attn.sr": "attention.spatial_reduction",
                  "attn.norm": "attention.layer_norm", "attn.proj": "attention.proj", "norm2": "layer_norm_2",
                  "mlp.fc1": "mlp.dense1", "mlp.dwconv": "mlp.dwconv.dwconv", "mlp.fc2": "mlp.dense2"}
_HF_SEG4_INNER = {"norm1": "layer_norm_1", "attn.q": "attention.self.query", "attn.sr": "attention.self.sr",
                  "attn.norm": "attention.self.layer_norm", "attn.proj": "attention.output.dense",
                  "norm2": "layer_norm_2", "mlp.fc1": "mlp.dense1", "mlp.dwconv": "mlp.dwconv.dwconv",
                  "mlp.fc2": "mlp.dense2"}
_HF_SEG5_INNER = {"norm1": "layernorm_before", "attn.q": "attention.q_proj", "attn.proj": "attention.o_proj",
                  "attn.sr": "attention.sequence_reduction.sequence_reduction",
                  "attn.norm": "attention.sequence_reduction.layer_norm", "norm2": "layernorm_after",
                  "mlp.fc1": "mlp.fc1", "mlp.dwconv": "mlp.dwconv.dwconv", "mlp.fc2": "mlp.fc2"}


def _hf_blocks(bb: Dict[str, Tensor], block_prefix, inner_map, kv_names, out: Dict[str, Tensor]) -> None:
    for k, v in bb.items():
        m = re.match(r"stages\.(\d)\.blocks\.(\d+)\.(.+)\.(weight|bias)$", k)
        if not m:
            continue
        prefix = block_prefix(int(m.group(1)), int(m.group(2)))
        inner, wb = m.group(3), m.group(4)
        if inner == "attn.kv":
            _split_kv(prefix, wb, v, kv_names[0], kv_names[1], out)
        else:
            out[f"{prefix}{inner_map[inner]}.{wb}"] = v


def to_hf_pvt(sd: Dict[str, Tensor], prefix: str = "pvt.") -> Dict[str, Tensor]:
    """Own PVT v1 classifier keys -> transformers PvtForImageClassification keys."""
    bb = backbone_part(sd)
    out: Dict[str, Tensor] = {}
    for i in range(4):
        pe = f"{prefix}encoder.patch_embeddings.{i}."
        out[pe + "position_embeddings"] = bb[f"stages.{i}.pos_embed"]
        for a, b in (("proj", "projection"), ("norm", "layer_norm")):
            for wb in ("weight", "bias"):
                out[f"{pe}{b}.{wb}"] = bb[f"stages.{i}.patch_embed.{a}.{wb}"]
    out[f"{prefix}encoder.patch_embeddings.3.cls_token"] = bb["cls_token"]
    _hf_blocks(bb, lambda i, j: f"{prefix}encoder.block.{i}.{j}.", _HF_PVT_INNER,
               ("attention.self.key", "attention.self.value"), out)
    for wb in ("weight", "bias"):
        out[f"{prefix}encoder.layer_norm.{wb}"] = bb[f"norm.{wb}"]
        if f"head.{wb}" in bb:
            out[f"classifier.{wb}"] = bb[f"head.{wb}"]
    return out


def to_hf_pvt_v2(sd: Dict[str, Tensor], prefix: str = "pvt_v2.") -> Dict[str, Tensor]:
    """Own PVT v2 classifier keys -> transformers PvtV2ForImageClassification keys."""
    bb = backbone_part(sd)
    out: Dict[str, Tensor] = {}
    for i in range(4):
        for a, b in (("proj", "proj"), ("norm", "layer_norm")):
            for wb in ("weight", "bias"):
                out[f"{prefix}encoder.layers.{i}.patch_embedding.{b}.{wb}"] = bb[f"stages.{i}.patch_embed.{a}.{wb}"]
                if a == "norm":
                    out[f"{prefix}encoder.layers.{i}.layer_norm.{wb}"] = bb[f"stages.{i}.norm.{wb}"]
    _hf_blocks(bb, lambda i, j: f"{prefix}encoder.layers.{i}.blocks.{j}.", _HF_PVT2_INNER,
               ("attention.key", "attention.value"), out)
    for wb in ("weight", "bias"):
        if f"head.{wb}" in bb:
            out[f"classifier.{wb}"] = bb[f"head.{wb}"]
    return out


def _segformer_decode_head(sd: Dict[str, Tensor], linear_c: str) -> Dict[str, Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith("head.linear_c."):
            out[f"decode_head.{linear_c}." + k[len("head.linear_c."):]] = v
        elif k == "head.linear_fuse.conv.weight":
            out["decode_head.linear_fuse.weight"] = v
        elif k.startswith("head.linear_fuse.bn."):
            out["decode_head.batch_norm." + k[len("head.linear_fuse.bn."):]] = v
        elif k.startswith("head.linear_pred."):
            out["decode_head.classifier." + k[len("head.linear_pred."):]] = v
    return out


def to_hf_segformer4(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Own MiT SegFormer segmentor keys -> transformers 4.x SegformerForSemanticSegmentation keys
    (the names of the checkpoints on the Hugging Face Hub)."""
    bb = backbone_part(sd)
    out: Dict[str, Tensor] = {}
    for i in range(4):
        for a, b in (("proj", "proj"), ("norm", "layer_norm")):
            for wb in ("weight", "bias"):
                out[f"segformer.encoder.patch_embeddings.{i}.{b}.{wb}"] = bb[f"stages.{i}.patch_embed.{a}.{wb}"]
        for wb in ("weight", "bias"):
            out[f"segformer.encoder.layer_norm.{i}.{wb}"] = bb[f"stages.{i}.norm.{wb}"]
    _hf_blocks(bb, lambda i, j: f"segformer.encoder.block.{i}.{j}.", _HF_SEG4_INNER,
               ("attention.self.key", "attention.self.value"), out)
    out.update(_segformer_decode_head(sd, "linear_c"))
    return out


def to_hf_segformer5(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Own MiT SegFormer segmentor keys -> transformers 5.x SegformerForSemanticSegmentation.state_dict()."""
    bb = backbone_part(sd)
    out: Dict[str, Tensor] = {}
    for i in range(4):
        for a, b in (("proj", "proj"), ("norm", "layer_norm")):
            for wb in ("weight", "bias"):
                out[f"segformer.stages.{i}.patch_embeddings.{b}.{wb}"] = bb[f"stages.{i}.patch_embed.{a}.{wb}"]
        for wb in ("weight", "bias"):
            out[f"segformer.stages.{i}.layer_norm.{wb}"] = bb[f"stages.{i}.norm.{wb}"]
    _hf_blocks(bb, lambda i, j: f"segformer.stages.{i}.blocks.{j}.", _HF_SEG5_INNER,
               ("attention.k_proj", "attention.v_proj"), out)
    out.update(_segformer_decode_head(sd, "linear_projections"))
    return out
