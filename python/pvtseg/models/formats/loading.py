"""load_checkpoint: read, recognise, convert and load any supported checkpoint into a pvtseg model.

    from pvtseg.models import create_model, load_checkpoint
    model = create_model("pvt_v2_b2_fpn", num_classes=150)
    report = load_checkpoint(model, "pvt_v2_b2.pth")      # ImageNet backbone into a segmentor
    print(report)                                         # format, dropped / missing keys by name

Loading rules
- Classification-only keys the model lacks (ImageNet classifier, PVT v1 class token and final
  norm, when loading into a segmentor) are dropped with a note; so are heads a model of this
  kind has no place for (a segmentation head loaded into a classifier).
- Parts of the model the checkpoint does not contain at all (the segmentation head when loading
  an ImageNet backbone) are reported as missing by name and do not fail strict loading: that is
  the usual way to start training a segmentor. Keys missing from a part the checkpoint does
  contain, and keys the model has no place for, fail strict loading.
- A shape mismatch always fails, before anything is copied, with a message that says what
  differs and how to fix it (num_classes, drop_head=True, the model name the weights fit).
- PVT v1 position embeddings trained on another grid (e.g. 224 weights into an img_size=512
  model) are adopted as they are (the stage's grid is set to the checkpoint's), so the runtime
  interpolation is the official code's.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import torch.nn as nn
from torch import Tensor

from ...errors import CheckpointError
from .reader import read_checkpoint, unwrap_state_dict
from .registry import FORMATS, Converted, StateDict, convert_state_dict, find_format, short_list

log = logging.getLogger("pvtseg")

# Final classification layers: the only parameters whose shape depends on num_classes.
_FINAL_LAYERS = ("backbone.head.", "head.head.conv_seg.", "head.linear_pred.")
# Parts only a classifier has (canonical names). A backbone class can add its own with a
# `classifier_only_prefixes` attribute (prefixes of its own keys, e.g. ("final_conv.",)).
_CLASSIFIER_ONLY = ("backbone.head.", "backbone.cls_token", "backbone.norm.", "backbone.final_conv.",
                    "backbone.cls_head.")
_HEAD_NAMES = {"fpn": "Semantic FPN", "segformer": "SegFormer All-MLP"}
Mismatch = Tuple[str, Tuple[int, ...], Tuple[int, ...]]  # canonical key, checkpoint shape, model shape


@dataclass
class LoadReport:
    """What load_checkpoint did. `missing` uses the model's key names, `unexpected` and
    `dropped` the checkpoint's own names (as they are in the file)."""

    format: str
    source: str = "<state dict>"
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    dropped: List[Tuple[str, str]] = field(default_factory=list)  # (checkpoint key, reason)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every key of the model was loaded and nothing was left over."""
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.source} (format: {self.format}: "
                 f"{FORMATS.get(self.format, '?')})"]
        by_reason: Dict[str, List[str]] = OrderedDict()
        for key, reason in self.dropped:
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            lines.append(f"  dropped {len(keys)}: {short_list(keys)} ({reason})")
        if self.missing:
            lines.append(f"  missing {len(self.missing)} (left as initialised): {short_list(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected {len(self.unexpected)} (not loaded): {short_list(self.unexpected)}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class _Target:
    """The model's side of a load, in the canonical namespace."""

    model: nn.Module
    segmentor: bool
    state: StateDict                  # model.state_dict()
    to_model: Dict[str, str]          # canonical key -> model key, in the model's order
    classifier_only: Tuple[str, ...]  # canonical prefixes of classification-only parts
    head: Optional[str]               # "fpn" | "segformer" | None (a classifier / backbone)

    @property
    def keys(self) -> Set[str]:
        return set(self.to_model)

    def part(self, key: str) -> str:
        if key.startswith(self.classifier_only):
            return "classifier"
        if key.startswith("backbone."):
            return "backbone"
        return "seg_head" if key.startswith("head.") else "other"


def _target(model: nn.Module) -> _Target:
    segmentor = hasattr(model, "backbone") and hasattr(model, "head") and hasattr(model.backbone, "forward_features")
    state = model.state_dict()
    to_model = {("" if segmentor else "backbone.") + k: k for k in state}
    backbone = model.backbone if segmentor else model
    extra = tuple("backbone." + p for p in getattr(backbone, "classifier_only_prefixes", ()))
    return _Target(model, segmentor, state, to_model, _CLASSIFIER_ONLY + extra, _head_kind(list(to_model)))


def _head_kind(keys: Sequence[str]) -> Optional[str]:
    if any(k.startswith(("head.neck.", "head.head.")) for k in keys):
        return "fpn"
    if any(k.startswith("head.linear_") for k in keys):
        return "segformer"
    return None


# ---------------------------------------------------------------------------------------------
# load_checkpoint
# ---------------------------------------------------------------------------------------------
def load_checkpoint(model: nn.Module, path_or_state_dict: Union[str, os.PathLike, Mapping[str, Any]],
                    strict: bool = True, drop_head: bool = False) -> LoadReport:
    """Load a checkpoint of any supported format (see FORMATS) into a pvtseg model.

    strict: fail (CheckpointError, model untouched) on missing or unexpected keys, except the
        parts the checkpoint does not contain at all (e.g. the segmentation head when loading
        ImageNet weights into a segmentor), which are reported in `missing`.
    drop_head: do not load the checkpoint's final classification layer (ImageNet classifier,
        conv_seg / linear_pred); the model keeps its own, e.g. to fine-tune 150-class ADE20K
        weights on 11 classes.
    Returns a LoadReport; shape mismatches always raise CheckpointError saying how to fix them.
    """
    source, raw = _source(path_or_state_dict)
    notes: List[str] = []
    sd = unwrap_state_dict(raw, notes)
    conv = _convert(sd, model)
    notes += conv.notes
    target = _target(model)
    canon: StateDict = OrderedDict(conv.tensors)
    dropped = list(conv.dropped)
    _drop_foreign_parts(canon, conv.origin, target, dropped, notes, strict)
    if drop_head:
        for key in [k for k in canon if k.startswith(_FINAL_LAYERS)]:
            dropped.append((conv.origin[key], "final classification layer (drop_head=True)"))
            del canon[key]
    regrid = _check_shapes(canon, target)
    missing, unexpected = _check_keys(canon, conv, target, strict, drop_head, notes)
    loaded = _copy(target, canon, regrid, notes)
    report = LoadReport(format=conv.format, source=source, loaded=loaded,
                        missing=[target.to_model[k] for k in missing if not k.endswith("num_batches_tracked")],
                        unexpected=unexpected, dropped=dropped, notes=notes)
    log.info("%s", report)
    return report


def _source(path_or_state_dict: Any) -> Tuple[str, Any]:
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        return str(path_or_state_dict), read_checkpoint(path_or_state_dict)
    if isinstance(path_or_state_dict, Mapping):
        return "<state dict>", path_or_state_dict
    raise CheckpointError(f"load_checkpoint takes a file path or a state dict, got "
                          f"{type(path_or_state_dict).__name__}: pass a path or model.state_dict()")


def _convert(sd: StateDict, model: nn.Module) -> Converted:
    fmt = find_format(sd)
    if fmt is None and _is_own_layout(sd, model):
        fmt = "pvtseg"  # another backbone family's own state_dict(): its keys are the model's
    return convert_state_dict(sd, fmt)  # detect_format's error (listing the formats) when None


def _is_own_layout(sd: Mapping[str, Tensor], model: nn.Module) -> bool:
    """The model's own state_dict() layout (any backbone family): at least half the keys are the
    model's keys, or its backbone's keys (classifier <-> segmentor). Only tried for layouts that
    no registered format knows (timm's block keys equal pvtseg's, for one)."""
    model_keys = set(model.state_dict())
    variants = [model_keys, {"backbone." + k for k in model_keys},
                {k[len("backbone."):] for k in model_keys if k.startswith("backbone.")}]
    keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    return bool(keys) and any(sum(k in v for k in keys) >= 0.5 * len(keys) for v in variants)


def _drop_foreign_parts(canon: StateDict, origin: Dict[str, str], target: _Target, dropped: List[Tuple[str, str]],
                        notes: List[str], strict: bool) -> None:
    """Drop the parts this model has no place for: classification-only keys, a segmentation head
    in a classifier, another kind of segmentation head (strict=False only)."""
    keys = target.keys
    for key in [k for k in canon if k not in keys]:
        part = target.part(key)
        if part == "classifier":
            dropped.append((origin[key], "classification-only (ImageNet classifier / class token / final norm), "
                                         "not part of this model"))
            del canon[key]
        elif part == "seg_head" and target.head is None:
            dropped.append((origin[key], "segmentation head; this model is a classifier/backbone"))
            del canon[key]
    ckpt_head = _head_kind([k for k in canon if k.startswith("head.")])
    if not (ckpt_head and target.head and ckpt_head != target.head):
        return
    msg = f"the checkpoint has a {_HEAD_NAMES[ckpt_head]} head, the model a {_HEAD_NAMES[target.head]} head"
    if strict:
        raise CheckpointError(f"{msg}: create the model as '<backbone>_{ckpt_head}' to use it, or pass strict=False "
                              "to load the backbone only")
    notes.append(msg + "; loaded the backbone only")
    for key in [k for k in canon if k.startswith("head.")]:
        dropped.append((origin[key], f"{_HEAD_NAMES[ckpt_head]} head, the model has another head"))
        del canon[key]


def _check_shapes(canon: StateDict, target: _Target) -> Dict[str, Tuple[int, int]]:
    """All shapes, checked before anything is copied; returns PVT v1 pos_embed grids to adopt."""
    regrid: Dict[str, Tuple[int, int]] = {}
    mismatches: List[Mismatch] = []
    for key, value in canon.items():
        if key not in target.to_model:
            continue
        want, got = tuple(target.state[target.to_model[key]].shape), tuple(value.shape)
        if want == got:
            continue
        grid = _pos_embed_grid(key, got, want)
        if grid is not None:
            regrid[key] = grid
        else:
            mismatches.append((key, got, want))
    if mismatches:
        raise CheckpointError(_mismatch_message(mismatches, canon, target))
    return regrid


def _check_keys(canon: StateDict, conv: Converted, target: _Target, strict: bool, drop_head: bool,
                notes: List[str]) -> Tuple[List[str], List[str]]:
    """(missing canonical keys in the model's order, unexpected checkpoint keys); raises when strict
    and a part the checkpoint has is incomplete, or the checkpoint has keys the model lacks."""
    present = {target.part(k) for k in canon}

    def allowed_missing(key: str) -> bool:
        return ((target.part(key) in ("seg_head", "classifier") and target.part(key) not in present)
                or (drop_head and key.startswith(_FINAL_LAYERS)) or key.endswith("num_batches_tracked"))

    missing = [k for k in target.to_model if k not in canon]
    hard_missing = [k for k in missing if not allowed_missing(k)]
    keys = target.keys
    unexpected = [conv.origin[k] for k in canon if k not in keys] + conv.unmatched
    if strict and (hard_missing or unexpected):
        raise CheckpointError(_strict_message(hard_missing, unexpected, canon, target, conv.format))
    if "seg_head" not in present and target.head is not None:
        notes.append("backbone-only checkpoint: the segmentation head keeps its initialisation")
    return missing, unexpected


def _copy(target: _Target, canon: StateDict, regrid: Dict[str, Tuple[int, int]], notes: List[str]) -> List[str]:
    for key, grid in regrid.items():
        module_path = target.to_model[key].rsplit(".", 1)[0]
        target.model.get_submodule(module_path).set_grid(*grid)  # type: ignore[operator]
        notes.append(f"{target.to_model[key]}: adopted the checkpoint's {grid[0]}x{grid[1]} grid "
                     "(other input sizes interpolate it at run time)")
    to_load = {target.to_model[k]: v for k, v in canon.items() if k in target.to_model}
    result = target.model.load_state_dict(to_load, strict=False)
    if result.unexpected_keys:  # every key was matched against the model's own keys above
        raise CheckpointError(f"internal error: the model refused keys it listed itself "
                              f"({short_list(result.unexpected_keys)}); please report this with the checkpoint")
    return list(to_load)


# ---------------------------------------------------------------------------------------------
# Fix-it messages
# ---------------------------------------------------------------------------------------------
def _pos_embed_grid(key: str, got: Tuple[int, ...], want: Tuple[int, ...]) -> Optional[Tuple[int, int]]:
    """For a PVT v1 pos_embed of another (square) grid: that grid, else None."""
    m = re.match(r"backbone\.stages\.(\d)\.pos_embed$", key)
    if not m or len(got) != 3 or len(want) != 3 or got[0] != 1 or got[2] != want[2]:
        return None
    n = got[1] - (1 if int(m.group(1)) == 3 else 0)  # stage 4 carries the class token's slot
    side = math.isqrt(n) if n > 0 else 0
    return (side, side) if side * side == n else None


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "pvtseg_name", type(model).__name__))


