"""Model registry: timm-style names -> constructors.

    create_model("pvt_v2_b0_segformer", num_classes=11, checkpoint="x.pth")
    list_models("pvt_v2_*")
"""

from __future__ import annotations

import difflib
import functools
import fnmatch
import os
from typing import Any, Callable, Dict, List, Optional, Union

import torch.nn as nn

from ..errors import ConfigError, ModelNotFoundError

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}
_KIND: Dict[str, str] = {}  # name -> "classifier" | "segmentor"


def register_model(name: str, kind: str = "classifier") -> Callable:
    """Decorator: register `fn(**kw) -> nn.Module` under `name`."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        _KIND[name] = kind
        return fn

    return deco


def register_configs(configs: Dict[str, Any], build: Callable[..., nn.Module]) -> None:
    """Register every name of a backbone family's config table as `build(name, **kw)`."""
    for name in configs:
        register_model(name, "classifier")(functools.partial(build, name))


def list_models(pattern: str = "*", kind: Optional[str] = None) -> List[str]:
    """Registered names matching a shell-style pattern (and optionally a kind), sorted."""
    _ensure_loaded()
    names = [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]
    if kind is not None:
        names = [n for n in names if _KIND[n] == kind]
    return sorted(names, key=_natural_key)


def model_kind(name: str) -> str:
    _ensure_loaded()
    _check_name(name)
    return _KIND[name]


def create_model(
    name: str,
    num_classes: Optional[int] = None,
    checkpoint: Union[str, os.PathLike, dict, None] = None,
    strict: bool = True,
    drop_head: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; optionally load a checkpoint in any supported format.

    `num_classes` defaults to 1000 for classifiers and 150 (ADE20K) for segmentors.
    `checkpoint` may be any format load_checkpoint understands; `strict` and `drop_head`
    (skip the checkpoint's final classification layer) are passed on to it.
    """
    _ensure_loaded()
    _check_name(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = _REGISTRY[name](**kwargs)
    model.pvtseg_name = name  # type: ignore[assignment]
    if checkpoint is not None:
        from .formats import load_checkpoint

        load_checkpoint(model, checkpoint, strict=strict, drop_head=drop_head)
    return model


def _check_name(name: str) -> None:
    if name in _REGISTRY:
        return
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"unknown model {name!r}.{hint} `pvtseg models` (or list_models()) prints every name.")


def _natural_key(name: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _ensure_loaded() -> None:
    # Importing the model modules runs their @register_model decorators.
    from . import dat, mobilevit, mswin, pvt_v1, pvt_v2, segmentor, swin  # noqa: F401
