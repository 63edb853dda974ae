"""Read any checkpoint file a user hands in, safely, and find the state dict inside.

    raw = read_checkpoint("x.pth")      # torch.save file, .safetensors, or a Hugging Face model folder
    sd = unwrap_state_dict(raw, notes)  # the dict of tensors inside ({'model': ...}, {'state_dict': ...}, ...)

Nothing here unpickles arbitrary objects: torch.save files are read with
`torch.load(weights_only=True)` (tensors and plain containers only; a short allow-list adds
argparse.Namespace and numpy scalars / numeric arrays, which carry no code), and
.safetensors files are parsed here, their header checked against the file size before a
single tensor is allocated. Every unreadable, truncated, malformed or code-carrying file
raises CheckpointError (CheckpointNotFoundError for a missing one) saying what to do.

pvtseg's own training checkpoints (`pvtseg train`: {"format": "pvtseg-train-v1", "model",
"ema", ...}) unwrap to their EMA weights when the run kept an EMA, else to the model's.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ...errors import CheckpointError, CheckpointNotFoundError
from .registry import StateDict, short_list

TRAINING_FORMAT = "pvtseg-train-v1"
_HF_FILES = ("model.safetensors", "pytorch_model.bin")
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net", "network")


def read_checkpoint(path: Union[str, os.PathLike]) -> Any:
    """Read a checkpoint file (torch.save with weights_only=True, or .safetensors) or a Hugging
    Face model folder; returns what the file holds (a state dict or a wrapper dict)."""
    p = _resolve(path)
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(p)!r} is empty (0 bytes); download or save it again")
    with open(p, "rb") as f:
        head = f.read(16)
    if p.suffix == ".safetensors" or _looks_like_safetensors(head):
        return read_safetensors(p)
    return _torch_load(p, head)


def _resolve(path: Union[str, os.PathLike]) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        found = next((p / name for name in _HF_FILES if (p / name).is_file()), None)
        if found is None:
            raise CheckpointNotFoundError(
                f"{str(path)!r} is a folder without {' or '.join(_HF_FILES)}; pass the checkpoint file itself")
        return found
    if not p.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint {str(path)!r} does not exist; check the path, or fetch the official ImageNet "
            "weights with `from pvtseg.models.zoo import download` (see `pvtseg models --weights`)")
    return p


# ---------------------------------------------------------------------------------------------
# .safetensors: 8-byte little-endian header length N, N bytes of JSON, then the data section.
# ---------------------------------------------------------------------------------------------
_ST_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_ST_DTYPES: Dict[str, torch.dtype] = {
    name: getattr(torch, attr) for name, attr in (
        ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"),
        ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("I64", "int64"), ("I32", "int32"),
        ("I16", "int16"), ("I8", "int8"), ("U64", "uint64"), ("U32", "uint32"), ("U16", "uint16"),
        ("U8", "uint8"), ("BOOL", "bool"))
    if hasattr(torch, attr)
}
_Entry = Tuple[str, torch.dtype, List[int], int, int]  # name, dtype, shape, begin, end (data-section offsets)


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return 2 <= n < (1 << 28) and head[8:9] == b"{"


def read_safetensors(path: Union[str, os.PathLike]) -> StateDict:
    """Read a .safetensors file. The header is validated against the file size first (offsets
    inside the data section, no overlaps, known dtypes, shape x dtype size = byte range), so a
    malformed file raises CheckpointError before any tensor is allocated."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        header, data_start = _st_header(f, p, size)
        entries = _st_entries(header, p, size - data_start)
        out: StateDict = OrderedDict()
        for name, dtype, shape, begin, end in entries:
            out[name] = _st_tensor(f, p, name, dtype, shape, data_start + begin, end - begin)
    return out


def _st_bad(p: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{str(p)!r} is not a valid .safetensors file: {what}; it may be truncated or "
                           "corrupt: download or save it again")


def _st_header(f: BinaryIO, p: Path, size: int) -> Tuple[Mapping[str, Any], int]:
    if size < 8:
        raise _st_bad(p, f"the file has {size} bytes, fewer than the 8-byte header length")
    n = struct.unpack("<Q", f.read(8))[0]
    if n > size - 8:
        raise _st_bad(p, f"its header claims {n} bytes but the file is {size} bytes long (truncated)")
    if n < 2 or n > _ST_MAX_HEADER:
        raise _st_bad(p, f"header length {n} is outside 2..{_ST_MAX_HEADER}")

    def no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise _st_bad(p, f"its header repeats the key(s) {sorted({k for k in keys if keys.count(k) > 1})[:3]}")
        return OrderedDict(pairs)

    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=no_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise _st_bad(p, f"its header is not JSON ({_first_line(str(e))})") from None
    if not isinstance(header, Mapping):
        raise _st_bad(p, f"its header is a JSON {type(header).__name__}, not an object")
    return header, 8 + n


