"""`pvtseg build-engine` = python/build_engine.py: an exported ONNX -> a TensorRT engine + sidecar.

    build_engine.py --onnx models/build/x.onnx --fp16 --engine models/build/x_fp16.engine

Inputs are checked before TensorRT is imported, so every mistake gets one clear line,
even on a machine without TensorRT. `--plan-only --trt-version 10.3` prints what would be
done (flags, FP32 islands, profile) without TensorRT or a GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import meta as meta_mod
from ..errors import PvtsegError
from .plan import make_plan, make_profile

PROG = "pvtseg build-engine"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="exported ONNX (with its .json sidecar beside it)")
    p.add_argument("--engine", help="output engine path (default: the ONNX path with .engine, "
                                    "'_fp16.engine' with --fp16)")
    p.add_argument("--fp16", action="store_true",
                   help="FP16 with FP32 LayerNorm/Softmax/reductions/final argmax (mechanism chosen by version)")
    p.add_argument("--workspace", type=int, metavar="MB", help="builder workspace limit in MiB")
    p.add_argument("--timing-cache", metavar="FILE", help="read / update a timing cache (faster rebuilds)")
    p.add_argument("--min", dest="min_shape", metavar="NxCxHxW", help="smallest input of a dynamic ONNX")
    p.add_argument("--opt", dest="opt_shape", metavar="NxCxHxW", help="input size to tune for")
    p.add_argument("--max", dest="max_shape", metavar="NxCxHxW", help="largest input of a dynamic ONNX")
    p.add_argument("--dla-core", type=int, metavar="N", help="build for DLA core N (Jetson Xavier/Orin; needs --fp16)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    p.add_argument("--plan-only", action="store_true",
                   help="print the build plan and exit (no TensorRT needed with --trt-version)")
    p.add_argument("--trt-version", help="plan for this TensorRT version instead of the installed one "
                                         "(with --plan-only)")
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
        return None
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        return f"{path} is not a readable ONNX model ({type(e).__name__}); re-export it with `pvtseg export`"
    return None


def _onnx_input(path: Path) -> Tuple[Optional[str], Optional[List[Any]]]:
    try:
        import onnx
    except ImportError:
        return None, None
    model = onnx.load(str(path), load_external_data=False)
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    return inp.name, dims


def plan_summary(onnx_path: Path, meta: Dict[str, Any], args: argparse.Namespace, version: str) -> List[str]:
    name, dims = _onnx_input(onnx_path)
    profile = None
    if dims is not None and name is not None:
        profile = make_profile(name, dims, min_shape=args.min_shape, opt_shape=args.opt_shape,
                               max_shape=args.max_shape, meta=meta)
    plan = make_plan(version, fp16=args.fp16, workspace_mb=args.workspace, dla_core=args.dla_core,
                     timing_cache=args.timing_cache, profile=profile)
    lines = [f"TensorRT {plan.version}: precision {plan.precision}",
             f"  network flags: {', '.join(plan.network_flags) or '-'}",
             f"  builder flags: {', '.join(plan.builder_flags) or '-'}"]
    if plan.fp16_mechanism:
        lines.append(f"  fp16 mechanism: {plan.fp16_mechanism}")
        try:
            import onnx

            from .fp16_onnx import island_node_names

            islands = island_node_names(onnx.load(str(onnx_path)))
            lines.append(f"  FP32 islands: {len(islands)} ONNX nodes")
        except ImportError:
            pass
    if profile is not None:
        fmt = lambda s: "x".join(map(str, s))  # noqa: E731
        lines.append(f"  profile {profile.input_name}: min {fmt(profile.min)} opt {fmt(profile.opt)} "
                     f"max {fmt(profile.max)}")
    lines += [f"  note: {n}" for n in plan.notes]
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    onnx_path = Path(args.onnx)
    err = check_onnx_file(onnx_path)
    if err:
        return _fail(err)
    engine = Path(args.engine) if args.engine else onnx_path.with_name(
        onnx_path.stem + ("_fp16" if args.fp16 else "") + ".engine")
    if engine.suffix != ".engine":
        return _fail(f"--engine {engine}: use the .engine suffix (runtimes pick the backend from it)")
    if args.trt_version and not args.plan_only:
        return _fail("--trt-version only goes with --plan-only (a real build uses the installed TensorRT)")
    try:
        meta = meta_mod.read(onnx_path)
        if args.plan_only:
            version = args.trt_version
            if version is None:
                from .builder import import_tensorrt

                version = str(import_tensorrt().__version__)
            print("\n".join(plan_summary(onnx_path, meta, args, version)))
            return 0
        # Validate the plan's inputs before anything slow (no TensorRT needed for this).
        make_plan("10.0", fp16=args.fp16, workspace_mb=args.workspace, dla_core=args.dla_core)
        name, dims = _onnx_input(onnx_path)
        if name is not None and dims is not None:
            make_profile(name, dims, min_shape=args.min_shape, opt_shape=args.opt_shape,
                         max_shape=args.max_shape, meta=meta)
        from .builder import build_engine

        build_engine(onnx_path, engine, fp16=args.fp16, workspace_mb=args.workspace,
                     timing_cache=args.timing_cache, min_shape=args.min_shape, opt_shape=args.opt_shape,
                     max_shape=args.max_shape, dla_core=args.dla_core, verbose=args.verbose, meta=meta)
    except PvtsegError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted; no engine was written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
