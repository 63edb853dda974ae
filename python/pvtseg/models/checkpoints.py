"""Read a checkpoint in any supported layout, convert it to pvtseg's keys, load it with a report.

    from pvtseg.models import create_model, load_checkpoint
    model = create_model("pvt_v2_b2_fpn", num_classes=150)
    report = load_checkpoint(model, "pvt_v2_b2.pth")      # ImageNet backbone into a segmentor
    print(report)                                         # format, dropped / missing keys by name

Formats are detected from the keys, never from the file name (see FORMATS):

    pvtseg            this package's own state_dict(), classifier/backbone or segmentor
    pvt-official      whai362/PVT classification releases, v1 (patch_embed1.proj, pos_embed1,
                      block1.0.attn.kv, norm, cls_token, head) and v2 (block1.0.mlp.dwconv.dwconv,
                      norm1..norm4, head); also NVlabs SegFormer's ImageNet MiT encoders (same layout)
    mmseg             mmsegmentation checkpoints: backbone.<official layout> + neck./decode_head. of
                      Semantic FPN (official PVT ADE20K) or SegFormer's All-MLP head (NVlabs)
    hf-pvt            transformers PvtModel / PvtForImageClassification
    hf-pvt-v2         transformers PvtV2Model / PvtV2ForImageClassification
    hf-segformer      transformers Segformer{Model,ForSemanticSegmentation,ForImageClassification}
                      with the 4.x key names that checkpoints on the Hub use
    hf-segformer-5    the same models' state_dict() under transformers 5.x (renamed keys)
    timm-pvt-v2       timm pvt_v2_* state dicts

Containers: torch.save files (read with weights_only=True), wrapped as {'model': ...},
{'state_dict': ...} (mmcv), {'model_state_dict': ...} or bare, with or without a DDP 'module.'
prefix; .safetensors files (read here, no extra dependency); a Hugging Face model folder
(model.safetensors or pytorch_model.bin inside).

Conversion goes through one canonical namespace, the segmentor's state dict:
    backbone.stages.{i}....                     the pyramid (own layout, see pvt_v1 / pvt_v2)
    backbone.cls_token / backbone.norm.* / backbone.head.*   classification-only parts
    head.*                                      segmentation head (SemanticFPN or SegFormerHead)
A classifier/backbone model sees the same keys without the `backbone.` prefix.

Loading rules
- Classification-only keys the model lacks (ImageNet classifier, PVT v1 class token and final
  norm, when loading into a segmentor) are dropped with a note; so are heads a model of this
  kind has no place for (a segmentation head loaded into a classifier, SegFormer's unused
  decode_head.conv_seg, mmseg auxiliary heads).
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

import argparse
import json
import logging
import math
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import CheckpointError, CheckpointNotFoundError

log = logging.getLogger("pvtseg")

StateDict = Dict[str, Tensor]

FORMATS: Dict[str, str] = {
    "pvtseg": "pvtseg's own state_dict() (classifier/backbone or segmentor)",
    "pvt-official": "whai362/PVT classification release (v1 or v2) or NVlabs SegFormer ImageNet MiT "
                    "(patch_embed1.proj, block1.0.attn.kv, ...), optionally wrapped in {'model': ...}",
    "mmseg": "mmsegmentation {'state_dict': ...} with backbone./neck./decode_head. (official PVT "
             "Semantic FPN ADE20K, NVlabs SegFormer)",
    "hf-pvt": "Hugging Face transformers PvtModel / PvtForImageClassification",
    "hf-pvt-v2": "Hugging Face transformers PvtV2Model / PvtV2ForImageClassification",
    "hf-segformer": "Hugging Face transformers Segformer* (4.x key names, as on the Hub)",
    "hf-segformer-5": "Hugging Face transformers Segformer* state_dict() under transformers 5.x",
    "timm-pvt-v2": "timm pvt_v2_* state dict",
}

# Final classification layers: the only parameters whose shape depends on num_classes.
_FINAL_LAYERS = ("backbone.head.", "head.head.conv_seg.", "head.linear_pred.")
# Parts only a classifier has (canonical names). A backbone class can add its own with a
# `classifier_only_prefixes` attribute (prefixes of its own keys, e.g. ("final_conv.",)).
_CLASSIFIER_ONLY = ("backbone.head.", "backbone.cls_token", "backbone.norm.", "backbone.final_conv.",
                    "backbone.cls_head.")


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
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
        if self.dropped:
            by_reason: Dict[str, List[str]] = OrderedDict()
            for key, reason in self.dropped:
                by_reason.setdefault(reason, []).append(key)
            for reason, keys in by_reason.items():
                lines.append(f"  dropped {len(keys)}: {_names(keys)} ({reason})")
        if self.missing:
            lines.append(f"  missing {len(self.missing)} (left as initialised): {_names(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected {len(self.unexpected)} (not loaded): {_names(self.unexpected)}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


def _names(keys: Sequence[str], limit: int = 8) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------
_HF_FILES = ("model.safetensors", "pytorch_model.bin")


def read_checkpoint(path: Union[str, os.PathLike]) -> Any:
    """Read a checkpoint file (torch.save with weights_only=True, or .safetensors) or a Hugging
    Face model folder; returns what the file holds (a state dict or a wrapper dict)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in _HF_FILES:
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise CheckpointNotFoundError(
                f"{str(path)!r} is a folder without {' or '.join(_HF_FILES)}; pass the checkpoint file itself")
    if not p.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint {str(path)!r} does not exist; check the path, or fetch the official ImageNet "
            "weights with `from pvtseg.models.zoo import download` (see `pvtseg models --weights`)")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(p)!r} is empty (0 bytes); download or save it again")
    with open(p, "rb") as f:
        head = f.read(16)
    if p.suffix == ".safetensors" or _looks_like_safetensors(head):
        return _read_safetensors(p)
    return _torch_load(p, head)


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return 2 <= n < (1 << 28) and head[8:9] == b"{"