def _st_entries(header: Mapping[str, Any], p: Path, data_size: int) -> List[_Entry]:
    entries = [_st_entry(p, name, info, data_size) for name, info in header.items() if name != "__metadata__"]
    if "__metadata__" in header and not isinstance(header["__metadata__"], Mapping):
        raise _st_bad(p, "__metadata__ is not a JSON object")
    # Like the safetensors library: the tensors tile the data section, no overlap, gap or tail.
    expected, last_name = 0, "the start"
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != expected:
            how = "overlaps" if begin < expected else "leaves a gap after"
            raise _st_bad(p, f"tensor {name!r} (bytes {begin}..{end}) {how} {last_name!r} in the data section")
        expected, last_name = end, name
    if expected != data_size:
        raise _st_bad(p, f"the tensors cover {expected} of the {data_size} bytes of the data section")
    return entries


def _st_entry(p: Path, name: str, info: Any, data_size: int) -> _Entry:
    if not isinstance(info, Mapping):
        raise _st_bad(p, f"entry {name!r} is not a JSON object")
    dtype_name = info.get("dtype")
    dtype = _ST_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise _st_bad(p, f"tensor {name!r} has unsupported dtype {dtype_name!r} "
                         f"(pvtseg reads {', '.join(_ST_DTYPES)})")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise _st_bad(p, f"tensor {name!r} has shape {shape!r}, not a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise _st_bad(p, f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise _st_bad(p, f"tensor {name!r} spans bytes {begin}..{end} of a {data_size}-byte data section "
                         "(truncated, or offsets out of range)")
    numel = 1
    for d in shape:
        numel *= d
    itemsize = dtype.itemsize
    if numel * itemsize != end - begin:
        raise _st_bad(p, f"tensor {name!r} of shape {shape} and dtype {dtype_name} needs {numel * itemsize} "
                         f"bytes but its data_offsets span {end - begin}")
    return name, dtype, shape, begin, end


def _st_tensor(f: BinaryIO, p: Path, name: str, dtype: torch.dtype, shape: List[int], offset: int,
               nbytes: int) -> Tensor:
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype)  # shape has a zero in it: nothing to allocate
    buf = bytearray(nbytes)  # nbytes <= the file's size (checked in _st_entry)
    f.seek(offset)
    if f.readinto(buf) != nbytes:  # type: ignore[attr-defined]
        raise _st_bad(p, f"tensor {name!r} could not be read whole (the file shrank while reading?)")
    return torch.frombuffer(buf, dtype=dtype).reshape(shape)


