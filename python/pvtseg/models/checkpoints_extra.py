"""Checkpoint formats of the Swin / MobileViT / DAT backbones -> pvtseg's own keys.

    fmt = detect_extra_format(sd)                # "hf_swin" | "official_swin" | "hf_mobilevit" | "official_dat" | None
    own, dropped, origin = convert_extra(sd, fmt)
    # own: pvtseg keys -> tensors; dropped: (source key, why) left out on purpose;
    # origin: pvtseg key -> the source key(s) it came from

    # plugged into checkpoints.load_checkpoint:
    for fmt, text in FORMAT_DESCRIPTIONS.items():
        register_format(fmt, text, lambda sd, f=fmt: detect_extra_format(sd) == f,
                        functools.partial(to_canonical, fmt=fmt))

Formats (wrappers {"model": ...} / {"state_dict": ...} / {"module": ...} and the prefixes
`backbone.`, `module.`, `swin.`, `mobilevit.` are taken off first):
- "hf_swin": transformers `SwinModel`, `SwinForImageClassification`, `SwinBackbone`, in the
  Hub layout (`attention.self.query`, `attention.output.dense`, `intermediate.dense`,
  `output.dense`) and the transformers >= 5 layout (`attention.q_proj`, `o_proj`,
  `relative_position_bias.relative_position_bias_table`, `mlp.fc1`).
- "official_swin": microsoft/Swin-Transformer classification releases (`layers.0.blocks.0.
  attn.qkv`, `norm`, `head`) and its segmentation (mmseg) releases (`backbone.norm0`..`norm3`).
- "hf_mobilevit": transformers `MobileViTModel`, `MobileViTForImageClassification`,
  `MobileViTForSemanticSegmentation` (its DeepLabV3 head is dropped: pvtseg's heads differ).
- "official_dat": LeapLabTHU/DAT (CVPR 2022 release) classification checkpoints, and the
  same keys under `backbone.` with per-level `norms.{i}.norm` (mmseg segmentation code).

Outputs are in the classifier layout of swin.py / mobilevit.py / dat.py (no `backbone.`
prefix). For a backbone or segmentor, leave out the keys under CLASSIFIER_ONLY_PREFIXES
(the ImageNet head, MobileViT's 1x1 expansion conv) and, for a segmentor, prefix the rest
with "backbone."; the segmentation head's keys are then missing and need training.
Classification checkpoints have no LayerNorm for pyramid levels 0..2 (`norms.0`..`norms.2`
of Swin and DAT): like mmseg, they start as identity-affine LayerNorms, and the converter
puts those ones/zeros in the output so a strict load passes.
Buffers the models recompute (`relative_position_index`, `attn_mask`) and heads pvtseg
does not have are returned in `dropped`. Names in `dropped` and `origin` are the keys as
the checkpoint has them (wrapper dicts taken off).
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

StateDict = Dict[str, Tensor]
FORMAT_DESCRIPTIONS: Dict[str, str] = {
    "hf_swin": "Hugging Face transformers SwinModel / SwinForImageClassification / SwinBackbone "
               "(Hub or transformers-5 key names)",
    "official_swin": "microsoft/Swin-Transformer release ({'model': ...}; layers.0.blocks.0.attn.qkv, norm, head) "
                     "or its mmseg segmentation release (backbone.norm0..3)",
    "hf_mobilevit": "Hugging Face transformers MobileViTModel / MobileViTForImageClassification / "
                    "MobileViTForSemanticSegmentation",
    "official_dat": "LeapLabTHU/DAT CVPR 2022 release (patch_proj, stages.i.attns/mlps/layer_norms, down_projs, "
                    "cls_norm, cls_head)",
}
FORMATS = tuple(FORMAT_DESCRIPTIONS)
# Converted keys that only a classifier has (drop them when loading into a backbone/segmentor).
CLASSIFIER_ONLY_PREFIXES = ("head.", "final_conv.", "cls_head.")


# ----------------------------------------------------------------------------- helpers
class ExtraConverted(NamedTuple):
    tensors: StateDict               # pvtseg key -> tensor (classifier layout, no "backbone." prefix)
    dropped: List[Tuple[str, str]]   # (source key, why) for keys left out on purpose
    origin: Dict[str, str]           # pvtseg key -> source key ("a + b + c" when fused, "(new ...)" when made up)


class _Out:
    """Collects converted tensors with the source key each came from."""

    def __init__(self, names: Dict[str, str]):
        self.names = names  # stripped key -> key as in the checkpoint
        self.tensors: StateDict = {}
        self.origin: Dict[str, str] = {}
        self.dropped: List[Tuple[str, str]] = []
        self._qkv: Dict[str, List[Optional[Tuple[str, Tensor]]]] = {}

    def put(self, key: str, src: str, value: Tensor) -> None:
        self.tensors[key] = value
        self.origin[key] = self.names.get(src, src)

    def drop(self, src: str, why: str) -> None:
        self.dropped.append((self.names.get(src, src), why))

    def qkv_part(self, key: str, index: int, src: str, value: Tensor) -> None:
        """Part `index` (0 q, 1 k, 2 v) of the fused Linear parameter `key` (`...qkv.weight`)."""
        self._qkv.setdefault(key, [None, None, None])[index] = (src, value)

    def result(self, what: str) -> ExtraConverted:
        for key, parts in self._qkv.items():
            if any(p is None for p in parts):
                raise ValueError(f"{what} checkpoint lacks one of query/key/value for {key}")
            srcs = [p for p in parts if p is not None]
            self.put(key, " + ".join(self.names.get(sk, sk) for sk, _ in srcs), torch.cat([t for _, t in srcs], 0))
        self._qkv = {}
        return ExtraConverted(self.tensors, self.dropped, self.origin)

    def identity_norms(self, levels: List[int], key: Callable[[int], str], width: Callable[[int], int],
                       like: Tensor) -> None:
        """Fresh LayerNorms (weight 1, bias 0) for pyramid levels a classification checkpoint lacks."""
        for i in levels:
            if f"{key(i)}.weight" not in self.tensors:
                c = width(i)
                self.put(f"{key(i)}.weight", "(new: identity LayerNorm)", torch.ones(c, dtype=like.dtype))
                self.put(f"{key(i)}.bias", "(new: identity LayerNorm)", torch.zeros(c, dtype=like.dtype))


def _unwrap(sd: Mapping) -> StateDict:
    for key in ("state_dict", "model", "module"):
        if key in sd and isinstance(sd[key], Mapping):
            return _unwrap(sd[key])
    return {k: v for k, v in sd.items() if isinstance(v, Tensor)}


def _strip(sd: StateDict, prefixes: Tuple[str, ...]) -> Tuple[StateDict, Dict[str, str]]:
    """Remove a leading `module.` and then one of `prefixes` from keys that carry it.
    Returns the renamed dict and new name -> original name."""
    out: StateDict = {}
    names: Dict[str, str] = {}
    for k, v in sd.items():
        new = k[len("module."):] if k.startswith("module.") else k
        for p in prefixes:
            if new.startswith(p):
                new = new[len(p):]
                break
        out[new] = v
        names[new] = k
    return out, names


def _any(sd: Mapping, pattern: str) -> bool:
    rx = re.compile(pattern)
    return any(rx.search(k) for k in sd)


_BUFFER = "buffer the model recomputes from its window size"
_MMSEG_HEADS = ("decode_head.", "auxiliary_head.", "neck.")
_MMSEG_HEAD = "mmseg decode/auxiliary head (pvtseg's heads differ)"


def _drop_buffer_or_mmseg_head(out: _Out, key: str) -> bool:
    """Official releases (plain or mmseg-wrapped): drop recomputed window buffers and mmseg heads."""
    if key.endswith(("relative_position_index", "attn_mask")):
        out.drop(key, _BUFFER)
    elif key.startswith(_MMSEG_HEADS):
        out.drop(key, _MMSEG_HEAD)
    else:
        return False
    return True


# ----------------------------------------------------------------------------- detection
def detect_extra_format(sd: Mapping) -> Optional[str]:
    """One of FORMATS, or None (not one of these formats, e.g. already pvtseg's own keys)."""
    sd, _ = _strip(_unwrap(sd), ("backbone.", "swin.", "mobilevit."))
    if _any(sd, r"^embeddings\.patch_embeddings\.projection\.weight$") and _any(sd, r"^encoder\.layers\.0\.blocks\."):
        return "hf_swin"
    if _any(sd, r"^conv_stem\.convolution\.weight$") and _any(sd, r"^encoder\.layer\.0\."):
        return "hf_mobilevit"
    if _any(sd, r"^layers\.0\.blocks\.0\.attn\.qkv\.weight$") and _any(sd, r"^patch_embed\.proj\.weight$") \
            and not _any(sd, r"^norms\.\d\.") and not _any(sd, r"\.attn\.pwmsa\."):
        return "official_swin"
    if _any(sd, r"^patch_proj\.0\.weight$") and _any(sd, r"^stages\.0\.(layer_norms|attns|mlps)\."):
        return "official_dat"
    return None


def convert_extra(sd: Mapping, fmt: Optional[str] = None) -> ExtraConverted:
    """Convert `sd` (format `fmt`, detected when None) -> (tensors, dropped, origin)."""
    fmt = fmt or detect_extra_format(sd)
    if fmt not in _CONVERTERS:
        raise ValueError(f"not a Swin / MobileViT / DAT checkpoint format: {fmt!r}; known: {', '.join(FORMATS)}")
    return _CONVERTERS[fmt](_unwrap(sd))


def to_canonical(sd: Mapping, fmt: str) -> Tuple[StateDict, List[Tuple[str, str]]]:
    """For checkpoints.register_format: (tensors keyed "backbone." + own key, dropped (key, why))."""
    res = convert_extra(sd, fmt)
    return {"backbone." + k: v for k, v in res.tensors.items()}, list(res.dropped)


def convert_hf_swin(sd: Mapping) -> StateDict:
    return convert_extra(sd, "hf_swin").tensors


def convert_official_swin(sd: Mapping) -> StateDict:
    return convert_extra(sd, "official_swin").tensors


def convert_hf_mobilevit(sd: Mapping) -> StateDict:
    return convert_extra(sd, "hf_mobilevit").tensors


def convert_official_dat(sd: Mapping) -> StateDict:
    return convert_extra(sd, "official_dat").tensors


# ----------------------------------------------------------------------------- Swin
_HF_SWIN_BLOCK = [  # (HF suffix after `blocks.{j}.`, own suffix); q/k/v handled apart
    (r"layernorm_before\.", "norm1."), (r"layernorm_after\.", "norm2."),
    (r"attention\.(o_proj|output\.dense)\.", "attn.proj."),
    (r"attention\.(relative_position_bias\.|self\.)relative_position_bias_table$", "attn.relative_position_bias_table"),
    (r"(mlp\.fc1|intermediate\.dense)\.", "mlp.fc1."), (r"(mlp\.fc2|output\.dense)\.", "mlp.fc2."),
]
_HF_SWIN_TOP = {"embeddings.patch_embeddings.projection.": "patch_embed.proj.", "embeddings.norm.": "patch_embed.norm.",
                "layernorm.": "norms.3.", "classifier.": "head."}
_QKV = {"q_proj": 0, "query": 0, "k_proj": 1, "key": 1, "v_proj": 2, "value": 2}


def _put_attention_block(out: "_Out", prefix: str, rest: str, src: str, value: Tensor, qkv_pattern: str,
                         table: List[Tuple[str, str]], unknown_reason: str) -> None:
    """One key of an HF transformer block: separate q/k/v Linears go into the fused qkv,
    the rest is renamed by `table` (HF suffix regex -> own suffix) or dropped with a reason."""
    q = re.match(qkv_pattern, rest)
    if q:
        out.qkv_part(f"{prefix}attn.qkv.{q.group(2)}", _QKV[q.group(1)], src, value)
        return
    for pat, rep in table:
        if re.match(pat, rest):
            out.put(prefix + re.sub("^" + pat, rep, rest), src, value)
            return
    out.drop(src, unknown_reason)


def _hf_swin(sd: StateDict) -> ExtraConverted:
    sd, names = _strip(sd, ("swin.", "backbone."))
    out = _Out(names)
    for k, v in sd.items():
        m = re.match(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.*)$", k)
        if m:
            prefix, rest = f"layers.{m.group(1)}.blocks.{m.group(2)}.", m.group(3)
            _put_attention_block(out, prefix, rest, k, v,
                                 r"^attention\.(?:self\.)?(q_proj|k_proj|v_proj|query|key|value)\.(weight|bias)$",
                                 _HF_SWIN_BLOCK, _BUFFER)
            continue
        m = re.match(r"^encoder\.layers\.(\d+)\.downsample\.(.*)$", k)
        if m:
            out.put(f"layers.{m.group(1)}.downsample.{m.group(2)}", k, v)
            continue
        m = re.match(r"^hidden_states_norms\.stage(\d)\.(weight|bias)$", k)
        if m:  # SwinBackbone's per-level norms (its stage 4 norm wins over SwinModel's layernorm)
            out.put(f"norms.{int(m.group(1)) - 1}.{m.group(2)}", k, v)
            continue
        for src, dst in _HF_SWIN_TOP.items():
            if k.startswith(src):
                new = dst + k[len(src):]
                if dst == "norms.3." and new in out.tensors:
                    out.drop(k, "SwinModel's final layernorm; SwinBackbone's stage-4 norm is used")
                else:
                    out.put(new, k, v)
                break
        else:
            out.drop(k, "not part of pvtseg's Swin (mask token / absolute position embedding / pooler)")
    _swin_identity_norms(out)
    return out.result("HF Swin")


def _swin_identity_norms(out: _Out) -> None:
    embed = out.tensors["patch_embed.proj.weight"]
    out.identity_norms([0, 1, 2, 3], lambda i: f"norms.{i}", lambda i: embed.shape[0] * 2 ** i, embed)


def _official_swin(sd: StateDict) -> ExtraConverted:
    sd, names = _strip(sd, ("backbone.",))
    out = _Out(names)
    for k, v in sd.items():
        if _drop_buffer_or_mmseg_head(out, k):
            continue
        m = re.match(r"^norm(\d)?\.(weight|bias)$", k)
        out.put(f"norms.{m.group(1) or 3}.{m.group(2)}" if m else k, k, v)
    _swin_identity_norms(out)
    return out.result("official Swin")


# ----------------------------------------------------------------------------- MobileViT
_HF_MV2 = [(r"expand_1x1\.", "expand."), (r"conv_3x3\.", "dw."), (r"reduce_1x1\.", "reduce.")]
_HF_CONV = [(r"\.convolution\.", ".conv."), (r"\.normalization\.", ".bn.")]
_HF_MVIT_LAYER = [
    (r"attention\.output\.dense\.", "attn.proj."), (r"intermediate\.dense\.", "mlp.fc1."),
    (r"output\.dense\.", "mlp.fc2."), (r"layernorm_before\.", "norm1."), (r"layernorm_after\.", "norm2."),
]


def _conv_names(s: str) -> str:
    """`expand_1x1.convolution.weight` -> `expand.conv.weight` (and the BN / MV2 names)."""
    s = "." + s
    for pat, rep in _HF_CONV + _HF_MV2:
        s = re.sub(pat, rep, s)
    return s[1:]


def _hf_mobilevit(sd: StateDict) -> ExtraConverted:
    sd, names = _strip(sd, ("mobilevit.",))
    out = _Out(names)
    for k, v in sd.items():
        if k.startswith("conv_stem."):
            out.put("stem." + _conv_names(k[len("conv_stem."):]), k, v)
            continue
        if k.startswith("conv_1x1_exp."):
            out.put("final_conv." + _conv_names(k[len("conv_1x1_exp."):]), k, v)
            continue
        if k.startswith("classifier."):
            out.put("head.1." + k[len("classifier."):], k, v)
            continue
        m = re.match(r"^encoder\.layer\.(\d)\.(.*)$", k)
        if not m:
            out.drop(k, "MobileViT's DeepLabV3 segmentation head (pvtseg's heads are FPN / SegFormer)")
            continue
        i, rest = int(m.group(1)), m.group(2)
        if i < 2:  # MobileNetV2 layers: encoder.layer.i.layer.j.<mv2>
            mj = re.match(r"^layer\.(\d+)\.(.*)$", rest)
            if mj:
                out.put(f"stages.{i}.{mj.group(1)}." + _conv_names(mj.group(2)), k, v)
            else:
                out.drop(k, "unknown MobileViT key")
            continue
        mt = re.match(r"^transformer\.layer\.(\d+)\.(.*)$", rest)
        if mt:
            prefix, r2 = f"stages.{i}.transformer.{mt.group(1)}.", mt.group(2)
            _put_attention_block(out, prefix, r2, k, v, r"^attention\.attention\.(query|key|value)\.(weight|bias)$",
                                 _HF_MVIT_LAYER, "unknown MobileViT key")
            continue
        rest = re.sub(r"^downsampling_layer\.", "down.", rest)
        rest = re.sub(r"^conv_projection\.", "conv_proj.", rest)
        rest = re.sub(r"^layernorm\.", "norm.", rest)
        out.put(f"stages.{i}." + _conv_names(rest), k, v)
    return out.result("HF MobileViT")


# ----------------------------------------------------------------------------- DAT
def _official_dat(sd: StateDict) -> ExtraConverted:
    sd, names = _strip(sd, ("backbone.",))
    out = _Out(names)
    for k, v in sd.items():
        if _drop_buffer_or_mmseg_head(out, k):
            continue
        if re.match(r"^stages\.\d\.proj\.", k):
            out.drop(k, "1x1 stage projection, an Identity in every released DAT config")
            continue
        m = re.match(r"^stages\.(\d)\.layer_norms\.(\d+)\.(.*)$", k)
        if m:
            j, which = divmod(int(m.group(2)), 2)
            out.put(f"stages.{m.group(1)}.blocks.{j}.norm{which + 1}.{m.group(3)}", k, v)
            continue
        m = re.match(r"^stages\.(\d)\.(attns|mlps)\.(\d+)\.(.*)$", k)
        if m:
            rest = m.group(4)
            if m.group(2) == "attns" and f"stages.{m.group(1)}.attns.{m.group(3)}.proj_qkv.weight" in sd:
                rest = re.sub(r"^proj_qkv\.", "qkv.", re.sub(r"^proj_out\.", "proj.", rest))  # L/S: Swin's names
            part = "attn" if m.group(2) == "attns" else "mlp"
            out.put(f"stages.{m.group(1)}.blocks.{m.group(3)}.{part}.{rest}", k, v)
            continue
        m = re.match(r"^down_projs\.(\d)\.(.*)$", k)
        if m:
            out.put(f"stages.{m.group(1)}.downsample.{m.group(2)}", k, v)
        elif k.startswith("cls_norm."):
            out.put("norms.3." + k[len("cls_norm."):], k, v)
        else:
            out.put(k, k, v)
    stem = out.tensors["patch_proj.0.weight"]
    out.identity_norms([0, 1, 2, 3], lambda i: f"norms.{i}.norm", lambda i: stem.shape[0] * 2 ** i, stem)
    return out.result("official DAT")


_CONVERTERS: Dict[str, Callable[[StateDict], ExtraConverted]] = {
    "hf_swin": _hf_swin, "official_swin": _official_swin, "hf_mobilevit": _hf_mobilevit,
    "official_dat": _official_dat,
}