_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _read_safetensors(p: Path) -> StateDict:
    data = bytearray(p.read_bytes())
    try:
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(p)!r} is not a readable .safetensors file ({e}); "
                              "it may be truncated: download it again") from None
    body = memoryview(data)[8 + n:]
    out: StateDict = OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(info.get("dtype", ""))
        if dtype is None:
            raise CheckpointError(f"{str(p)!r}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}")
        begin, end = info["data_offsets"]
        shape = list(info["shape"])
        if end > len(body):
            raise CheckpointError(
                f"{str(p)!r} is truncated: tensor {name!r} ends at byte {end} of a {len(body)}-byte body; "
                "download it again")
        if end == begin:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(body[begin:end], dtype=dtype).reshape(shape).clone()
    return out


def _safe_extra_globals() -> List[Any]:
    """Harmless non-tensor objects found in real training checkpoints (DeiT saves the argparse
    Namespace, mmcv meta may hold numpy scalars). They carry no code."""
    extra: List[Any] = [argparse.Namespace]
    try:
        import numpy as np

        extra += [np.dtype, type(np.dtype("float32")), type(np.dtype("float64")), type(np.dtype("int64"))]
        try:
            from numpy._core.multiarray import scalar  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import scalar  # type: ignore
        extra.append(scalar)
    except ImportError:  # pragma: no cover
        pass
    return extra


def _torch_load(p: Path, head: bytes) -> Any:
    def load(extra: Optional[List[Any]]) -> Any:
        with warnings.catch_warnings():
            # Raised for plain pickles (protocol != 2) just before they are refused anyway.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            if extra:
                with torch.serialization.safe_globals(extra):
                    return torch.load(p, map_location="cpu", weights_only=True)
            return torch.load(p, map_location="cpu", weights_only=True)

    is_zip = head[:2] == b"PK"
    if is_zip:
        try:
            with zipfile.ZipFile(p) as zf:
                zf.namelist()
        except zipfile.BadZipFile:
            raise CheckpointError(
                f"checkpoint {str(p)!r} is truncated or corrupt (its zip directory cannot be read); "
                "download or save it again") from None
    try:
        try:
            return load(None)
        except pickle.UnpicklingError as e:
            if "Unsupported global" not in str(e) and "weights_only" not in str(e).lower():
                raise
            return load(_safe_extra_globals())
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
        if m:
            raise CheckpointError(
                f"{str(p)!r} is not a plain checkpoint: it holds a Python object of type {m.group(1)} that "
                "weights_only loading refuses (it could run code). If you trust the file, load it "
                "yourself with torch.load(path, weights_only=False) and pass the state dict to "
                "load_checkpoint") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(\n\n|$)", msg, re.S)
        detail_text = _first_line(detail.group(1) if detail else msg)
        if "truncated" in msg:
            raise CheckpointError(
                f"checkpoint {str(p)!r} is truncated ({detail_text}); download or save it again") from None
        raise CheckpointError(
            f"{str(p)!r} is not a PyTorch checkpoint (unpickling failed: {detail_text}); expected a torch.save "
            "file, .safetensors or a Hugging Face model folder") from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"checkpoint {str(p)!r} is truncated or corrupt ({type(e).__name__}: {_first_line(str(e))}); "
            "download or save it again") from None
    except RuntimeError as e:
        msg = str(e)
        raise CheckpointError(
            f"checkpoint {str(p)!r} is truncated, corrupt or not a PyTorch checkpoint ({_first_line(msg)}); "
            "download or save it again") from None
    except Exception as e:  # the unpickler raises KeyError / IndexError / ... on arbitrary bytes
        raise CheckpointError(
            f"{str(p)!r} is not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(str(e))})"
        ) from None


def _first_line(s: str) -> str:
    s = s.strip().splitlines()[0] if s.strip() else s
    return s[:300]


# --------------------------------------------------------------------------------------------
# Unwrapping
# --------------------------------------------------------------------------------------------
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net", "network")


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and any(isinstance(v, Tensor) for v in obj.values())
            and sum(isinstance(v, Tensor) for v in obj.values()) >= 0.5 * len(obj))


