"""Export a segmentor to ONNX and TorchScript with its sidecar, and check the result.

    from pvtseg.export import export_model
    paths = export_model(model, "models/build/camvid_b0", height=384, width=480)
    # {"onnx": .../camvid_b0.onnx, "torchscript": .../camvid_b0.ts, "json": .../camvid_b0.json}

CLI: `pvtseg export --model pvt_v2_b0_segformer --checkpoint X --num-classes 11 --height 384
--width 480 --formats onnx,torchscript --out models/build/camvid_b0` (= python/export_model.py).

What it does:
- exact inference rewrites first (export/fuse.py: SegFormer decoder fold, BN folding, PVT v1
  position embeddings baked at the export size for static graphs);
- ONNX through the TorchScript-based exporter (`dynamo=False`): at opset 17 it gives one
  LayerNormalization per norm and, after onnxslim, static integer sizes in every Resize;
  it needs no onnxscript and is ~2x faster than the dynamo exporter here. Weights inside
  the file; the sidecar JSON is also stored in the ONNX metadata (key "pvtseg");
- TorchScript through torch.jit.script + freeze (the `output` attribute stays settable);
- self-check before anything is renamed into place: ONNX Runtime and the TorchScript file
  vs PyTorch eager (the unfused model) on a random input and a real CamVid frame: max abs
  logit diff <= 1e-4 and label agreement >= 99.9%, else ExportError and nothing is written;
- the files are one set (io_utils.AtomicSet): written to temporaries beside the targets,
  fsynced, then renamed sidecar first; the sidecar records each graph's sha256, which
  meta.read checks. A full disk, a read-only folder or an error leaves the previous set as
  it was. Before the slow work: the folder must be writable and have room, and the input
  size's estimated memory (export/memory.py) must fit in the available memory;
- the graph checked against each TensorRT version's parser contract (engine/contract.py): the
  log says which versions take it as exported or after build_engine.py adapts it; a warning
  names anything left.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .. import meta as meta_mod
from ..errors import ExportError, ExportMemoryError, InputShapeError
from ..io_utils import AtomicSet, check_free_space, check_writable, clean_stale_temps, guard_write, sha256_file  # noqa: F401 (sha256_file: public here)
from ..models import camvid

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts"}
MAX_LOGIT_DIFF = 1e-4
MIN_LABEL_AGREEMENT = 0.999
ONNX_2GB = 2 ** 31 - 1
_REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------------------------
# Model preparation
# --------------------------------------------------------------------------------------------

def dynamic_export_blockers(model: nn.Module) -> List[str]:
    """Reasons a model cannot export with dynamic height/width (empty list: it can).

    - AdaptiveAvgPool2d(k) with k > 1 (pvt_v2_b2_li's linear SRA pools every stage to 7x7):
      the pooling windows depend on the input size, which ONNX / TensorRT pooling needs fixed;
    - any module with a `dynamic_export_blocker` string attribute (backbones declare their own).
    """
    reasons: List[str] = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            size = mod.output_size
            sizes = (size, size) if isinstance(size, int) else tuple(size)
            if any(s not in (1, None) for s in sizes):
                reasons.append(f"{name or 'model'}: AdaptiveAvgPool2d({size}) pools to a fixed grid, so its "
                               "windows depend on the input size (ONNX/TensorRT pooling windows are fixed)")
        blocker = getattr(mod, "dynamic_export_blocker", None)
        if isinstance(blocker, str) and blocker:
            reasons.append(f"{name or 'model'}: {blocker}")
    # One line per distinct reason is enough.
    seen: Dict[str, str] = {}
    for r in reasons:
        seen.setdefault(r.split(": ", 1)[1], r)
    return list(seen.values())


def prepare_for_export(model: nn.Module, *, output: str = "labels", label_dtype: str = "uint8",
                       height: Optional[int] = None, width: Optional[int] = None, dynamic: bool = False,
                       fuse: bool = True) -> nn.Module:
    """An eval-mode copy set to `output`, with the exact inference rewrites applied."""
    from .fuse import bake_pos_embed, fuse_for_inference, static_adaptive_pool

    m = fuse_for_inference(model) if fuse else copy.deepcopy(model).eval()
    m.set_output(output, label_dtype)  # type: ignore[operator]
    if not dynamic and height is not None and width is not None:
        bake_pos_embed(m, height, width)
        static_adaptive_pool(m)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


# --------------------------------------------------------------------------------------------
# Inputs for the self-check
# --------------------------------------------------------------------------------------------

def find_sample_image() -> Optional[Path]:
    """A CamVid val frame: $PVTSEG_CAMVID/val/images or ../shared/data/camvid beside the repo."""
    roots = [os.environ.get("PVTSEG_CAMVID", ""), str(_REPO.parent / "shared" / "data" / "camvid"),
             "../shared/data/camvid"]
    for root in roots:
        if root:
            files = sorted(glob.glob(os.path.join(root, "val", "images", "*.jpg")))
            if files:
                return Path(files[0])
    return None


def preprocess_image(path: "str | os.PathLike[str]", height: int, width: int,
                     mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The sidecar's contract: BGR uint8 -> resize -> RGB -> [0, 1] -> (x - mean) / std -> 1x3xHxW."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ExportError(f"cannot read sample image {path}; pass sample_image= a readable .jpg/.png")
    rgb = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    x = (rgb.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------

def _export_onnx(m: nn.Module, *, batch: int, height: int, width: int, opset: int, dynamic: bool,
                 input_name: str, output_name: str, meta_json: str) -> Any:
    """The ONNX graph as an in-memory ModelProto (written later, with the rest of the set)."""
    import onnx

    x = torch.randn(batch, 3, height, width)
    dynamic_axes = None
    if dynamic:
        out_axes = {"labels": {0: "batch", 1: "height", 2: "width"},
                    "logits": {0: "batch", 2: "height", 3: "width"},
                    "logits_4x": {0: "batch", 2: "height_4", 3: "width_4"}}[str(m.output)]
        dynamic_axes = {input_name: {0: "batch", 2: "height", 3: "width"}, output_name: out_axes}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about baked python ints are expected
        torch.onnx.export(m, (x,), buf, opset_version=opset, dynamo=False, input_names=[input_name],
                          output_names=[output_name], dynamic_axes=dynamic_axes, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    try:
        import onnxslim

        model = onnxslim.slim(model)
    except ImportError:
        warnings.warn("onnxslim is not installed: the ONNX graph is not simplified (pip install onnxslim)")
    model.producer_name = "pvtseg"
    entry = model.metadata_props.add()
    entry.key, entry.value = "pvtseg", meta_json
    return model


def _stage_onnx(files: AtomicSet, model: Any, final: Path) -> Dict[str, Dict[str, Any]]:
    """Write the graph to a temporary of `files`; past protobuf's 2 GB limit the weights go to
    `<final>.data` beside it. Returns the sidecar's digests of what was written."""
    import onnx

    if model.ByteSize() <= ONNX_2GB:
        data = model.SerializeToString()
        files.write_bytes(final, data, "the ONNX graph")
        return {final.name: meta_mod.bytes_digest(data)}
    data_final = final.with_name(final.name + ".data")
    check_free_space(final.parent, model.ByteSize(), "the ONNX graph and its weights")
    folder = files.temp_dir(final)  # onnx.save writes the weights beside the graph, named `location`
    guard_write(lambda: onnx.save(model, str(folder / final.name), save_as_external_data=True,
                                  location=data_final.name), final, "the ONNX graph")
    digests = {}
    for f in (final, data_final):
        files.adopt(f, folder / f.name)
        digests[f.name] = meta_mod.file_digest(folder / f.name)
    return digests


def _torchscript_bytes(m: nn.Module) -> bytes:
    scripted = torch.jit.script(m)
    try:
        # num_classes stays readable so the runtime can check the sidecar against it.
        scripted = torch.jit.freeze(scripted, preserved_attrs=["output", "num_classes"])
    except Exception as e:  # freezing is an optimisation only
        warnings.warn(f"torch.jit.freeze failed ({e}); saving the unfrozen script")
    # Into memory, not a path: torch's C++ writer aborts the whole process on a full disk.
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------------------------

def _logits_onnx(model: Any) -> Any:
    """A copy of a labels graph that also outputs the logits the ArgMax reads."""
    import onnx

    g = onnx.ModelProto.FromString(model.SerializeToString())
    arg = next((n for n in g.graph.node if n.op_type == "ArgMax"), None)
    if arg is None:
        return None
    g.graph.output.append(onnx.helper.make_tensor_value_info(arg.input[0], onnx.TensorProto.FLOAT, None))
    return g


def _logits_session(ort: Any, graph: Any, onnx_path: Path, so: Any) -> Any:
    """An ONNX Runtime session of the logits copy: from its bytes, or, when its weights are
    external (past 2 GB: ONNX Runtime resolves them relative to the graph's file), from a file
    beside `onnx_path`, removed once the session has loaded the weights."""
    from onnx.external_data_helper import uses_external_data

    if not any(uses_external_data(t) for t in graph.graph.initializer):
        return ort.InferenceSession(graph.SerializeToString(), so, providers=["CPUExecutionProvider"])
    path = onnx_path.with_name(f".{onnx_path.name}.logits.onnx")
    path.write_bytes(graph.SerializeToString())
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    finally:
        path.unlink(missing_ok=True)


def _compare(name: str, ref_logits: np.ndarray, ref_labels: np.ndarray, logits: Optional[np.ndarray],
             labels: np.ndarray, report: List[str], failures: List[str]) -> None:
    agree = float((labels.astype(np.int64) == ref_labels.astype(np.int64)).mean())
    line = f"{name}: label agreement {agree * 100:.3f}%"
    if logits is not None:
        diff = float(np.abs(logits.astype(np.float64) - ref_logits).max())
        line = f"{name}: max |logit diff| {diff:.2e}, " + line.split(": ", 1)[1]
        if not diff <= MAX_LOGIT_DIFF:
            failures.append(f"{name}: max abs logit diff {diff:.2e} > {MAX_LOGIT_DIFF:.0e}")
    if agree < MIN_LABEL_AGREEMENT:
        failures.append(f"{name}: label agreement {agree * 100:.3f}% < {MIN_LABEL_AGREEMENT * 100:.1f}%")
    report.append(line)


def verify_artifacts(reference: nn.Module, paths: Dict[str, Path], inputs: List[Tuple[str, np.ndarray]], *,
                     output: str, onnx_model: Any = None) -> Tuple[List[str], List[str]]:
    """Compare the written artifacts with eager `reference` (any output mode) on `inputs`.

    Returns (report lines, failures). Logits are compared where the artifact exposes them
    (logits graphs; a labels ONNX through the ArgMax input; a TorchScript file by switching
    its `output` attribute), labels always.
    """
    report: List[str] = []
    failures: List[str] = []
    ref = copy.deepcopy(reference).eval()
    logits_mode = "logits_4x" if output == "logits_4x" else "logits"
    sessions = {}
    if "onnx" in paths:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sessions["onnx"] = ort.InferenceSession(str(paths["onnx"]), so, providers=["CPUExecutionProvider"])
        if output == "labels":
            if onnx_model is None:
                import onnx

                onnx_model = onnx.load(str(paths["onnx"]))
            lg = _logits_onnx(onnx_model)
            if lg is not None:
                sessions["onnx_logits"] = _logits_session(ort, lg, paths["onnx"], so)
    ts = torch.jit.load(str(paths["torchscript"])) if "torchscript" in paths else None
    for tag, x in inputs:
        xt = torch.from_numpy(x)
        with torch.no_grad():
            ref.set_output(logits_mode)  # type: ignore[operator]
            ref_logits = ref(xt).numpy().astype(np.float64)
        ref_labels = ref_logits.argmax(1)
        runners = [("onnxruntime", lambda: _onnx_outputs(sessions, x, output))] if "onnx" in sessions else []
        runners += [("torchscript", lambda: _torchscript_outputs(ts, xt, output))] if ts is not None else []
        for name, run in runners:
            try:
                logits, labels = run()
            except Exception as e:  # the artifact itself fails on this input: a failed check, not a crash
                failures.append(f"{name} {tag}: the artifact fails to run ({str(e).splitlines()[0][:300]})")
                continue
            _compare(f"{name} {tag}", ref_logits, ref_labels, logits, labels, report, failures)
    return report, failures


def _onnx_outputs(sessions: Dict[str, Any], x: np.ndarray, output: str) -> Tuple[Optional[np.ndarray], np.ndarray]:
    s = sessions["onnx"]
    iname = s.get_inputs()[0].name
    if output == "labels":
        labels = s.run(None, {iname: x})[0]
        logits = sessions["onnx_logits"].run(None, {iname: x})[1] if "onnx_logits" in sessions else None
        return logits, labels
    logits = s.run(None, {iname: x})[0]
    return logits, logits.argmax(1)


def _torchscript_outputs(ts: Any, xt: torch.Tensor, output: str) -> Tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        ts.output = output
        out = ts(xt).numpy()
        if output != "labels":
            return out, out.argmax(1)
        ts.output = "logits"
        logits = ts(xt).numpy()
        ts.output = output
        return logits, out


# --------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------

def default_dynamic_ranges(batch: int, height: int, width: int) -> Dict[str, List[int]]:
    def rng(n: int) -> List[int]:
        return [max(64, (n // 2) // 32 * 32), max(n, 2 * n)]

    return {"batch": [1, max(batch, 8)], "height": rng(height), "width": rng(width)}


def _base_path(out: "str | os.PathLike[str]") -> Path:
    p = Path(out)
    if p.suffix in (".onnx", ".ts", ".json", ".engine", ".pt"):
        p = p.with_suffix("")
    return p


def export_model(model: nn.Module, out: "str | os.PathLike[str]" = "models/build/model", *,
                 arch: str = "pvt_v2_b0_segformer", height: int = 384, width: int = 480,
                 formats: Sequence[str] = ("onnx", "torchscript"), output: str = "labels",
                 label_dtype: str = "uint8", batch: int = 1, dynamic: bool = False, opset: int = 17,
                 class_names: Optional[List[str]] = None, palette: Optional[List[List[int]]] = None,
                 mean: Optional[List[float]] = None, std: Optional[List[float]] = None,
                 checkpoint_sha256: Optional[str] = None, verify: bool = True,
                 sample_image: "str | os.PathLike[str] | None" = None, fuse: bool = True,
                 dynamic_ranges: Optional[Dict[str, List[int]]] = None, trt_check: bool = True,
                 check_memory: bool = True, log: Any = print) -> Dict[str, Path]:
    """Write `out`.onnx / `out`.ts / `out`.json as one set (io_utils.AtomicSet), after the self-check.

    Returns {"onnx": Path, "torchscript": Path, "json": Path} for the formats written.
    Raises ExportError when the artifacts disagree with PyTorch, ExportMemoryError when the
    input size needs more memory than is available (`check_memory=False` skips the check),
    WriteError / DiskSpaceError when the files cannot be written. Whatever fails, nothing
    is written and the previous files of `out` stay as they were.
    """
    formats = _check_request(model, arch, formats, height, width, batch, output, opset, dynamic)
    meta = _export_meta(model, arch=arch, height=height, width=width, formats=formats, output=output,
                        label_dtype=label_dtype, batch=batch, dynamic=dynamic, opset=opset, fuse=fuse,
                        class_names=class_names, palette=palette, mean=mean, std=std,
                        checkpoint_sha256=checkpoint_sha256, dynamic_ranges=dynamic_ranges)
    base = _base_path(out)
    _preflight(model, base, formats, batch, height, width, output, verify, check_memory, log)
    m = prepare_for_export(model, output=output, label_dtype=label_dtype, height=height, width=width,
                           dynamic=dynamic, fuse=fuse)
    finals = {f: base.with_suffix(SUFFIX[f]) for f in formats}
    json_path = base.with_suffix(".json")
    with AtomicSet() as files:
        digests, onnx_model = _stage_graphs(files, m, finals, meta, trt_check=trt_check, log=log)
        if verify:
            tmp = {f: files.temp(p) for f, p in finals.items()}
            meta["export"]["check"] = _self_check(model, tmp, meta, base.name, sample_image, onnx_model, log)
        meta[meta_mod.ARTIFACTS_KEY] = digests
        files.write_bytes(json_path, meta_mod.dumps(meta).encode("utf-8"), "the sidecar")
        # Sidecar first: from its rename on, a reader checks each graph against its digest.
        files.commit(first=[json_path])
    _note_stale_siblings(base, formats, log)
    result = dict(finals)
    result["json"] = json_path
    log("wrote " + ", ".join(str(p) for p in result.values()))
    return result


def _check_request(model: nn.Module, arch: str, formats: Sequence[str], height: int, width: int, batch: int,
                   output: str, opset: int, dynamic: bool) -> Tuple[str, ...]:
    """Refuse what cannot be exported before any work; returns the formats as a tuple."""
    if not hasattr(model, "set_output"):
        raise ExportError(f"{type(model).__name__} is not a pvtseg segmentor (no set_output); "
                          "create one with create_model('<backbone>_<fpn|segformer>', ...)")
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"unknown format(s) {bad or formats}; choose from {', '.join(FORMATS)}")
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise InputShapeError(f"--height/--width must be positive multiples of 32, got {height}x{width}; "
                              f"e.g. {max(32, round(height / 32) * 32)}x{max(32, round(width / 32) * 32)}")
    if batch < 1:
        raise InputShapeError(f"batch must be >= 1, got {batch}")
    if output not in ("labels", "logits", "logits_4x"):
        raise ExportError(f"output must be 'labels', 'logits' or 'logits_4x', got {output!r}")
    if opset < 17:
        raise ExportError(f"opset {opset} splits LayerNormalization into primitives; use --opset 17 or newer")
    if dynamic:
        blockers = dynamic_export_blockers(model)
        if blockers:
            raise ExportError(f"{arch} cannot be exported with dynamic height/width: " + "; ".join(blockers)
                              + ". Export a static graph per input size instead (drop --dynamic).")
    return formats


def _export_meta(model: nn.Module, *, arch: str, height: int, width: int, formats: Sequence[str], output: str,
                 label_dtype: str, batch: int, dynamic: bool, opset: int, fuse: bool,
                 class_names: Optional[List[str]], palette: Optional[List[List[int]]],
                 mean: Optional[List[float]], std: Optional[List[float]], checkpoint_sha256: Optional[str],
                 dynamic_ranges: Optional[Dict[str, List[int]]]) -> Dict[str, Any]:
    """The sidecar of this export (CamVid's names, colours and statistics by default for 11 classes)."""
    num_classes = int(getattr(model, "num_classes"))
    if class_names is None and palette is None and num_classes == camvid.NUM_CLASSES:
        class_names, palette = list(camvid.CLASS_NAMES), [list(c) for c in camvid.PALETTE]
    ranges = (dynamic_ranges or default_dynamic_ranges(batch, height, width)) if dynamic else None
    return meta_mod.make_meta(
        arch=arch, num_classes=num_classes, height=height, width=width,
        output_kind="labels" if output == "labels" else "logits",
        output_dtype=label_dtype if output == "labels" else "float32",
        class_names=class_names, palette=palette, mean=list(mean if mean is not None else camvid.MEAN),
        std=list(std if std is not None else camvid.STD), dynamic=ranges, precision="fp32",
        output_stride=4 if output == "logits_4x" else 1, checkpoint_sha256=checkpoint_sha256,
        input_name="input", output_name="labels" if output == "labels" else "logits", batch=batch,
        export={"opset": opset, "fused": fuse, "formats": list(formats), "exporter": "torch.onnx (dynamo=False)"})


def _preflight(model: nn.Module, base: Path, formats: Sequence[str], batch: int, height: int, width: int,
               output: str, verify: bool, check_memory: bool, log: Any) -> None:
    """Fail in seconds, not after minutes: the folder is writable, has room, the size fits in memory."""
    check_writable(base.parent, "into the output folder")
    clean_stale_temps(base.parent)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    check_free_space(base.parent, weights * len(formats), f"the export ({len(formats)} file(s) holding the "
                     f"{weights / 2 ** 20:.0f} MiB of weights)")
    if check_memory:
        _check_memory(model, batch, height, width, output, verify, log)


def _check_memory(model: nn.Module, batch: int, height: int, width: int, output: str, verify: bool,
                  log: Any) -> None:
    from .memory import available_memory, estimate_export_memory, gib

    try:
        est = estimate_export_memory(model, batch, height, width, output=output, verify=verify)
    except Exception as e:  # a model the meta device cannot run: the check is advisory, say so and go on
        log(f"note: could not estimate the export's memory ({type(e).__name__}: {e}); not checked")
        return
    avail = available_memory()
    log(f"memory: {batch}x3x{height}x{width} needs {est.describe()}"
        + (f"; {gib(avail)} available" if avail is not None else ""))
    if avail is not None and est.bytes > avail:
        raise ExportMemoryError(
            f"exporting at {batch}x3x{height}x{width} needs {est.describe()}, but only {gib(avail)} of memory is "
            "available (MemAvailable): it would swap for a long time or be killed. Export at a smaller "
            "--height/--width (the runtime resizes frames to the export size), free memory, or pass "
            "--force-size to try anyway.")


def _stage_graphs(files: AtomicSet, m: nn.Module, finals: Dict[str, Path], meta: Dict[str, Any], *,
                  trt_check: bool, log: Any) -> Tuple[Dict[str, Dict[str, Any]], Any]:
    """Export each format into a temporary of `files`; returns (digests, the ONNX ModelProto or None)."""
    inp = meta["input"]
    digests: Dict[str, Dict[str, Any]] = {}
    onnx_model = None
    if "onnx" in finals:
        onnx_model = _export_onnx(m, batch=int(meta["batch"]), height=inp["height"], width=inp["width"],
                                  opset=meta["export"]["opset"], dynamic=inp["dynamic"] is not None,
                                  input_name=inp["name"], output_name=meta["output"]["name"],
                                  meta_json=json.dumps(meta))
        _trt_warnings(onnx_model, trt_check, log)
        digests.update(_stage_onnx(files, onnx_model, finals["onnx"]))
    if "torchscript" in finals:
        data = _torchscript_bytes(m)
        files.write_bytes(finals["torchscript"], data, "the TorchScript file")
        digests[finals["torchscript"].name] = meta_mod.bytes_digest(data)
    return digests, onnx_model


def _trt_warnings(onnx_model: Any, trt_check: bool, log: Any) -> None:
    """Which TensorRT versions take the graph (as exported, or after build_engine.py adapts it,
    engine/contract.py + adapt.py); a warning for any version neither works on. Never fails."""
    if not trt_check:
        return
    try:
        from ..engine.adapt import tensorrt_report

        report = tensorrt_report(onnx_model)
    except Exception as e:  # a checker bug must not cost the user an export
        report = [("warning", f"TensorRT parser contract not checked ({type(e).__name__}: {e})")]
    for level, line in report:
        if level == "warning":
            warnings.warn(line)
        log(f"{level}: {line}")


def _self_check(reference: nn.Module, paths: Dict[str, Path], meta: Dict[str, Any], name: str,
                sample_image: Any, onnx_model: Any, log: Any) -> List[str]:
    """verify_artifacts on the temporaries; ExportError (nothing written) when they disagree."""
    inp = meta["input"]
    output = {"labels": "labels", "logits": "logits"}[meta["output"]["kind"]]
    if meta["output"]["stride"] == 4:
        output = "logits_4x"
    inputs = _check_inputs(int(meta["batch"]), inp["height"], inp["width"], inp["mean"], inp["std"], sample_image,
                           inp["dynamic"] is not None, inp["dynamic"], log)
    report, failures = verify_artifacts(reference, paths, inputs, output=output, onnx_model=onnx_model)
    for line in report:
        log(f"check {line}")
    if failures:
        raise ExportError(f"{name}: exported artifacts disagree with PyTorch: " + "; ".join(failures)
                          + ". Nothing was written. Try --no-fuse, or report the model/opset.")
    return report


def _note_stale_siblings(base: Path, formats: Sequence[str], log: Any) -> None:
    """An artifact of the same base name left by an earlier export is not described by the new sidecar."""
    for f in FORMATS:
        other = base.with_suffix(SUFFIX[f])
        if f not in formats and other.is_file():
            log(f"note: {other} is from an earlier export and does not match the new {base.name}.json; "
                f"delete it, or export again with --formats including {f}")


def _check_inputs(batch: int, height: int, width: int, mean: List[float], std: List[float],
                  sample_image: Any, dynamic: bool, ranges: Optional[Dict[str, List[int]]],
                  log: Any) -> List[Tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    inputs = [(f"random {batch}x3x{height}x{width}", rng.standard_normal((batch, 3, height, width)).astype(np.float32))]
    img = Path(sample_image) if sample_image else find_sample_image()
    if img is not None:
        try:
            x = preprocess_image(img, height, width, mean, std)
            inputs.append((f"frame {img.name}", np.ascontiguousarray(np.repeat(x, batch, axis=0))))
        except ImportError:
            log("note: OpenCV is not installed; the real-frame check is skipped (pip install opencv-python-headless)")
    else:
        log("note: no CamVid frame found (set PVTSEG_CAMVID); checked on random input only")
    if dynamic and ranges:
        # A second size proves no size was baked into the graph.
        h2 = height - 32 if height - 32 >= ranges["height"][0] else height + 32
        w2 = width + 32 if width + 32 <= ranges["width"][1] else width - 32
        b2 = 2 if ranges["batch"][1] >= 2 else 1
        inputs.append((f"random {b2}x3x{h2}x{w2}", rng.standard_normal((b2, 3, h2, w2)).astype(np.float32)))
    return inputs


