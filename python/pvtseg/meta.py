"""The sidecar: `x.json` beside every artifact (`x.onnx`, `x.ts`, `x.engine`).

Both runtimes read all preprocessing from it, so nothing is hard-coded there.
Preprocessing contract: frame BGR uint8 -> resize to (height, width) -> RGB ->
float32 in [0, 1] -> (x - mean) / std -> NCHW. `mean`/`std` are per RGB channel on
[0, 1] pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ArtifactMismatchError, MetaError
from .io_utils import atomic_write_text, sha256_file

SCHEMA_VERSION = 1
OUTPUT_KINDS = ("labels", "logits")
OUTPUT_DTYPES = ("uint8", "int32", "int64", "float32", "float16")
PRECISIONS = ("fp32", "fp16", "int8")
ARTIFACT_SUFFIXES = (".onnx", ".ts", ".engine", ".pth")


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """`models/build/x.onnx` -> `models/build/x.json`."""
    return Path(artifact).with_suffix(".json")


def make_meta(
    *,
    arch: str,
    num_classes: int,
    height: int,
    width: int,
    output_kind: str,
    output_dtype: str,
    class_names: list[str] | None = None,
    palette: list[list[int]] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    dynamic: dict[str, list[int]] | None = None,
    precision: str = "fp32",
    output_stride: int = 1,
    checkpoint_sha256: str | None = None,
    input_name: str = "input",
    output_name: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build a sidecar dict with defaults filled in; validated before it is returned."""
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    if palette is None:
        palette = default_palette(num_classes)
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "arch": arch,
        "num_classes": int(num_classes),
        "class_names": list(class_names),
        "palette": [list(map(int, c)) for c in palette],
        "input": {
            "name": input_name,
            "height": int(height),
            "width": int(width),
            "dynamic": dynamic,
            "dtype": "float32",
            "layout": "NCHW",
            "channel_order": "RGB",
            "mean": list(mean if mean is not None else [0.485, 0.456, 0.406]),
            "std": list(std if std is not None else [0.229, 0.224, 0.225]),
        },
        "output": {
            "name": output_name or ("labels" if output_kind == "labels" else "logits"),
            "kind": output_kind,
            "dtype": output_dtype,
            "stride": int(output_stride),
        },
        "precision": precision,
        "checkpoint_sha256": checkpoint_sha256,
        "pvtseg_version": __version__,
    }
    meta.update(extra)
    validate(meta)
    return meta


def default_palette(n: int) -> list[list[int]]:
    """A deterministic, well-spread palette (the PASCAL VOC bit trick) for n classes."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i + 1
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append([r, g, b])
    return out


def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise MetaError(f"{where}: {msg}. Re-export the model with `pvtseg export` to regenerate the sidecar.")


def validate(meta: Any, where: str = "sidecar") -> dict[str, Any]:
    """Check a sidecar dict against the schema; raise MetaError naming the bad field."""
    _require(isinstance(meta, dict), where, "top level must be a JSON object")
    for key in ("schema_version", "arch", "num_classes", "class_names", "palette", "input", "output", "precision"):
        _require(key in meta, where, f"missing field '{key}'")
    _require(meta["schema_version"] == SCHEMA_VERSION, where,
             f"schema_version {meta['schema_version']!r} is not supported (this pvtseg reads {SCHEMA_VERSION})")
    n = meta["num_classes"]
    _require(isinstance(n, int) and 1 <= n <= 255, where, f"num_classes must be an int in 1..255, got {n!r}")
    _require(isinstance(meta["class_names"], list) and len(meta["class_names"]) == n, where,
             f"class_names must list {n} names")
    pal = meta["palette"]
    _require(isinstance(pal, list) and len(pal) == n
             and all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                     for c in pal),
             where, f"palette must be {n} [r, g, b] triples of ints 0..255")
    inp = meta["input"]
    _require(isinstance(inp, dict), where, "'input' must be an object")
    for key in ("name", "height", "width", "mean", "std", "layout", "channel_order"):
        _require(key in inp, where, f"missing field 'input.{key}'")
    for key in ("height", "width"):
        v = inp[key]
        _require(isinstance(v, int) and v > 0 and v % 32 == 0, where,
                 f"input.{key} must be a positive multiple of 32, got {v!r}")
    for key in ("mean", "std"):
        v = inp[key]
        _require(isinstance(v, list) and len(v) == 3
                 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v),
                 where, f"input.{key} must be 3 finite numbers, got {v!r}")
    _require(all(s > 0 for s in inp["std"]), where, f"input.std must be positive, got {inp['std']!r}")
    _require(inp["layout"] == "NCHW", where, "input.layout must be NCHW")
    _require(inp["channel_order"] in ("RGB", "BGR"), where, "input.channel_order must be RGB or BGR")
    dyn = inp.get("dynamic")
    if dyn is not None:
        _require(isinstance(dyn, dict), where, "input.dynamic must be null or an object")
        for axis, rng in dyn.items():
            _require(axis in ("batch", "height", "width"), where, f"input.dynamic has unknown axis '{axis}'")
            _require(isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, int) for x in rng)
                     and 0 < rng[0] <= rng[1], where, f"input.dynamic.{axis} must be [min, max]")
            size = inp.get(axis, meta.get("batch", 1))  # the size the runtime feeds must be in range
            _require(rng[0] <= size <= rng[1], where, f"input.dynamic.{axis} {rng} does not contain {size}")
    _require(inp.get("dtype", "float32") in ("float32", "float16"), where, "input.dtype must be float32 or float16")
    _require(isinstance(inp["name"], str) and inp["name"] != "", where, "input.name must be a non-empty string")
    _require(isinstance(meta.get("batch", 1), int) and meta.get("batch", 1) >= 1, where, "batch must be an int >= 1")
    out = meta["output"]
    _require(isinstance(out, dict), where, "'output' must be an object")
    for key in ("name", "kind", "dtype", "stride"):
        _require(key in out, where, f"missing field 'output.{key}'")
    _require(isinstance(out["name"], str) and out["name"] != "", where, "output.name must be a non-empty string")
    _require(out["kind"] in OUTPUT_KINDS, where, f"output.kind must be one of {OUTPUT_KINDS}")
    _require(out["dtype"] in OUTPUT_DTYPES, where, f"output.dtype must be one of {OUTPUT_DTYPES}")
    _require(out["stride"] in (1, 4), where, "output.stride must be 1 (input size) or 4")
    _require(meta["precision"] in PRECISIONS, where, f"precision must be one of {PRECISIONS}")
    return meta


def dumps(meta: dict[str, Any]) -> str:
    """The sidecar's text (validated), as `write` stores it."""
    validate(meta)
    return json.dumps(meta, indent=2) + "\n"


