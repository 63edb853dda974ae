"""The FP16 island policy of fp16_onnx.py, applied to a PyTorch model in half precision.

`run_half_with_fp32_islands(model, x)` runs `model` with float16 weights and activations,
except the islands, which compute in float32 exactly as the converted ONNX graph does:
layer/group/instance norms, softmax (attention: QK^T and attn @ V stay FP16, the softmax
FP32), mean/sum reductions, the final upsample and argmax. It intercepts torch functions
(a TorchFunctionMode), so it applies to any backbone without knowing its modules. Used to
measure what the policy costs in accuracy (tests/test_fp16_onnx.py) on CPU or GPU.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


def _to(x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, Tensor) and x.is_floating_point():
        return x.to(dtype)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, dtype) for v in x)
    return x


def _sdpa_islands(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None, dropout_p: float = 0.0,
                  is_causal: bool = False, scale: Optional[float] = None, **_: Any) -> Tensor:
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q * s, k.transpose(-2, -1))             # FP16, like the ONNX MatMul
    if attn_mask is not None:
        scores = scores + attn_mask.to(scores.dtype)
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)   # FP32 island
    return torch.matmul(probs, v)


class Fp32Islands(TorchFunctionMode):
    """Inside this mode, island functions compute in float32 and return the input dtype."""

    FP32_FUNCS = {F.layer_norm, F.group_norm, F.instance_norm, F.softmax, F.log_softmax, torch.softmax,
                  torch.log_softmax, Tensor.softmax, Tensor.log_softmax, torch.mean, Tensor.mean,
                  torch.sum, Tensor.sum}

    def __torch_function__(self, func: Callable, types: Any, args: Any = (), kwargs: Optional[Dict] = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return _sdpa_islands(*args, **kwargs)
        if func in self.FP32_FUNCS:
            first = args[0] if args else None
            dtype = first.dtype if isinstance(first, Tensor) else None
            out = func(*_to(args, torch.float32), **_to(kwargs, torch.float32))
            if dtype in (torch.float16, torch.bfloat16) and isinstance(out, Tensor) and out.is_floating_point():
                out = out.to(dtype)
            return out
        return func(*args, **kwargs)


def half_model(model: nn.Module) -> nn.Module:
    """A float16 copy whose normalisation layers keep float32 parameters (they run as islands)."""
    m = copy.deepcopy(model).eval().half()
    for mod in m.modules():
        if isinstance(mod, (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)):
            mod.float()
    return m


@torch.no_grad()
def run_half_with_fp32_islands(model: nn.Module, x: Tensor, half: Optional[nn.Module] = None) -> Tensor:
    """Labels (B, H, W) from `model` (a pvtseg Segmentor) run in FP16 with the FP32 islands.

    The head runs in FP16 to logits at 1/4; the final upsample and argmax run in FP32.
    Pass `half=half_model(model)` to reuse the converted copy across calls.
    """
    m = half if half is not None else half_model(model)
    with Fp32Islands():
        feats = m.backbone.forward_features(x.half())  # type: ignore[operator,union-attr]
        logits = m.head(feats).float()  # type: ignore[operator]
    logits = F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
    return logits.argmax(1)


@torch.no_grad()
def run_fp32(model: nn.Module, x: Tensor) -> Tensor:
    m = model.eval()
    logits = m.head(m.backbone.forward_features(x.float()))  # type: ignore[operator,union-attr]
    return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False).argmax(1)
