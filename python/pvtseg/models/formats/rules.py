"""Regex rename tables for the PVT-family layouts (pvtseg, official PVT, mmseg, Hugging Face, timm).

A format is a list of rules `(pattern, replacement)`: the first pattern that matches a whole
checkpoint key gives its canonical name (a `re` template such as r"backbone.norm.\\g<p>", or a
function of the match that may return None to leave the key unmatched). Keys no rule matches
are reported as unmatched; keys of a format's drop list are dropped with their reason.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...errors import CheckpointError
from .registry import Converted, Dropped, StateDict

Rule = Tuple["re.Pattern[str]", Callable[["re.Match[str]"], Optional[str]]]

WB = r"(?P<p>weight|bias)"
BN = r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"


def rules(*pairs: Tuple[str, Any]) -> List[Rule]:
    out: List[Rule] = []
    for pattern, repl in pairs:
        fn = repl if callable(repl) else (lambda m, r=repl: m.expand(r))
        out.append((re.compile(pattern + r"$"), fn))
    return out


def inner(mapping: Sequence[Tuple[str, str]]) -> Callable[[str], Optional[str]]:
    """Rename the part of a key inside one transformer block ('attention.self.query.weight' ...)."""
    compiled = [(re.compile(r"^" + re.escape(a) + r"\.(weight|bias)$"), b) for a, b in mapping]

    def rename(rest: str) -> Optional[str]:
        for rx, b in compiled:
            m = rx.match(rest)
            if m:
                return f"{b}.{m.group(1)}"
        return None

    return rename


def block(rename: Callable[[str], Optional[str]], one_based: bool = False) -> Callable:
    """Rule for `<stage s>.<block j>.<rest>` keys: rest renamed by `rename` (an inner() table)."""
    def fn(m: "re.Match[str]") -> Optional[str]:
        stage_i = int(m.group("s")) - (1 if one_based else 0)
        rest = rename(m.group("rest"))
        return None if rest is None else f"backbone.stages.{stage_i}.blocks.{m.group('j')}.{rest}"
    return fn


def stage(template: str, one_based: bool = False) -> Callable:
    """Rule whose replacement `template` names the stage `{s}` (shifted to 0-based when one_based)."""
    def fn(m: "re.Match[str]") -> str:
        stage_i = int(m.group("s")) - (1 if one_based else 0)
        return template.format(s=stage_i, **{k: v for k, v in m.groupdict().items() if k != "s"})
    return fn


# pvtseg's own block keys (timm's pvt_v2 blocks use the same names).
OWN_BLOCK = inner([(n, n) for n in ("norm1", "attn.q", "attn.kv", "attn.sr", "attn.norm", "attn.proj", "norm2",
                                    "mlp.fc1", "mlp.dwconv", "mlp.fc2")])


def convert_by_rules(sd: Mapping[str, Tensor], fmt: str, table: Sequence[Rule],
                     drops: Sequence[Tuple[str, str]] = ()) -> Converted:
    """Rename every key of `sd` by the first matching rule of `table`; fuse HF's k/v Linears."""
    drop_rx = [(re.compile(p + "$"), why) for p, why in drops]
    out: StateDict = OrderedDict()
    origin: Dict[str, str] = {}
    unmatched: List[str] = []
    dropped: Dropped = []
    for key, value in sd.items():
        reason = next((why for rx, why in drop_rx if rx.match(key)), None)
        if reason is not None:
            dropped.append((key, reason))
            continue
        new = _rename(key, table)
        if new is None:
            unmatched.append(key)
            continue
        if new in out:
            raise CheckpointError(f"checkpoint keys {origin[new]!r} and {key!r} both map to {new!r}; "
                                  "the file mixes two models: save one model's state_dict() per file")
        out[new] = value
        origin[new] = key
    fuse_kv(out, origin)
    return Converted(fmt, out, origin, unmatched, dropped, [])


def _rename(key: str, table: Sequence[Rule]) -> Optional[str]:
    for rx, fn in table:
        m = rx.match(key)
        if m:
            return fn(m)
    return None


def fuse_kv(out: StateDict, origin: Dict[str, str]) -> None:
    """HF keeps key and value as two Linears; pvtseg (like the official code) fuses them: kv = [k; v]."""
    for k_key in [k for k in out if ".attn.k." in k]:
        v_key = k_key.replace(".attn.k.", ".attn.v.")
        kv_key = k_key.replace(".attn.k.", ".attn.kv.")
        if v_key not in out:
            continue
        out[kv_key] = torch.cat([out.pop(k_key), out.pop(v_key)], dim=0)
        origin[kv_key] = f"{origin.pop(k_key)} + {origin.pop(v_key)}"
