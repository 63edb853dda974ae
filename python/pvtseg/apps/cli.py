"""`pvtseg <command> ...`: one entry point; each command lives in its own module.

Every command module exposes `main(argv: list[str] | None) -> int`; modules are imported
lazily so `pvtseg demo` on a Jetson never imports training or export dependencies.
"""

from __future__ import annotations

import importlib
import sys
from typing import List, Optional

COMMANDS = {
    "models": ("pvtseg.apps.list_models", "list registered models with params and GFLOPs"),
    "export": ("pvtseg.export.cli", "export TorchScript / ONNX + sidecar, with a parity self-check"),
    "build-engine": ("pvtseg.engine.cli", "build a TensorRT engine from an exported ONNX"),
    "demo": ("pvtseg.apps.demo", "live segmentation on a camera / video / stream"),
    "bench": ("pvtseg.apps.bench", "benchmark backends against a reference in the same run"),
    "train": ("pvtseg.training.train", "train a segmentor on CamVid"),
    "eval": ("pvtseg.training.evaluate", "mIoU / per-class IoU / confusion matrix on a dataset split"),
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
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
