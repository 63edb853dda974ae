"""`pvtseg <command> ...`: one entry point; each command lives in its own module.

Every command module exposes `main(argv: list[str] | None) -> int`; modules are imported
lazily so `pvtseg demo` on a Jetson never imports training or export dependencies.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, List, Optional

COMMANDS = {
    "models": ("pvtseg.apps.list_models", "list registered models with params and GFLOPs"),
    "export": ("pvtseg.export.cli", "export TorchScript / ONNX + sidecar, with a parity self-check"),
    "build-engine": ("pvtseg.engine.cli", "build a TensorRT engine from an exported ONNX"),
    "quantize": ("pvtseg.apps.quantize", "calibrated, accuracy-gated INT8 Q/DQ ONNX for TensorRT"),
    "demo": ("pvtseg.apps.demo", "live segmentation on a camera / video / stream"),
    "bench": ("pvtseg.apps.bench", "benchmark backends against a reference in the same run"),
    "train": ("pvtseg.training.train", "train / fine-tune on a dataset folder (CamVid, Cityscapes, ADE20K, yours); torchrun"),
    "eval": ("pvtseg.training.evaluate", "mIoU / per-class IoU / confusion matrix on a dataset split"),
    "doctor": ("pvtseg.apps.doctor", "what this machine can run (Jetson, CUDA, TensorRT, OpenCV) and what to install"),
    "ros2": ("pvtseg.apps.ros2", "ROS 2 node: sensor_msgs/Image in, class-id labels out"),
    "ros2-bench": ("pvtseg.apps.ros2_bench", "ROS 2 node latency (publish -> labels) vs a bare Segmenter"),
}


def _usage() -> str:
    lines = ["usage: pvtseg <command> [options]", "", "commands:"]
    lines += [f"  {name:<13} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "`pvtseg <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(cmd, list(COMMANDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"pvtseg: unknown command {cmd!r}.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[cmd][0])
    return call_main(module.main, f"pvtseg {cmd}", rest)


def call_main(main_fn: Callable[[Optional[List[str]]], Any], prog: str, argv: Optional[List[str]] = None) -> int:
    """Run a command's main; a filesystem error it did not handle (full disk, read-only folder,
    no permission, a missing file) becomes one line with the path and the cause, exit code 1.
    The scripts in python/ call their command through this too."""
    from ..io_utils import describe_os_error

    try:
        return int(main_fn(argv) or 0)
    except OSError as e:
        print(f"{prog}: error: {describe_os_error(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
