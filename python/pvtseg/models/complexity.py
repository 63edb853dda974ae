"""Parameter and FLOP counts without running any real arithmetic.

The model is built on PyTorch's "meta" device (shapes only, no memory, no weight init cost)
and run once under torch.utils.flop_counter.FlopCounterMode, which records the FLOPs of
every convolution, linear layer and (batched) matmul, attention included. Like the PVT,
PVT v2 and SegFormer papers (mmcv / fvcore counters) we report one multiply-accumulate as
one FLOP, so GFLOPs here = multiply-accumulates / 1e9; element-wise work (norms,
activations, softmax, interpolation) is not counted.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Complexity:
    name: str
    kind: str
    params: int
    flops: int                      # multiply-accumulates, see the module docstring
    input_size: Tuple[int, int]

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: Tuple[int, int] = (512, 512), batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass of `model` on a (batch, 3, H, W) input.

    Use a model on the meta device: it costs no arithmetic, and attention is counted (on CPU,
    scaled_dot_product_attention runs a fused kernel that FlopCounterMode does not see).
    Identical blocks of a ModuleList that get inputs of the same shape are run once and
    their count reused, which makes deep models (40-block stages) fast to count.
    """
    device = next(model.parameters()).device
    x = torch.empty(batch, 3, int(input_size[0]), int(input_size[1]), device=device)
    counter = FlopCounterMode(display=False)
    reused = [0]
    restore = _memoize_repeated_blocks(model, counter, reused) if device.type == "meta" else []
    was_training = model.training
    model.eval()
    try:
        with counter, torch.no_grad(), torch.device(device):
            model(x)
    finally:
        model.train(was_training)
        for module in restore:
            del module.forward  # back to the class's forward
    # FlopCounterMode counts a multiply-add as 2 FLOPs.
    return (int(counter.get_total_flops()) + reused[0]) // 2


def _signature(module: nn.Module) -> Tuple[Any, ...]:
    return (type(module), repr(module), tuple((n, tuple(p.shape)) for n, p in module.named_parameters()))


def _arg_key(args: Tuple[Any, ...]) -> Optional[Tuple[Any, ...]]:
    key: List[Any] = []
    for a in args:
        if isinstance(a, torch.Tensor):
            key.append(("T", tuple(a.shape), a.dtype))
        elif isinstance(a, (int, float, bool, str)) or a is None:
            key.append(a)
        else:
            return None
    return tuple(key)


def _memoize_repeated_blocks(model: nn.Module, counter: FlopCounterMode, reused: list) -> list:
    """Wrap the elements of every ModuleList so a repeat (same structure, same input shapes)
    adds the first one's FLOPs and returns an empty tensor of its output shape."""
    cache: Dict[Any, Tuple[int, Tuple[int, ...], torch.dtype]] = {}
    wrapped = []
    for mlist in model.modules():
        if not isinstance(mlist, nn.ModuleList):
            continue
        for block in mlist:
            sig = _signature(block)
            original = block.forward

            def forward(*args: Any, _orig=original, _sig=sig, **kwargs: Any) -> Any:
                akey = _arg_key(args) if not kwargs else None
                key = None if akey is None else (_sig, akey)
                if key is not None and key in cache:
                    flops, shape, dtype = cache[key]
                    reused[0] += flops
                    return torch.empty(shape, dtype=dtype, device="meta")
                before = counter.get_total_flops()
                out = _orig(*args, **kwargs)
                if key is not None and isinstance(out, torch.Tensor):
                    cache[key] = (counter.get_total_flops() - before, tuple(out.shape), out.dtype)
                return out

            block.forward = forward  # type: ignore[method-assign]
            wrapped.append(block)
    return wrapped


_INIT_FNS = ("trunc_normal_", "normal_", "uniform_", "zeros_", "ones_", "constant_", "kaiming_uniform_",
             "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_", "eye_", "dirac_")


@contextlib.contextmanager
def _skip_init():
    """Weight initialisation is meaningless on the meta device and costs most of the build time."""
    saved = {n: getattr(nn.init, n) for n in _INIT_FNS if hasattr(nn.init, n)}
    try:
        for n in saved:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


def model_complexity(name: str, input_size: Tuple[int, int] = (512, 512), with_flops: bool = True,
                     **kwargs: Any) -> Complexity:
    """Params and FLOPs of a registered model, built on the meta device (fast, no memory)."""
    from .registry import create_model, model_kind

    with torch.device("meta"), _skip_init():
        model = create_model(name, **kwargs)
    flops = count_flops(model, input_size) if with_flops else 0
    return Complexity(name, model_kind(name), count_params(model), flops, (int(input_size[0]), int(input_size[1])))


def complexity_table(pattern: str = "*", kind: Optional[str] = None, input_size: Tuple[int, int] = (512, 512),
                     with_flops: bool = True) -> Dict[str, Complexity]:
    from .registry import list_models

    return {n: model_complexity(n, input_size, with_flops) for n in list_models(pattern, kind=kind)}
