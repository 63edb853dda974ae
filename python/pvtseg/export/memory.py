"""How much memory an export at a given input size needs, measured without allocating it.

The model runs once at the requested size on PyTorch's "meta" device: every operator
computes its output shape but no data is allocated or computed, so even 8192x8192 takes
a second or two. A dispatch hook records, per operator, the bytes of the storages its
tensor inputs and outputs use (a view shares its input's storage and is not counted twice). The
largest such working set is what must be resident at once at the least; attention maps
make it grow with the square of the image area (PVT's stage-1 attention at 8192x8192 is
N x N/R^2 = 4M x 65K floats = 1 TiB), which a linear "activations per pixel" formula
would miss.

The estimate is that working set times an overhead plus the weights. With the self-check
on, ONNX Runtime (which materializes every attention map), the TorchScript file and the
eager reference each run the graph, and ONNX Runtime's arenas keep their memory between
runs: OVERHEAD_VERIFY = 6 fits the peak RSS of real `pvtseg export` runs of
pvt_v2_b0_segformer here (largest working set -> peak RSS: 384x480 0.09 -> 0.97 GiB,
768x768 0.28 -> 2.0 GiB, 1024x1024 0.50 -> 3.4 GiB; 6x the working set plus the ~0.5 GiB
a process with torch and onnxruntime holds anyway is within 10% above each).
Without the self-check only tracing runs (PyTorch's CPU attention kernels need not
materialize the map; 1024x1024 peaked at 0.65 GiB): OVERHEAD_TRACE = 1 stays on the safe side.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn as nn

OVERHEAD_VERIFY = 6.0
OVERHEAD_TRACE = 1.0
WEIGHT_COPIES = 4  # the model, its fused copy, the ONNX bytes, the TorchScript bytes


@dataclass(frozen=True)
class MemoryEstimate:
    bytes: int        # estimated peak the export needs
    largest_op: str   # the operator with the largest working set
    op_bytes: int     # that working set
    weight_bytes: int
    overhead: float

    def describe(self) -> str:
        return (f"~{gib(self.bytes)} (largest operator {self.largest_op}: {gib(self.op_bytes)} at once, "
                f"x{self.overhead:g} for the export's passes, + {WEIGHT_COPIES} x {gib(self.weight_bytes)} weights)")


def gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 28 else f"{n / 2 ** 20:.0f} MiB"


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _tensors(tree: Any) -> list:
    from torch.utils._pytree import tree_flatten

    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _recorder() -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        """Largest (inputs + newly allocated outputs) over the operators that run."""

        def __init__(self) -> None:
            super().__init__()
            self.peak, self.op = 0, "?"

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            # Count each storage once: views and in-place results share their input's storage.
            storages = {}
            for t in _tensors((args, kwargs)) + _tensors(out):
                st = t.untyped_storage()
                storages[st._cdata] = st.nbytes()
            total = sum(storages.values())
            if total > self.peak:
                self.peak, self.op = total, str(func.overloadpacket.__name__)
            return out

    return Recorder()


def estimate_export_memory(model: nn.Module, batch: int, height: int, width: int,
                           output: Optional[str] = None, verify: bool = True) -> MemoryEstimate:
    """Run `model` on a meta input of batch x 3 x height x width and size its peak (see module
    doc). `output`: the segmentor's output mode to size (default: as the model is set);
    `verify`: whether the export runs its self-check."""
    weights = sum(_nbytes(t) for t in model.state_dict().values())
    meta_model = copy.deepcopy(model).to("meta").eval()
    set_output = getattr(meta_model, "set_output", None)
    if output is not None and callable(set_output):
        set_output(output)
    rec = _recorder()
    with torch.no_grad(), rec:
        meta_model(torch.empty(batch, 3, height, width, device="meta"))
    overhead = OVERHEAD_VERIFY if verify else OVERHEAD_TRACE
    return MemoryEstimate(int(rec.peak * overhead + WEIGHT_COPIES * weights), rec.op, int(rec.peak), int(weights),
                          overhead)


def available_memory() -> Optional[int]:
    """Bytes this process can still get: MemAvailable, capped by a cgroup v2 limit if set."""
    avail: Optional[int] = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
        if limit != "max":
            room = max(0, int(limit) - used)
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    if avail is None and hasattr(os, "sysconf"):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pass
    return avail