def _suggest_name(canon: Mapping[str, Tensor], target: _Target) -> Optional[str]:
    arch = guess_architecture(canon)
    if arch is None:
        return None
    name = _model_name(target.model)
    suffix = next((s for s in ("_fpn", "_segformer") if target.segmentor and name.endswith(s)), "")
    return arch + suffix


def _mismatch_message(mismatches: List[Mismatch], canon: StateDict, target: _Target) -> str:
    name = _model_name(target.model)
    lines = [f"checkpoint does not fit {name}: {len(mismatches)} shape mismatch(es)"]
    lines += [f"  {target.to_model[key]}: checkpoint {got} vs model {want}" for key, got, want in mismatches[:8]]
    if len(mismatches) > 8:
        lines.append(f"  ... ({len(mismatches) - 8} more)")
    final = [m for m in mismatches if m[0].startswith(_FINAL_LAYERS)]
    if final and len(final) == len(mismatches):
        n_ck, n_model = final[0][1][0], final[0][2][0]
        lines.append(f"the checkpoint has {n_ck} classes, the model {n_model}: pass num_classes={n_ck} to "
                     f"create_model to use the checkpoint's classifier, or drop_head=True to load everything "
                     f"else and keep the model's own {n_model}-class layer (to be trained)")
        return "\n".join(lines)
    head = [m for m in mismatches if m[0].startswith(("head.linear_c.", "head.linear_fuse."))]
    if head and "head.linear_c.0.proj.weight" in canon:
        lines.append(f"the SegFormer decoder width differs: pass decoder_dim="
                     f"{int(canon['head.linear_c.0.proj.weight'].shape[0])} to create_model")
    suggestion = _suggest_name(canon, target)
    if suggestion and suggestion != name:
        lines.append(f"the weights look like {suggestion} ({_describe(canon)}): "
                     f"create_model({suggestion!r}, ...) instead")
    elif not head:
        what = _describe(canon)
        what = f"have {what}" if what != "no backbone" else "come from another model or configuration"
        lines.append(f"the weights {what}: create the model they were trained with (`pvtseg models` lists them)")
    return "\n".join(lines)