# ---------------------------------------------------------------------------------------------
# torch.save files: weights_only=True, never a fallback
# ---------------------------------------------------------------------------------------------
def _safe_extra_globals() -> List[Any]:
    """Harmless non-tensor objects found in real checkpoints, allowed on top of torch's
    weights_only set: DeiT saves its argparse Namespace, mmcv meta may hold numpy scalars,
    and `pvtseg train` checkpoints written before pvtseg stored RNG states as tensors hold a
    numeric numpy array. None of them runs code when rebuilt."""
    extra: List[Any] = [argparse.Namespace]
    try:
        import numpy as np

        try:
            from numpy._core.multiarray import _reconstruct, scalar  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import _reconstruct, scalar  # type: ignore
        numeric = {type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFD"}  # no object / void dtypes
        extra += [np.dtype, np.ndarray, _reconstruct, scalar, *sorted(numeric, key=str)]
    except ImportError:  # pragma: no cover
        pass
    return extra


def _torch_load(p: Path, head: bytes) -> Any:
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(p) as zf:
                zf.namelist()
        except zipfile.BadZipFile:
            raise CheckpointError(
                f"checkpoint {str(p)!r} is truncated or corrupt (its zip directory cannot be read); "
                "download or save it again") from None
    try:
        with warnings.catch_warnings():
            # Raised for plain pickles (protocol != 2) just before they are refused anyway.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            with torch.serialization.safe_globals(_safe_extra_globals()):
                return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the unpickler raises KeyError / IndexError / ... on arbitrary bytes
        raise _load_error(p, e) from None


def _load_error(p: Path, e: Exception) -> CheckpointError:
    """The CheckpointError that explains why torch.load(weights_only=True) refused `p`."""
    msg = str(e)
    if isinstance(e, pickle.UnpicklingError):
        # "Unsupported global: GLOBAL x.y ..." / "Trying to load unsupported GLOBAL x.y whose module ..."
        m = re.search(r"unsupported global:?\s+(?:GLOBAL\s+)?([\w.]+)", msg, re.I)
        if m:
            return CheckpointError(
                f"{str(p)!r} is not a plain checkpoint: it holds a Python object of type {m.group(1)} that "
                "weights_only loading refuses (unpickling it could run code). pvtseg never unpickles such "
                "objects; if you trust the file, extract its state dict yourself and torch.save that")
        detail_text = _first_line(_unpickler_detail(msg))
        if "truncated" in msg:
            return CheckpointError(f"checkpoint {str(p)!r} is truncated ({detail_text}); download or save it again")
        return CheckpointError(
            f"{str(p)!r} is not a PyTorch checkpoint (unpickling failed: {detail_text}); expected a torch.save "
            "file, .safetensors or a Hugging Face model folder")
    if isinstance(e, (EOFError, zipfile.BadZipFile)):
        return CheckpointError(f"checkpoint {str(p)!r} is truncated or corrupt ({type(e).__name__}: "
                               f"{_first_line(msg)}); download or save it again")
    if isinstance(e, RuntimeError):
        return CheckpointError(f"checkpoint {str(p)!r} is truncated, corrupt or not a PyTorch checkpoint "
                               f"({_first_line(msg)}); download or save it again")
    return CheckpointError(f"{str(p)!r} is not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(msg)})")


def _unpickler_detail(msg: str) -> str:
    """The paragraph of torch's weights_only error that says what failed (not its boilerplate)."""
    m = re.search(r"WeightsUnpickler error:\s*(.+)", msg)
    if m:
        return m.group(1)
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    paras = [x.strip() for x in msg.split("\n\n") if x.strip()]
    return next((x for x in paras if not x.startswith(boilerplate)), msg)


def _first_line(s: str) -> str:
    s = s.strip().splitlines()[0] if s.strip() else s
    return s[:300]


# ---------------------------------------------------------------------------------------------
# Unwrapping
# ---------------------------------------------------------------------------------------------
def is_training_checkpoint(obj: Any) -> bool:
    """A `pvtseg train` checkpoint (last.pth / best.pth)."""
    return isinstance(obj, Mapping) and obj.get("format") == TRAINING_FORMAT


def trained_model_name(obj: Any) -> Optional[str]:
    """The model name a `pvtseg train` checkpoint was trained as; None for any other object."""
    return str(obj.get("model_name")) if is_training_checkpoint(obj) else None


def _training_weights(obj: Mapping[str, Any], notes: List[str]) -> Any:
    ema = obj.get("ema")
    what = f"pvtseg training checkpoint of {obj.get('model_name')!r} (step {obj.get('global_iter', '?')})"
    if isinstance(ema, Mapping) and isinstance(ema.get("module"), Mapping):
        notes.append(f"{what}: took its EMA weights")
        return ema["module"]
    if not isinstance(obj.get("model"), Mapping):
        raise CheckpointError(f"{what} has no 'model' weights; it is damaged: use another checkpoint of the run")
    notes.append(f"{what}: took its model weights (the run kept no EMA)")
    return obj["model"]


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and any(isinstance(v, Tensor) for v in obj.values())
            and sum(isinstance(v, Tensor) for v in obj.values()) >= 0.5 * len(obj))


def _unwrap_path(obj: Any) -> Tuple[Any, List[str]]:
    """Follow wrapper keys ({'model': {...}}, {'state_dict': {...}}, ...) down to the tensors."""
    path: List[str] = []
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        inner = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if inner is None or (_is_state_dict(obj) and not _is_state_dict(obj[inner])):
            break
        path.append(inner)
        obj = obj[inner]
    return obj, path


def unwrap_state_dict(obj: Any, notes: Optional[List[str]] = None) -> StateDict:
    """The tensor dict inside a checkpoint object ({'model': sd}, {'state_dict': sd}, sd, a
    pvtseg training checkpoint, ...), without a DDP 'module.' prefix; notes say what was done."""
    notes = notes if notes is not None else []
    if is_training_checkpoint(obj):
        obj = _training_weights(obj, notes)
    obj, path = _unwrap_path(obj)
    if not _is_state_dict(obj):
        what = f"a dict with keys {short_list([str(k) for k in obj], 6)}" if isinstance(obj, Mapping) \
            else type(obj).__name__
        raise CheckpointError(
            f"not a checkpoint: found {what}, expected a dict of tensors (a state dict), possibly "
            f"wrapped as {{'model': ...}} or {{'state_dict': ...}}")
    if path:
        notes.append("unwrapped " + "".join(f"[{k!r}]" for k in path))
    sd: StateDict = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, Tensor))
    skipped = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if skipped:
        notes.append(f"ignored {len(skipped)} non-tensor entries: {short_list(skipped, 4)}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = OrderedDict((k[len("module."):], v) for k, v in sd.items())
        notes.append("stripped the DDP 'module.' prefix")
    return sd


__all__: Sequence[str] = ["TRAINING_FORMAT", "read_checkpoint", "read_safetensors", "unwrap_state_dict",
                          "is_training_checkpoint", "trained_model_name"]