def unwrap_state_dict(obj: Any, notes: Optional[List[str]] = None) -> StateDict:
    """The tensor dict inside a checkpoint object ({'model': sd}, {'state_dict': sd}, sd, ...)."""
    notes = notes if notes is not None else []
    path: List[str] = []
    for _ in range(4):
        if isinstance(obj, Mapping):
            inner = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping) and obj[k]), None)
            if inner is not None and (not _is_state_dict(obj) or _is_state_dict(obj[inner])):
                path.append(inner)
                obj = obj[inner]
                continue
        break
    if not _is_state_dict(obj):
        what = type(obj).__name__
        if isinstance(obj, Mapping):
            what = f"a dict with keys {_names([str(k) for k in obj], 6)}"
        raise CheckpointError(
            f"not a checkpoint: found {what}, expected a dict of tensors (a state dict), possibly "
            f"wrapped as {{'model': ...}} or {{'state_dict': ...}}")
    if path:
        notes.append("unwrapped " + "".join(f"[{k!r}]" for k in path))
    sd: StateDict = OrderedDict()
    skipped = []
    for k, v in obj.items():
        if isinstance(v, Tensor):
            sd[k] = v
        else:
            skipped.append(k)
    if skipped:
        notes.append(f"ignored {len(skipped)} non-tensor entries: {_names(skipped, 4)}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = OrderedDict((k[len("module."):], v) for k, v in sd.items())
        notes.append("stripped the DDP 'module.' prefix")
    return sd


# --------------------------------------------------------------------------------------------
# Format detection and conversion
# --------------------------------------------------------------------------------------------
def _any(keys: Sequence[str], pattern: str) -> bool:
    rx = re.compile(pattern)
    return any(rx.match(k) for k in keys)


def detect_format(sd: Mapping[str, Any]) -> str:
    """Name (a key of FORMATS) of the layout a state dict uses; CheckpointError if none fits."""
    keys = list(sd)
    if _any(keys, r"backbone\.stages\.\d+\.(patch_embed|blocks)\.") or "stages.0.patch_embed.proj.weight" in sd:
        return "pvtseg"
    if "patch_embed.proj.weight" in sd and _any(keys, r"stages\.\d+\.blocks\.\d+\."):
        return "timm-pvt-v2"
    if _any(keys, r"(segformer\.)?stages\.\d+\.patch_embeddings\."):
        return "hf-segformer-5"
    if _any(keys, r"(segformer\.)?encoder\.patch_embeddings\.\d+\.proj\."):
        return "hf-segformer"
    if _any(keys, r"(pvt\.)?encoder\.patch_embeddings\.\d+\.projection\."):
        return "hf-pvt"
    if _any(keys, r"(pvt_v2\.)?encoder\.layers\.\d+\.patch_embedding\."):
        return "hf-pvt-v2"
    if "backbone.patch_embed1.proj.weight" in sd:
        return "mmseg"
    if "patch_embed1.proj.weight" in sd:
        return "pvt-official"
    for name, (_, detect, _) in _EXTRA_FORMATS.items():
        if detect(sd):
            return name
    sample = _names(keys, 5)
    raise CheckpointError(
        "unrecognised checkpoint layout (first keys: " + sample + "). Understood formats: "
        + "; ".join(f"{k} = {v}" for k, v in FORMATS.items()))


# Layouts of other backbone families, plugged in with register_format().
ExtraConvert = Callable[[Mapping[str, Tensor]], Tuple[StateDict, List[Tuple[str, str]]]]
_EXTRA_FORMATS: Dict[str, Tuple[str, Callable[[Mapping[str, Tensor]], bool], ExtraConvert]] = {}


def register_format(name: str, description: str, detect: Callable[[Mapping[str, Tensor]], bool],
                    convert: ExtraConvert) -> None:
    """Teach load_checkpoint another layout (e.g. a new backbone family's official releases).

    detect(state_dict) -> True when the keys are in this layout (tried after the built-in ones);
    convert(state_dict) -> (tensors, dropped): tensors keyed in the canonical namespace
    ("backbone." + the model's own backbone/classifier key, "head." + segmentation-head key),
    dropped a list of (checkpoint key, reason) left out on purpose.
    """
    if name in FORMATS and name not in _EXTRA_FORMATS:
        raise ValueError(f"format {name!r} is built in")
    FORMATS[name] = description
    _EXTRA_FORMATS[name] = (description, detect, convert)


Rule = Tuple["re.Pattern[str]", Callable[["re.Match[str]"], Optional[str]]]


def _rules(*pairs: Tuple[str, Any]) -> List[Rule]:
    out: List[Rule] = []
    for pattern, repl in pairs:
        fn = repl if callable(repl) else (lambda m, r=repl: m.expand(r))
        out.append((re.compile(pattern + r"$"), fn))
    return out


def _inner(mapping: Sequence[Tuple[str, str]]) -> Callable[[str], Optional[str]]:
    """Rename the part of a key inside one transformer block ('attention.self.query.weight' ...)."""
    compiled = [(re.compile(r"^" + re.escape(a) + r"\.(weight|bias)$"), b) for a, b in mapping]

    def rename(rest: str) -> Optional[str]:
        for rx, b in compiled:
            m = rx.match(rest)
            if m:
                return f"{b}.{m.group(1)}"
        return None

    return rename


_OWN_BLOCK = _inner([(n, n) for n in ("norm1", "attn.q", "attn.kv", "attn.sr", "attn.norm", "attn.proj", "norm2",
                                      "mlp.fc1", "mlp.dwconv", "mlp.fc2")])
_OFFICIAL_BLOCK = _inner([(n, n) for n in ("norm1", "attn.q", "attn.kv", "attn.sr", "attn.norm", "attn.proj",
                                           "norm2", "mlp.fc1", "mlp.fc2")] + [("mlp.dwconv.dwconv", "mlp.dwconv")])
_HF_PVT_BLOCK = _inner([
    ("layer_norm_1", "norm1"), ("attention.self.query", "attn.q"), ("attention.self.key", "attn.k"),
    ("attention.self.value", "attn.v"), ("attention.self.sequence_reduction", "attn.sr"),
    ("attention.self.layer_norm", "attn.norm"), ("attention.output.dense", "attn.proj"),
    ("layer_norm_2", "norm2"), ("mlp.dense1", "mlp.fc1"), ("mlp.dense2", "mlp.fc2")])
_HF_PVT2_BLOCK = _inner([
    ("layer_norm_1", "norm1"), ("attention.query", "attn.q"), ("attention.key", "attn.k"),
    ("attention.value", "attn.v"), ("attention.spatial_reduction", "attn.sr"),
    ("attention.layer_norm", "attn.norm"), ("attention.proj", "attn.proj"), ("layer_norm_2", "norm2"),
    ("mlp.dense1", "mlp.fc1"), ("mlp.dwconv.dwconv", "mlp.dwconv"), ("mlp.dense2", "mlp.fc2")])
_HF_SEG4_BLOCK = _inner([
    ("layer_norm_1", "norm1"), ("attention.self.query", "attn.q"), ("attention.self.key", "attn.k"),
    ("attention.self.value", "attn.v"), ("attention.self.sr", "attn.sr"),
    ("attention.self.layer_norm", "attn.norm"), ("attention.output.dense", "attn.proj"),
    ("layer_norm_2", "norm2"), ("mlp.dense1", "mlp.fc1"), ("mlp.dwconv.dwconv", "mlp.dwconv"),
    ("mlp.dense2", "mlp.fc2")])
_HF_SEG5_BLOCK = _inner([
    ("layernorm_before", "norm1"), ("attention.q_proj", "attn.q"), ("attention.k_proj", "attn.k"),
    ("attention.v_proj", "attn.v"), ("attention.o_proj", "attn.proj"),
    ("attention.sequence_reduction.sequence_reduction", "attn.sr"),
    ("attention.sequence_reduction.layer_norm", "attn.norm"), ("layernorm_after", "norm2"),
    ("mlp.fc1", "mlp.fc1"), ("mlp.dwconv.dwconv", "mlp.dwconv"), ("mlp.fc2", "mlp.fc2")])


def _block(inner: Callable[[str], Optional[str]], one_based: bool = False) -> Callable:
    def fn(m: "re.Match[str]") -> Optional[str]:
        stage = int(m.group("s")) - (1 if one_based else 0)
        rest = inner(m.group("rest"))
        return None if rest is None else f"backbone.stages.{stage}.blocks.{m.group('j')}.{rest}"
    return fn


def _stage(fmt: str, one_based: bool = False) -> Callable:
    def fn(m: "re.Match[str]") -> str:
        stage = int(m.group("s")) - (1 if one_based else 0)
        return fmt.format(s=stage, **{k: v for k, v in m.groupdict().items() if k != "s"})
    return fn


_WB = r"(?P<p>weight|bias)"
_BN = r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"

_OFFICIAL_BACKBONE = [
    (r"patch_embed(?P<s>[1-4])\.(?P<m>proj|norm)\." + _WB, _stage("backbone.stages.{s}.patch_embed.{m}.{p}", True)),
    (r"pos_embed(?P<s>[1-4])", _stage("backbone.stages.{s}.pos_embed", True)),
    (r"block(?P<s>[1-4])\.(?P<j>\d+)\.(?P<rest>.+)", _block(_OFFICIAL_BLOCK, True)),
    (r"norm(?P<s>[1-4])\." + _WB, _stage("backbone.stages.{s}.norm.{p}", True)),
    (r"norm\." + _WB, r"backbone.norm.\g<p>"),
    (r"cls_token", "backbone.cls_token"),
    (r"head\." + _WB, r"backbone.head.\g<p>"),
]

_RULES: Dict[str, List[Rule]] = {
    "pvtseg": _rules(
        (r"(?P<k>(stages|cls_token|norm\.|head\.).*)", r"backbone.\g<k>"),
    ),
    "pvt-official": _rules(*_OFFICIAL_BACKBONE),
    "mmseg": _rules(
        *[("backbone\\." + pat, fn) for pat, fn in _OFFICIAL_BACKBONE],
        (r"neck\.(?P<c>lateral_convs|fpn_convs)\.(?P<i>\d)\.conv\." + _WB, r"head.neck.\g<c>.\g<i>.conv.\g<p>"),
        (r"decode_head\.scale_heads\.(?P<i>\d)\.(?P<k>\d)\.conv\.weight",
         r"head.head.scale_heads.\g<i>.\g<k>.conv.weight"),
        (r"decode_head\.scale_heads\.(?P<i>\d)\.(?P<k>\d)\.bn\." + _BN,
         r"head.head.scale_heads.\g<i>.\g<k>.bn.\g<p>"),
        (r"decode_head\.linear_c(?P<s>[1-4])\.proj\." + _WB, _stage("head.linear_c.{s}.proj.{p}", True)),
        (r"decode_head\.linear_fuse\.conv\.weight", "head.linear_fuse.conv.weight"),
        (r"decode_head\.linear_fuse\.bn\." + _BN, r"head.linear_fuse.bn.\g<p>"),
        (r"decode_head\.linear_pred\." + _WB, r"head.linear_pred.\g<p>"),
        (r"decode_head\.conv_seg\." + _WB, r"head.head.conv_seg.\g<p>"),
    ),
    "hf-pvt": _rules(
        (r"(pvt\.)?encoder\.patch_embeddings\.(?P<s>\d)\.position_embeddings", _stage("backbone.stages.{s}.pos_embed")),
        (r"(pvt\.)?encoder\.patch_embeddings\.3\.cls_token", "backbone.cls_token"),
        (r"(pvt\.)?encoder\.patch_embeddings\.(?P<s>\d)\.projection\." + _WB,
         _stage("backbone.stages.{s}.patch_embed.proj.{p}")),
        (r"(pvt\.)?encoder\.patch_embeddings\.(?P<s>\d)\.layer_norm\." + _WB,
         _stage("backbone.stages.{s}.patch_embed.norm.{p}")),
        (r"(pvt\.)?encoder\.block\.(?P<s>\d)\.(?P<j>\d+)\.(?P<rest>.+)", _block(_HF_PVT_BLOCK)),
        (r"(pvt\.)?encoder\.layer_norm\." + _WB, r"backbone.norm.\g<p>"),
        (r"classifier\." + _WB, r"backbone.head.\g<p>"),
    ),
    "hf-pvt-v2": _rules(
        (r"(pvt_v2\.)?encoder\.layers\.(?P<s>\d)\.patch_embedding\.proj\." + _WB,
         _stage("backbone.stages.{s}.patch_embed.proj.{p}")),
        (r"(pvt_v2\.)?encoder\.layers\.(?P<s>\d)\.patch_embedding\.layer_norm\." + _WB,
         _stage("backbone.stages.{s}.patch_embed.norm.{p}")),
        (r"(pvt_v2\.)?encoder\.layers\.(?P<s>\d)\.blocks\.(?P<j>\d+)\.(?P<rest>.+)", _block(_HF_PVT2_BLOCK)),
        (r"(pvt_v2\.)?encoder\.layers\.(?P<s>\d)\.layer_norm\." + _WB, _stage("backbone.stages.{s}.norm.{p}")),
        (r"classifier\." + _WB, r"backbone.head.\g<p>"),
    ),
    "hf-segformer": _rules(
        (r"(segformer\.)?encoder\.patch_embeddings\.(?P<s>\d)\.proj\." + _WB,
         _stage("backbone.stages.{s}.patch_embed.proj.{p}")),
        (r"(segformer\.)?encoder\.patch_embeddings\.(?P<s>\d)\.layer_norm\." + _WB,
         _stage("backbone.stages.{s}.patch_embed.norm.{p}")),
        (r"(segformer\.)?encoder\.block\.(?P<s>\d)\.(?P<j>\d+)\.(?P<rest>.+)", _block(_HF_SEG4_BLOCK)),
        (r"(segformer\.)?encoder\.layer_norm\.(?P<s>\d)\." + _WB, _stage("backbone.stages.{s}.norm.{p}")),
        (r"decode_head\.linear_c\.(?P<i>\d)\.proj\." + _WB, r"head.linear_c.\g<i>.proj.\g<p>"),
        (r"decode_head\.linear_fuse\.weight", "head.linear_fuse.conv.weight"),
        (r"decode_head\.batch_norm\." + _BN, r"head.linear_fuse.bn.\g<p>"),
        (r"decode_head\.classifier\." + _WB, r"head.linear_pred.\g<p>"),
        (r"classifier\." + _WB, r"backbone.head.\g<p>"),
    ),
    "hf-segformer-5": _rules(
        (r"(segformer\.)?stages\.(?P<s>\d)\.patch_embeddings\.proj\." + _WB,
         _stage("backbone.stages.{s}.patch_embed.proj.{p}")),
        (r"(segformer\.)?stages\.(?P<s>\d)\.patch_embeddings\.layer_norm\." + _WB,
         _stage("backbone.stages.{s}.patch_embed.norm.{p}")),
        (r"(segformer\.)?stages\.(?P<s>\d)\.blocks\.(?P<j>\d+)\.(?P<rest>.+)", _block(_HF_SEG5_BLOCK)),
        (r"(segformer\.)?stages\.(?P<s>\d)\.layer_norm\." + _WB, _stage("backbone.stages.{s}.norm.{p}")),
        (r"decode_head\.linear_projections\.(?P<i>\d)\.proj\." + _WB, r"head.linear_c.\g<i>.proj.\g<p>"),
        (r"decode_head\.linear_fuse\.weight", "head.linear_fuse.conv.weight"),
        (r"decode_head\.batch_norm\." + _BN, r"head.linear_fuse.bn.\g<p>"),
        (r"decode_head\.classifier\." + _WB, r"head.linear_pred.\g<p>"),
        (r"classifier\." + _WB, r"backbone.head.\g<p>"),
    ),
    "timm-pvt-v2": _rules(
        (r"patch_embed\.(?P<m>proj|norm)\." + _WB, r"backbone.stages.0.patch_embed.\g<m>.\g<p>"),
        (r"stages\.(?P<s>\d)\.downsample\.(?P<m>proj|norm)\." + _WB, _stage("backbone.stages.{s}.patch_embed.{m}.{p}")),
        (r"stages\.(?P<s>\d)\.blocks\.(?P<j>\d+)\.(?P<rest>.+)", _block(_OWN_BLOCK)),
        (r"stages\.(?P<s>\d)\.norm\." + _WB, _stage("backbone.stages.{s}.norm.{p}")),
        (r"head\." + _WB, r"backbone.head.\g<p>"),
    ),
}

# Keys that carry nothing the model uses; dropped with the reason given.
_DROP: Dict[str, List[Tuple[str, str]]] = {
    "mmseg": [
        (r"auxiliary_head\..*", "mmseg auxiliary head (training only)"),
    ],
}


@dataclass
class Converted:
    """A checkpoint converted to the canonical (segmentor) namespace."""

    format: str
    tensors: StateDict                       # canonical key -> tensor
    origin: Dict[str, str]                   # canonical key -> checkpoint key(s)
    unmatched: List[str]                     # checkpoint keys no rule understood
    dropped: List[Tuple[str, str]]           # (checkpoint key, reason)
    notes: List[str]


def convert_state_dict(sd: Mapping[str, Tensor], fmt: Optional[str] = None) -> Converted:
    """Convert a state dict of any supported format to pvtseg's canonical segmentor namespace."""
    fmt = fmt or detect_format(sd)
    if fmt in _EXTRA_FORMATS:
        tensors, extra_dropped = _EXTRA_FORMATS[fmt][2](sd)
        return Converted(fmt, OrderedDict(tensors), {k: k for k in tensors}, [], list(extra_dropped), [])
    if fmt not in _RULES:
        raise CheckpointError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    rules = _RULES[fmt]
    if fmt == "pvtseg":
        if any(k.startswith("backbone.") for k in sd):
            rules = _rules((r"(?P<k>(backbone|head)\..*)", r"\g<k>"))  # a segmentor: already canonical
        else:
            rules = _rules((r"(?P<k>.+)", r"backbone.\g<k>"))  # a classifier / backbone
    drops = [(re.compile(p + "$"), why) for p, why in _DROP.get(fmt, [])]
    out: StateDict = OrderedDict()
    origin: Dict[str, str] = {}
    unmatched: List[str] = []
    dropped: List[Tuple[str, str]] = []
    notes: List[str] = []
    for key, value in sd.items():
        reason = next((why for rx, why in drops if rx.match(key)), None)
        if reason is not None:
            dropped.append((key, reason))
            continue
        new = None
        for rx, fn in rules:
            m = rx.match(key)
            if m:
                new = fn(m)
                break
        if new is None:
            unmatched.append(key)
            continue
        if new in out:
            raise CheckpointError(f"checkpoint keys {origin[new]!r} and {key!r} both map to {new!r}")
        out[new] = value
        origin[new] = key
    _fuse_kv(out, origin)
    if fmt == "mmseg" and any(k.startswith("head.linear_pred.") for k in out):
        # NVlabs SegFormer keeps BaseDecodeHead's conv_seg although its forward uses linear_pred.
        for k in [k for k in out if k.startswith("head.head.conv_seg.")]:
            dropped.append((origin.pop(k), "SegFormer's decode_head.conv_seg, unused by its forward"))
            del out[k]
    return Converted(fmt, out, origin, unmatched, dropped, notes)


def _fuse_kv(out: StateDict, origin: Dict[str, str]) -> None:
    """HF keeps key and value as two Linears; pvtseg (like the official code) fuses them: kv = [k; v]."""
    for k_key in [k for k in out if ".attn.k." in k]:
        v_key = k_key.replace(".attn.k.", ".attn.v.")
        kv_key = k_key.replace(".attn.k.", ".attn.kv.")
        if v_key not in out:
            continue
        out[kv_key] = torch.cat([out.pop(k_key), out.pop(v_key)], dim=0)
        origin[kv_key] = f"{origin.pop(k_key)} + {origin.pop(v_key)}"


# --------------------------------------------------------------------------------------------
# Architecture guess (for error messages)
# --------------------------------------------------------------------------------------------
def guess_architecture(canon: Mapping[str, Tensor]) -> Optional[str]:
    """The registered backbone name whose configuration these canonical weights fit, if any."""
    from . import pvt_v1, pvt_v2

    try:
        dims = tuple(int(canon[f"backbone.stages.{i}.patch_embed.proj.weight"].shape[0]) for i in range(4))
    except KeyError:
        return None
    depths = []
    for i in range(4):
        blocks = {int(m.group(1)) for k in canon
                  for m in [re.match(rf"backbone\.stages\.{i}\.blocks\.(\d+)\.", k)] if m}
        depths.append(max(blocks) + 1 if blocks else 0)
    ratios = []
    for i in range(4):
        w = canon.get(f"backbone.stages.{i}.blocks.0.mlp.fc1.weight")
        ratios.append(float(w.shape[0]) / dims[i] if w is not None else 0.0)
    v1 = any(k.endswith(".pos_embed") for k in canon)
    linear = "backbone.stages.3.blocks.0.attn.sr.weight" in canon
    configs = pvt_v1.CONFIGS if v1 else pvt_v2.CONFIGS
    for name, cfg in configs.items():
        if (tuple(cfg["embed_dims"]) == dims and tuple(cfg["depths"]) == tuple(depths)
                and tuple(float(r) for r in cfg.get("mlp_ratios", (8, 8, 4, 4))) == tuple(ratios)
                and bool(cfg.get("linear", False)) == linear):
            return name
    return None


def _describe(canon: Mapping[str, Tensor]) -> str:
    try:
        dims = [int(canon[f"backbone.stages.{i}.patch_embed.proj.weight"].shape[0]) for i in range(4)]
    except KeyError:
        return "no backbone"
    depths = [len({k.split(".")[4] for k in canon if k.startswith(f"backbone.stages.{i}.blocks.")})
              for i in range(4)]
    return f"embed dims {dims}, depths {depths}"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def _part(key: str, classifier_only: Tuple[str, ...] = _CLASSIFIER_ONLY) -> str:
    if key.startswith(classifier_only):
        return "classifier"
    if key.startswith("backbone."):
        return "backbone"
    if key.startswith("head."):
        return "seg_head"
    return "other"


def _head_kind(keys: Sequence[str]) -> Optional[str]:
    if any(k.startswith("head.neck.") or k.startswith("head.head.") for k in keys):
        return "fpn"
    if any(k.startswith("head.linear_") for k in keys):
        return "segformer"
    return None


def _is_own_layout(sd: Mapping[str, Tensor], model: nn.Module) -> bool:
    """The model's own state_dict() layout (any backbone family): at least half the keys are the
    model's keys, or its backbone's keys (classifier <-> segmentor). Only tried for layouts that
    detect_format does not know (timm's block keys equal pvtseg's, for one)."""
    model_keys = set(model.state_dict())
    variants = [model_keys, {"backbone." + k for k in model_keys},
                {k[len("backbone."):] for k in model_keys if k.startswith("backbone.")}]
    keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    if not keys:
        return False
    return any(sum(k in v for k in keys) >= 0.5 * len(keys) for v in variants)


def _is_segmentor(model: nn.Module) -> bool:
    return hasattr(model, "backbone") and hasattr(model, "head") and hasattr(model.backbone, "forward_features")


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
    notes: List[str] = []
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = str(path_or_state_dict)
        raw = read_checkpoint(path_or_state_dict)
    elif isinstance(path_or_state_dict, Mapping):
        source = "<state dict>"
        raw = path_or_state_dict
    else:
        raise CheckpointError(
            f"load_checkpoint takes a file path or a state dict, got {type(path_or_state_dict).__name__}")
    sd = unwrap_state_dict(raw, notes)
    try:
        fmt = detect_format(sd)
    except CheckpointError:
        if not _is_own_layout(sd, model):
            raise
        fmt = "pvtseg"  # another backbone family's own state_dict()
    conv = convert_state_dict(sd, fmt)
    notes += conv.notes
    canon = OrderedDict(conv.tensors)
    dropped = list(conv.dropped)
    origin = conv.origin

    segmentor = _is_segmentor(model)
    model_sd = model.state_dict()
    # canonical key -> model key
    to_model = {("" if segmentor else "backbone.") + k: k for k in model_sd}
    model_keys = set(to_model)
    backbone = model.backbone if segmentor else model
    cls_only = _CLASSIFIER_ONLY + tuple("backbone." + p for p in getattr(backbone, "classifier_only_prefixes", ()))

    # 1. Parts this model has no place for.
    model_head = _head_kind(list(model_keys))
    ckpt_head = _head_kind([k for k in canon if k.startswith("head.")])
    for key in list(canon):
        part = _part(key, cls_only)
        if key in model_keys:
            continue
        if part == "classifier":
            dropped.append((origin[key], "classification-only (ImageNet classifier / class token / final norm), "
                                         "not part of this model"))
            del canon[key]
        elif part == "seg_head" and model_head is None:
            dropped.append((origin[key], "segmentation head; this model is a classifier/backbone"))
            del canon[key]
    if ckpt_head and model_head and ckpt_head != model_head:
        msg = (f"the checkpoint has a {_HEAD_NAMES[ckpt_head]} head, the model a {_HEAD_NAMES[model_head]} head")
        if strict:
            raise CheckpointError(
                f"{msg}: create the model as '<backbone>_{ckpt_head}' to use it, or pass strict=False to load "
                "the backbone only")
        notes.append(msg + "; loaded the backbone only")
        for key in [k for k in canon if k.startswith("head.")]:
            dropped.append((origin[key], f"{_HEAD_NAMES[ckpt_head]} head, the model has another head"))
            del canon[key]
    if drop_head:
        for key in [k for k in canon if k.startswith(_FINAL_LAYERS)]:
            dropped.append((origin[key], "final classification layer (drop_head=True)"))
            del canon[key]

    # 2. Shapes, all checked before anything is copied.
    regrid: Dict[str, Tuple[int, int]] = {}
    mismatches: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = []
    for key, value in canon.items():
        if key not in model_keys:
            continue
        want = tuple(model_sd[to_model[key]].shape)
        got = tuple(value.shape)
        if want == got:
            continue
        grid = _pos_embed_grid(key, got, want)
        if grid is not None:
            regrid[key] = grid
            continue
        mismatches.append((key, got, want))
    if mismatches:
        raise CheckpointError(_mismatch_message(mismatches, canon, model, segmentor, to_model))

    # 3. Missing / unexpected.
    present_parts = {_part(k, cls_only) for k in canon}
    allowed_missing = set()
    for key in model_keys:
        part = _part(key, cls_only)
        if part not in present_parts and part in ("seg_head", "classifier"):
            allowed_missing.add(key)
        if drop_head and key.startswith(_FINAL_LAYERS):
            allowed_missing.add(key)
        if key.endswith("num_batches_tracked"):
            allowed_missing.add(key)
    missing = [k for k in to_model if k not in canon]  # the model's own order
    hard_missing = [k for k in missing if k not in allowed_missing]
    unexpected_canon = [k for k in canon if k not in model_keys]
    unexpected = [origin[k] for k in unexpected_canon] + conv.unmatched
    if strict and (hard_missing or unexpected):
        raise CheckpointError(_strict_message(hard_missing, unexpected, canon, model, segmentor, to_model, conv.format))
    if "seg_head" not in present_parts and model_head is not None:
        notes.append("backbone-only checkpoint: the segmentation head keeps its initialisation")

    # 4. Copy.
    for key, grid in regrid.items():
        module_path = to_model[key].rsplit(".", 1)[0]
        model.get_submodule(module_path).set_grid(*grid)  # type: ignore[operator]
        notes.append(f"{to_model[key]}: adopted the checkpoint's {grid[0]}x{grid[1]} grid "
                     "(other input sizes interpolate it at run time)")
    to_load = {to_model[k]: v for k, v in canon.items() if k in model_keys}
    result = model.load_state_dict(to_load, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    report = LoadReport(
        format=conv.format, source=source, loaded=list(to_load),
        missing=[to_model[k] for k in missing if not k.endswith("num_batches_tracked")],
        unexpected=unexpected, dropped=dropped, notes=notes)
    log.info("%s", report)
    return report


_HEAD_NAMES = {"fpn": "Semantic FPN", "segformer": "SegFormer All-MLP"}


def _natural(name: str) -> List[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _pos_embed_grid(key: str, got: Tuple[int, ...], want: Tuple[int, ...]) -> Optional[Tuple[int, int]]:
    """For a PVT v1 pos_embed of another (square) grid: that grid, else None."""
    m = re.match(r"backbone\.stages\.(\d)\.pos_embed$", key)
    if not m or len(got) != 3 or len(want) != 3 or got[0] != 1 or got[2] != want[2]:
        return None
    prefix = 1 if int(m.group(1)) == 3 else 0
    n = got[1] - prefix
    side = math.isqrt(n) if n > 0 else 0
    if side * side != n:
        return None
    return side, side


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "pvtseg_name", type(model).__name__))


def _suggest_name(canon: Mapping[str, Tensor], model: nn.Module, segmentor: bool) -> Optional[str]:
    arch = guess_architecture(canon)
    if arch is None:
        return None
    name = _model_name(model)
    for suffix in ("_fpn", "_segformer"):
        if segmentor and name.endswith(suffix):
            return arch + suffix
    return arch


def _mismatch_message(mismatches, canon, model, segmentor, to_model) -> str:
    lines = [f"checkpoint does not fit {_model_name(model)}: {len(mismatches)} shape mismatch(es)"]
    for key, got, want in mismatches[:8]:
        lines.append(f"  {to_model[key]}: checkpoint {got} vs model {want}")
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
    suggestion = _suggest_name(canon, model, segmentor)
    if suggestion and suggestion != _model_name(model):
        lines.append(f"the weights look like {suggestion} ({_describe(canon)}): "
                     f"create_model({suggestion!r}, ...) instead")
    elif not head:
        what = _describe(canon)
        what = f"have {what}" if what != "no backbone" else "come from another model or configuration"
        lines.append(f"the weights {what}: create the model they were trained with (`pvtseg models` lists them)")
    return "\n".join(lines)


def _strict_message(missing, unexpected, canon, model, segmentor, to_model, fmt) -> str:
    lines = [f"checkpoint ({fmt}) does not match {_model_name(model)} exactly:"]
    if missing:
        lines.append(f"  missing {len(missing)}: {_names([to_model[k] for k in missing])}")
    if unexpected:
        lines.append(f"  unexpected {len(unexpected)}: {_names(unexpected)}")
    suggestion = _suggest_name(canon, model, segmentor)
    if suggestion and suggestion != _model_name(model):
        lines.append(f"the weights look like {suggestion} ({_describe(canon)}): create_model({suggestion!r}, ...)")
    lines.append("pass strict=False to load what matches and get the rest listed in the report")
    return "\n".join(lines)



def _register_extra_formats() -> None:
    """Swin / MobileViT / DAT layouts (HF, official) live in checkpoints_extra.py."""
    import functools

    from .checkpoints_extra import FORMAT_DESCRIPTIONS, detect_extra_format, to_canonical

    for fmt, text in FORMAT_DESCRIPTIONS.items():
        register_format(fmt, text, lambda sd, f=fmt: detect_extra_format(sd) == f,
                        functools.partial(to_canonical, fmt=fmt))


_register_extra_formats()

__all__ = ["FORMATS", "LoadReport", "Converted", "load_checkpoint", "read_checkpoint", "unwrap_state_dict",
           "detect_format", "convert_state_dict", "guess_architecture", "register_format"]
