"""Shared machinery of the Swin / MobileViT / DAT formats (swin.py, mobilevit.py, dat.py).

These converters write each backbone's own classifier layout (swin.py / mobilevit.py /
dat.py keys, no `backbone.` prefix); register_family() plugs them into the registry, which
prefixes the keys with `backbone.` (the canonical namespace). The same converters are
callable on their own:

    fmt = detect_family_format(sd)          # "hf_swin" | "official_swin" | "hf_mobilevit" | "official_dat" | None
    own, dropped, origin = convert_family(sd, fmt)
    # own: the backbone's keys -> tensors; dropped: (checkpoint key, why) left out on purpose;
    # origin: own key -> the checkpoint key(s) it came from ("a + b + c" when fused)

Wrappers ({"model": ...}, {"state_dict": ...}, ...) are taken off first (reader.unwrap_state_dict),
then `module.` and one family prefix (`backbone.`, `swin.`, `mobilevit.`) per key.
Classification checkpoints have no LayerNorm for pyramid levels 0..2: like mmseg, they start
as identity-affine LayerNorms, and the converters put those ones/zeros in the output so a
strict load passes.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ...errors import CheckpointError
from .reader import unwrap_state_dict
from .registry import Converted, Dropped, Format, StateDict, add_format, find_format, get_format

FAMILY_PREFIXES = ("backbone.", "swin.", "mobilevit.")
# Converted keys that only a classifier has (drop them when loading into a backbone/segmentor).
CLASSIFIER_ONLY_PREFIXES = ("head.", "final_conv.", "cls_head.")
BUFFER = "buffer the model recomputes from its window size"
_MMSEG_HEADS = ("decode_head.", "auxiliary_head.", "neck.")
_QKV = {"q_proj": 0, "query": 0, "k_proj": 1, "key": 1, "v_proj": 2, "value": 2}


class FamilyConverted(NamedTuple):
    tensors: StateDict               # own key -> tensor (classifier layout, no "backbone." prefix)
    dropped: Dropped                 # (checkpoint key, why) for keys left out on purpose
    origin: Dict[str, str]           # own key -> checkpoint key ("a + b + c" when fused, "(new ...)" when made up)


OwnConverter = Callable[[StateDict], FamilyConverted]
_FAMILY: Dict[str, OwnConverter] = {}


# ---------------------------------------------------------------------------------------------
# Registry glue
# ---------------------------------------------------------------------------------------------
def register_family(name: str, description: str, detect: Callable[[StateDict], bool], convert_own: OwnConverter,
                    priority: int) -> None:
    """Register a backbone-family format: detect/convert_own see keys with the prefixes taken off."""
    _FAMILY[name] = convert_own

    def convert(sd: Mapping[str, Tensor]) -> Converted:
        res = convert_own(dict(sd))
        tensors = {"backbone." + k: v for k, v in res.tensors.items()}
        origin = {"backbone." + k: v for k, v in res.origin.items()}
        return Converted(name, tensors, origin, [], list(res.dropped), [])

    add_format(Format(name, description, lambda sd: detect(strip_prefixes(dict(sd), FAMILY_PREFIXES)[0]), convert,
                      priority=priority))


def detect_family_format(sd: Mapping) -> Optional[str]:
    """One of the Swin / MobileViT / DAT formats, or None (e.g. already a model's own keys)."""
    try:
        tensors = unwrap_state_dict(sd)
    except CheckpointError:
        return None
    return find_format(tensors, list(_FAMILY))


def convert_family(sd: Mapping, fmt: Optional[str] = None) -> FamilyConverted:
    """Convert `sd` (format `fmt`, detected when None) -> (own tensors, dropped, origin)."""
    fmt = fmt or detect_family_format(sd)
    if fmt not in _FAMILY:
        raise CheckpointError(f"not a Swin / MobileViT / DAT checkpoint format: {fmt!r}; known: {', '.join(_FAMILY)}")
    return _FAMILY[fmt](unwrap_state_dict(sd))


def to_canonical(sd: Mapping, fmt: str) -> Tuple[StateDict, Dropped]:
    """(tensors keyed "backbone." + own key, dropped (key, why)): what the registry's converter gives."""
    conv = get_format(fmt).convert(unwrap_state_dict(sd))
    return conv.tensors, conv.dropped


# ---------------------------------------------------------------------------------------------
# Helpers of the converters
# ---------------------------------------------------------------------------------------------
class KeyCollector:
    """Collects converted tensors with the checkpoint key each came from."""

    def __init__(self, names: Dict[str, str]):
        self.names = names  # stripped key -> key as in the checkpoint
        self.tensors: StateDict = {}
        self.origin: Dict[str, str] = {}
        self.dropped: Dropped = []
        self._qkv: Dict[str, List[Optional[Tuple[str, Tensor]]]] = {}

    def put(self, key: str, src: str, value: Tensor) -> None:
        self.tensors[key] = value
        self.origin[key] = self.names.get(src, src)

    def drop(self, src: str, why: str) -> None:
        self.dropped.append((self.names.get(src, src), why))

    def qkv_part(self, key: str, index: int, src: str, value: Tensor) -> None:
        """Part `index` (0 q, 1 k, 2 v) of the fused Linear parameter `key` (`...qkv.weight`)."""
        self._qkv.setdefault(key, [None, None, None])[index] = (src, value)

    def require(self, key: str, what: str) -> Tensor:
        """A converted tensor the format cannot do without (CheckpointError naming it otherwise)."""
        if key not in self.tensors:
            raise CheckpointError(f"{what} checkpoint lacks {key!r} (as pvtseg names it); the file is incomplete "
                                  "or from another model: pass the full checkpoint")
        return self.tensors[key]

    def identity_norms(self, levels: List[int], key: Callable[[int], str], width: Callable[[int], int],
                       like: Tensor) -> None:
        """Fresh LayerNorms (weight 1, bias 0) for pyramid levels a classification checkpoint lacks."""
        for i in levels:
            if f"{key(i)}.weight" not in self.tensors:
                c = width(i)
                self.put(f"{key(i)}.weight", "(new: identity LayerNorm)", torch.ones(c, dtype=like.dtype))
                self.put(f"{key(i)}.bias", "(new: identity LayerNorm)", torch.zeros(c, dtype=like.dtype))

    def result(self, what: str) -> FamilyConverted:
        for key, parts in self._qkv.items():
            srcs = [p for p in parts if p is not None]
            if len(srcs) != 3:
                raise CheckpointError(f"{what} checkpoint lacks one of query/key/value for {key}; the file is "
                                      "incomplete: download it again")
            self.put(key, " + ".join(self.names.get(sk, sk) for sk, _ in srcs), torch.cat([t for _, t in srcs], 0))
        self._qkv = {}
        return FamilyConverted(self.tensors, self.dropped, self.origin)


def strip_prefixes(sd: StateDict, prefixes: Tuple[str, ...]) -> Tuple[StateDict, Dict[str, str]]:
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


def put_attention_block(out: KeyCollector, prefix: str, rest: str, src: str, value: Tensor, qkv_pattern: str,
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


def drop_buffer_or_mmseg_head(out: KeyCollector, key: str) -> bool:
    """Official releases (plain or mmseg-wrapped): drop recomputed window buffers and mmseg heads."""
    if key.endswith(("relative_position_index", "attn_mask")):
        out.drop(key, BUFFER)
    elif key.startswith(_MMSEG_HEADS):
        out.drop(key, "mmseg decode/auxiliary head (pvtseg's heads differ)")
    else:
        return False
    return True