def _strict_message(missing: List[str], unexpected: List[str], canon: StateDict, target: _Target, fmt: str) -> str:
    name = _model_name(target.model)
    lines = [f"checkpoint ({fmt}) does not match {name} exactly:"]
    if missing:
        lines.append(f"  missing {len(missing)}: {short_list([target.to_model[k] for k in missing])}")
    if unexpected:
        lines.append(f"  unexpected {len(unexpected)}: {short_list(unexpected)}")
    suggestion = _suggest_name(canon, target)
    if suggestion and suggestion != name:
        lines.append(f"the weights look like {suggestion} ({_describe(canon)}): create_model({suggestion!r}, ...)")
    lines.append("pass strict=False to load what matches and get the rest listed in the report")
    return "\n".join(lines)


def guess_architecture(canon: Mapping[str, Tensor]) -> Optional[str]:
    """The registered PVT / MiT backbone name whose configuration these canonical weights fit, if any."""
    from .. import pvt_v1, pvt_v2  # lazy: the backbones import the model registry

    try:
        dims = tuple(int(canon[f"backbone.stages.{i}.patch_embed.proj.weight"].shape[0]) for i in range(4))
    except KeyError:
        return None
    depths = tuple(_depth(canon, i) for i in range(4))
    ratios = []
    for i in range(4):
        w = canon.get(f"backbone.stages.{i}.blocks.0.mlp.fc1.weight")
        ratios.append(float(w.shape[0]) / dims[i] if w is not None else 0.0)
    v1 = any(k.endswith(".pos_embed") for k in canon)
    linear = "backbone.stages.3.blocks.0.attn.sr.weight" in canon
    for name, cfg in (pvt_v1.CONFIGS if v1 else pvt_v2.CONFIGS).items():
        if (tuple(cfg["embed_dims"]) == dims and tuple(cfg["depths"]) == depths
                and tuple(float(r) for r in cfg.get("mlp_ratios", (8, 8, 4, 4))) == tuple(ratios)
                and bool(cfg.get("linear", False)) == linear):
            return name
    return None


def _depth(canon: Mapping[str, Tensor], i: int) -> int:
    blocks = {int(m.group(1)) for k in canon for m in [re.match(rf"backbone\.stages\.{i}\.blocks\.(\d+)\.", k)] if m}
    return max(blocks) + 1 if blocks else 0


def _describe(canon: Mapping[str, Tensor]) -> str:
    try:
        dims = [int(canon[f"backbone.stages.{i}.patch_embed.proj.weight"].shape[0]) for i in range(4)]
    except KeyError:
        return "no backbone"
    depths = [len({k.split(".")[4] for k in canon if k.startswith(f"backbone.stages.{i}.blocks.")})
              for i in range(4)]
    return f"embed dims {dims}, depths {depths}"
