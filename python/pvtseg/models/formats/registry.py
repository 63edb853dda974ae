"""The registry of checkpoint formats: how each layout is recognised and converted.

Every format module of this package registers one `Format` per layout it knows:

    detect(state_dict) -> bool        the keys are in this layout (keys only, never the file name)
    convert(state_dict) -> Converted  the tensors in pvtseg's canonical namespace (below)
    description                        one line for reports and error messages

The canonical namespace is a segmentor's state dict: `backbone.` + the backbone's (or
classifier's) own keys, `head.` + the segmentation head's keys. load_checkpoint maps it
onto the model at hand (see loading.py).

Formats are tried in `priority` order (built-ins 10..120, in the order that resolves
layouts sharing key names); formats added with register_format() come after them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor

from ...errors import CheckpointError

StateDict = Dict[str, Tensor]
Dropped = List[Tuple[str, str]]  # (checkpoint key, why it was left out)


@dataclass
class Converted:
    """A checkpoint converted to the canonical (segmentor) namespace."""

    format: str
    tensors: StateDict                                   # canonical key -> tensor
    origin: Dict[str, str]                               # canonical key -> checkpoint key(s)
    unmatched: List[str] = field(default_factory=list)   # checkpoint keys no rule understood
    dropped: Dropped = field(default_factory=list)       # left out on purpose
    notes: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    detect: Callable[[Mapping[str, Tensor]], bool]
    convert: Callable[[Mapping[str, Tensor]], Converted]
    priority: int = 1000
    builtin: bool = True


_FORMATS: Dict[str, Format] = {}


class _Descriptions(Mapping):
    """FORMATS: format name -> description, in detection order (a live, read-only view)."""

    def __getitem__(self, name: str) -> str:
        return _FORMATS[name].description

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in _ordered())

    def __len__(self) -> int:
        return len(_FORMATS)


FORMATS: Mapping[str, str] = _Descriptions()


def _ordered() -> List[Format]:
    return sorted(_FORMATS.values(), key=lambda f: f.priority)  # stable: ties keep registration order


def add_format(fmt: Format) -> None:
    """Register a built-in format (called by the format modules of this package at import)."""
    if fmt.name in _FORMATS:
        raise CheckpointError(f"checkpoint format {fmt.name!r} is registered twice; give the new one another name")
    _FORMATS[fmt.name] = fmt


def register_format(name: str, description: str, detect: Callable[[Mapping[str, Tensor]], bool],
                    convert: Callable[[Mapping[str, Tensor]], Tuple[Mapping[str, Tensor], Sequence[Tuple[str, str]]]]
                    ) -> None:
    """Teach load_checkpoint another layout (e.g. a new backbone family's official releases).

    detect(state_dict) -> True when the keys are in this layout (tried after the built-in ones);
    convert(state_dict) -> (tensors, dropped): tensors keyed in the canonical namespace
    ("backbone." + the model's own backbone/classifier key, "head." + segmentation-head key),
    dropped a list of (checkpoint key, reason) left out on purpose. Registering a name again
    replaces your earlier format; built-in names are refused.
    """
    old = _FORMATS.get(name)
    if old is not None and old.builtin:
        raise CheckpointError(f"checkpoint format {name!r} is built in; register yours under another name")

    def as_converted(sd: Mapping[str, Tensor]) -> Converted:
        tensors, dropped = convert(sd)
        return Converted(name, dict(tensors), {k: k for k in tensors}, [], list(dropped), [])

    _FORMATS[name] = Format(name, description, detect, as_converted, priority=10_000, builtin=False)


def unregister_format(name: str) -> None:
    """Remove a format added with register_format (built-ins stay)."""
    fmt = _FORMATS.get(name)
    if fmt is not None and not fmt.builtin:
        del _FORMATS[name]


def get_format(name: str) -> Format:
    try:
        return _FORMATS[name]
    except KeyError:
        raise CheckpointError(f"unknown checkpoint format {name!r}; known: {', '.join(FORMATS)}") from None


def find_format(sd: Mapping[str, Tensor], names: Optional[Sequence[str]] = None) -> Optional[str]:
    """The first format (of `names`, default all) whose detector accepts the keys, else None."""
    for fmt in _ordered():
        if (names is None or fmt.name in names) and fmt.detect(sd):
            return fmt.name
    return None


def detect_format(sd: Mapping[str, Tensor]) -> str:
    """Name (a key of FORMATS) of the layout a state dict uses; CheckpointError if none fits."""
    name = find_format(sd)
    if name is None:
        raise CheckpointError(
            "unrecognised checkpoint layout (first keys: " + short_list(list(sd), 5) + "). Understood formats: "
            + "; ".join(f"{k} = {v}" for k, v in FORMATS.items()))
    return name


def convert_state_dict(sd: Mapping[str, Tensor], fmt: Optional[str] = None) -> Converted:
    """Convert a state dict of any registered format to pvtseg's canonical segmentor namespace."""
    return get_format(fmt or detect_format(sd)).convert(sd)


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the format modules
# ---------------------------------------------------------------------------------------------
def any_key(keys: Mapping[str, object] | Sequence[str], pattern: str) -> bool:
    """True when some key matches `pattern` at its start (re.match)."""
    rx = re.compile(pattern)
    return any(rx.match(k) for k in keys)


def short_list(keys: Sequence[str], limit: int = 8) -> str:
    """'a, b, c, ... (12 more)' for messages."""
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