def write(artifact_or_json: str | os.PathLike, meta: dict[str, Any], *, digest: bool = False) -> Path:
    """Validate and write the sidecar atomically beside the artifact. Returns its path.

    `digest=True` also records the artifact's size and sha256 under `artifacts` (the file
    must exist), so `read(artifact)` refuses another version of it; `meta` is not modified.
    """
    path = sidecar_path(artifact_or_json)
    if digest:
        meta = dict(meta)
        meta[ARTIFACTS_KEY] = {**meta.get(ARTIFACTS_KEY, {}), Path(artifact_or_json).name:
                               file_digest(artifact_or_json)}
    atomic_write_text(path, dumps(meta))
    return path


# `artifacts`: {file name: {"bytes": size, "sha256": hex}} for the graphs written with this
# sidecar. An export writes the sidecar and its graphs as one set (io_utils.AtomicSet), but a
# reader may look between two renames, or after a crash between them; the digest lets it
# tell a graph from another export instead of failing later on the first frame.
ARTIFACTS_KEY = "artifacts"


def bytes_digest(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_digest(path: str | os.PathLike) -> dict[str, Any]:
    return {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def check_artifact(artifact: str | os.PathLike, meta: dict[str, Any], where: str = "sidecar") -> None:
    """Raise MetaError when the sidecar records a digest for `artifact` and the file differs.

    Artifacts the sidecar does not list (older exports; an engine built beside the ONNX) pass.
    """
    listed = meta.get(ARTIFACTS_KEY)
    entry = listed.get(Path(artifact).name) if isinstance(listed, dict) else None
    if not isinstance(entry, dict) or not Path(artifact).is_file():
        return
    size = os.path.getsize(artifact)
    same = size == entry.get("bytes") and sha256_file(artifact) == entry.get("sha256")
    if not same:
        raise ArtifactMismatchError(
            f"{artifact} does not match its sidecar {where} ({size} bytes, the sidecar describes "
            f"{entry.get('bytes')} bytes with another sha256): the file was truncated, replaced, or an export "
            "into this folder was interrupted or is still running. Re-export the model with `pvtseg export` "
            f"(or, if you changed the file on purpose, remove its entry under '{ARTIFACTS_KEY}' in the sidecar).")


def read(artifact_or_json: str | os.PathLike) -> dict[str, Any]:
    """Read and validate the sidecar of an artifact (or a .json path directly)."""
    path = sidecar_path(artifact_or_json)
    if not path.is_file():
        raise MetaError(
            f"no sidecar {path} beside {artifact_or_json}: every artifact needs its JSON sidecar. "
            "Export with `pvtseg export` (it writes both) or copy the .json that came with the file.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MetaError(f"{path}: cannot parse JSON ({e}). Re-export the model to regenerate it.") from e
    validate(meta, where=str(path))
    if Path(artifact_or_json).suffix.lower() != ".json":
        check_artifact(artifact_or_json, meta, where=str(path))
    return meta
