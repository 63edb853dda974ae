"""`pvtseg build-engine` = python/build_engine.py: an exported ONNX -> a TensorRT engine + sidecar.

    build_engine.py --onnx models/build/x.onnx --fp16 --engine models/build/x_fp16.engine
    build_engine.py --onnx models/build/x_int8.onnx --int8          # a Q/DQ graph (pvtseg quantize)
    build_engine.py --onnx x.onnx --fp16 --plan-only --trt-version 8.5 --save-onnx x_trt85.onnx

The graph is adapted to the installed TensorRT's ONNX parser first (engine/adapt.py).
`--plan-only` prints the whole plan (precision mechanism, FP32 layers by name, profile, every
adaptation) without building; it needs no TensorRT or GPU: with `--trt-version V` it plans
for V, with neither it plans for every supported version. `--save-onnx Y` writes the graph
handed to the parser (one file per version, `Y.trt<V>.onnx`, when planning for several).
Inputs are checked before TensorRT is imported, so every mistake gets one clear line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .. import meta as meta_mod
from ..errors import EngineError, PvtsegError
from .contract import VERSIONS
from .plan import DEFAULT_WORKSPACE_MB, make_plan, make_profile

PROG = "pvtseg build-engine"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="exported ONNX (with its .json sidecar beside it)")
    p.add_argument("--engine", help="output engine path (default: the ONNX path with .engine, "
                                    "'_fp16.engine' with --fp16, '_int8.engine' with --int8)")
    p.add_argument("--fp16", action="store_true",
                   help="FP16 with FP32 LayerNorm/Softmax/reductions/final argmax (mechanism chosen by version)")
    p.add_argument("--int8", action="store_true",
                   help="INT8 from a Q/DQ graph made by `pvtseg quantize` (explicit quantization only)")
    p.add_argument("--workspace", type=int, metavar="MB",
                   help=f"builder workspace limit in MiB (default {DEFAULT_WORKSPACE_MB}: fits an 8 GB Orin Nano)")
    p.add_argument("--timing-cache", metavar="FILE", help="read / update a timing cache (faster rebuilds)")
    p.add_argument("--min", dest="min_shape", metavar="NxCxHxW", help="smallest input of a dynamic ONNX")
    p.add_argument("--opt", dest="opt_shape", metavar="NxCxHxW", help="input size to tune for")
    p.add_argument("--max", dest="max_shape", metavar="NxCxHxW", help="largest input of a dynamic ONNX")
    p.add_argument("--dla-core", type=int, metavar="N", help="build for DLA core N (Jetson Xavier/Orin; needs "
                                                            "--fp16 or --int8)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    p.add_argument("--plan-only", action="store_true",
                   help="print the build plan and exit (no TensorRT or GPU needed)")
    p.add_argument("--trt-version", help="plan for this TensorRT version (e.g. 8.5, 10.3, 11.1) instead of the "
                                         "installed one (with --plan-only)")
    p.add_argument("--save-onnx", metavar="Y.onnx", help="also write the graph handed to the parser (+ sidecar)")
    return p


def _fail(msg: str) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def check_onnx_file(path: Path) -> Optional[str]:
    """None if `path` looks like an ONNX model, else a one-line reason with the fix."""
    if not path.exists():
        return f"ONNX file {path} does not exist; export one with `pvtseg export ... --formats onnx`"
    if not path.is_file():
        return f"{path} is not a file"
    if path.suffix != ".onnx":
        return f"{path} is not an .onnx file; pass the exported model (x.onnx)"
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        return f"cannot read {path}: {e.strerror}"
    # An ONNX ModelProto starts with field 1 (ir_version, varint): byte 0x08.
    if not head or head[0] != 0x08:
        return f"{path} is not an ONNX model (unexpected content); re-export it with `pvtseg export`"
    try:
        import onnx
    except ImportError:
        return "reading the ONNX graph needs the onnx package: `pip install onnx`"
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        return f"{path} is not a readable ONNX model ({type(e).__name__}); re-export it with `pvtseg export`"
    return None


def _plan_versions(args: argparse.Namespace) -> List[str]:
    """--trt-version, else the installed TensorRT, else every supported version."""
    if args.trt_version:
        return [args.trt_version]
    from .builder import import_tensorrt

    try:
        return [str(import_tensorrt().__version__)]
    except EngineError:
        print(f"TensorRT is not installed here: planning for every supported version ({', '.join(VERSIONS)}); "
              "pass --trt-version V for one")
        return ["11.0" if v == "11" else v for v in VERSIONS]


def _save_path(save: str, version: str, several: bool) -> Path:
    path = Path(save)
    return path.with_name(f"{path.stem}.trt{version}.onnx") if several else path


def plan_only(onnx_path: Path, meta: Dict[str, Any], args: argparse.Namespace) -> List[str]:
    """The plan of every version asked for (and the saved graphs); the lines printed."""
    from .prepare import describe, load_model, prepare_build, save_graph

    versions = _plan_versions(args)
    model = load_model(onnx_path)
    lines: List[str] = []
    for version in versions:
        prepared = prepare_build(onnx_path, version, fp16=args.fp16, int8=args.int8, workspace_mb=args.workspace,
                                 dla_core=args.dla_core, timing_cache=args.timing_cache, min_shape=args.min_shape,
                                 opt_shape=args.opt_shape, max_shape=args.max_shape, meta=meta, model=model)
        lines += describe(prepared)
        if args.save_onnx:
            saved = save_graph(prepared, _save_path(args.save_onnx, prepared.plan.contract, len(versions) > 1))
            lines.append(f"  saved: {saved} (exactly the graph handed to TensorRT {version}'s parser)")
    return lines


def _validate(onnx_path: Path, meta: Dict[str, Any], args: argparse.Namespace) -> None:
    """Every check that needs no TensorRT, before it is imported (one line per mistake)."""
    import onnx

    from .prepare import resolve_precision

    model = onnx.load(str(onnx_path), load_external_data=False)
    fp16, int8, _ = resolve_precision(model, onnx_path, fp16=args.fp16, int8=args.int8)
    make_plan("10.0", fp16=fp16, int8=int8, workspace_mb=args.workspace, dla_core=args.dla_core)
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    make_profile(inp.name, dims, min_shape=args.min_shape, opt_shape=args.opt_shape, max_shape=args.max_shape,
                 meta=meta)


def _default_engine(onnx_path: Path, args: argparse.Namespace) -> Path:
    tag = "_int8" if args.int8 else "_fp16" if args.fp16 else ""
    return onnx_path.with_name(onnx_path.stem + tag + ".engine")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    onnx_path = Path(args.onnx)
    err = check_onnx_file(onnx_path)
    if err:
        return _fail(err)
    engine = Path(args.engine) if args.engine else _default_engine(onnx_path, args)
    if engine.suffix != ".engine":
        return _fail(f"--engine {engine}: use the .engine suffix (runtimes pick the backend from it)")
    if args.trt_version and not args.plan_only:
        return _fail("--trt-version only goes with --plan-only (a real build uses the installed TensorRT)")
    if args.save_onnx and Path(args.save_onnx).suffix != ".onnx":
        return _fail(f"--save-onnx {args.save_onnx}: use the .onnx suffix")
    try:
        meta = meta_mod.read(onnx_path)
        if args.plan_only:
            print("\n".join(plan_only(onnx_path, meta, args)))
            return 0
        _validate(onnx_path, meta, args)
        from .builder import build_engine

        build_engine(onnx_path, engine, fp16=args.fp16, int8=args.int8, workspace_mb=args.workspace,
                     timing_cache=args.timing_cache, min_shape=args.min_shape, opt_shape=args.opt_shape,
                     max_shape=args.max_shape, dla_core=args.dla_core, verbose=args.verbose, meta=meta,
                     save_onnx=args.save_onnx)
    except PvtsegError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted; no engine was written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
