"""MobileViT checkpoints -> pvtseg's MobileViT keys (models/mobilevit.py).

    hf_mobilevit   transformers MobileViTModel / MobileViTForImageClassification /
                   MobileViTForSemanticSegmentation (its DeepLabV3 head is dropped: pvtseg's heads differ)
"""

from __future__ import annotations

import re
from typing import Mapping

from .family import FamilyConverted, KeyCollector, StateDict, put_attention_block, register_family, strip_prefixes
from .reader import unwrap_state_dict
from .registry import any_key

_MV2 = [(r"expand_1x1\.", "expand."), (r"conv_3x3\.", "dw."), (r"reduce_1x1\.", "reduce.")]
_CONV = [(r"\.convolution\.", ".conv."), (r"\.normalization\.", ".bn.")]
_LAYER = [
    (r"attention\.output\.dense\.", "attn.proj."), (r"intermediate\.dense\.", "mlp.fc1."),
    (r"output\.dense\.", "mlp.fc2."), (r"layernorm_before\.", "norm1."), (r"layernorm_after\.", "norm2."),
]
_QKV = r"^attention\.attention\.(query|key|value)\.(weight|bias)$"
_UNKNOWN = "unknown MobileViT key"


def detect(sd: StateDict) -> bool:
    return any_key(sd, r"^conv_stem\.convolution\.weight$") and any_key(sd, r"^encoder\.layer\.0\.")


def _conv_names(s: str) -> str:
    """`expand_1x1.convolution.weight` -> `expand.conv.weight` (and the BN / MV2 names)."""
    s = "." + s
    for pat, rep in _CONV + _MV2:
        s = re.sub(pat, rep, s)
    return s[1:]


_TOP = {"conv_stem.": "stem.", "conv_1x1_exp.": "final_conv."}


def convert_own(sd: StateDict) -> FamilyConverted:
    sd, names = strip_prefixes(sd, ("mobilevit.",))
    out = KeyCollector(names)
    for k, v in sd.items():
        top = next((p for p in _TOP if k.startswith(p)), None)
        if top is not None:
            out.put(_TOP[top] + _conv_names(k[len(top):]), k, v)
        elif k.startswith("classifier."):
            out.put("head.1." + k[len("classifier."):], k, v)
        elif not re.match(r"^encoder\.layer\.\d\.", k):
            out.drop(k, "MobileViT's DeepLabV3 segmentation head (pvtseg's heads are FPN / SegFormer)")
        else:
            _encoder_key(out, k, v)
    return out.result("HF MobileViT")


def _encoder_key(out: KeyCollector, k: str, v) -> None:
    m = re.match(r"^encoder\.layer\.(\d)\.(.*)$", k)
    i, rest = int(m.group(1)), m.group(2)  # type: ignore[union-attr]  # matched by the caller
    if i < 2:  # MobileNetV2 layers: encoder.layer.i.layer.j.<mv2>
        mj = re.match(r"^layer\.(\d+)\.(.*)$", rest)
        if mj:
            out.put(f"stages.{i}.{mj.group(1)}." + _conv_names(mj.group(2)), k, v)
        else:
            out.drop(k, _UNKNOWN)
        return
    mt = re.match(r"^transformer\.layer\.(\d+)\.(.*)$", rest)
    if mt:
        put_attention_block(out, f"stages.{i}.transformer.{mt.group(1)}.", mt.group(2), k, v, _QKV, _LAYER, _UNKNOWN)
        return
    rest = re.sub(r"^downsampling_layer\.", "down.", rest)
    rest = re.sub(r"^conv_projection\.", "conv_proj.", rest)
    rest = re.sub(r"^layernorm\.", "norm.", rest)
    out.put(f"stages.{i}." + _conv_names(rest), k, v)


def convert_hf_mobilevit(sd: Mapping) -> StateDict:
    """HF MobileViT state dict (any wrapper) -> pvtseg MobileViT classifier keys."""
    return convert_own(unwrap_state_dict(sd)).tensors


register_family("hf_mobilevit", "Hugging Face transformers MobileViTModel / MobileViTForImageClassification / "
                                 "MobileViTForSemanticSegmentation", detect, convert_own, 100)
