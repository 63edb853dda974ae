"""Everything about an engine build that can be decided without TensorRT (plain Python).

builder.py turns a BuildPlan into TensorRT calls; prepare.py fills it; this module decides:
- which TensorRT versions are supported (8.5 .. 11.x) and how FP16 / INT8 are obtained:
    8.5 .. 10.11 (JetPack 5.1, 6.0, 6.1/6.2): builder flags (FP16; INT8 + FP16 for a Q/DQ
        graph) with the FP32 islands pinned by per-layer precision constraints
        (OBEY_PRECISION_CONSTRAINTS);
    10.12+ and 11.x (JetPack 7, desktop): a strongly typed network, no deprecated flags or
        per-layer precision: FP16 comes from the graph (fp16_onnx.py converts it with the
        same islands as explicit Casts), INT8 from its Q/DQ nodes;
- which TensorRT layers stay FP32 (`select_fp32_layers`);
- the optimization profile, from --min/--opt/--max or the sidecar's dynamic ranges;
- workspace (capped at DEFAULT_WORKSPACE_MB unless told), DLA core and timing cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import EngineError

MIN_VERSION = (8, 5)
MAX_MAJOR = 11
MECH_BUILDER_FLAG = FP16_BUILDER_FLAG = "builder_flag"
MECH_STRONGLY_TYPED = FP16_STRONGLY_TYPED = "strongly_typed"
# The weakly typed precision controls (BuilderFlag FP16/INT8, OBEY_PRECISION_CONSTRAINTS,
# ILayer precision / output type) are deprecated from 10.12 (NvInfer.h v10.13) and removed in 11.
STRONGLY_TYPED_FROM = (10, 12)
# Builder workspace cap unless --workspace says otherwise: enough for these segmentors at
# 512x1024, small enough to build on an 8 GB Orin Nano next to a running application.
DEFAULT_WORKSPACE_MB = 1024
# TensorRT layer types (trt.LayerType names) that stay FP32 in an FP16 build.
FP32_LAYER_TYPES = frozenset({"NORMALIZATION", "SOFTMAX", "REDUCE", "TOPK"})
FLOAT_DTYPES = frozenset({"FLOAT", "HALF", "BF16"})

Shape = Tuple[int, ...]


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0
    build: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f".{self.build}" if self.build else "")

    @property
    def short(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_trt_version(text: str) -> TrtVersion:
    """'8.6.2', '10.3.0.30', '11.0.0.1', '8.5.2.2' -> TrtVersion; EngineError otherwise."""
    m = re.fullmatch(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[.+-]\w+)*\s*", str(text))
    if not m:
        raise EngineError(f"cannot parse TensorRT version {text!r}; expected e.g. '10.3.0'. "
                          "Check `python3 -c 'import tensorrt; print(tensorrt.__version__)'`.")
    return TrtVersion(*(int(g) if g is not None else 0 for g in m.groups()))


def check_supported(version: TrtVersion) -> TrtVersion:
    if (version.major, version.minor) < MIN_VERSION:
        raise EngineError(
            f"TensorRT {version} is not supported (pvtseg builds engines with TensorRT 8.5 .. 11.x): "
            "upgrade to JetPack 5.1 or newer (TensorRT 8.5.2), or install a newer TensorRT.")
    if version.major > MAX_MAJOR:
        raise EngineError(
            f"TensorRT {version} is newer than the versions pvtseg knows (8.5 .. 11.x); its API may have "
            "changed. Use TensorRT 11.x or update pvtseg.")
    return version


def precision_mechanism(version: TrtVersion, precision: str = "fp16") -> Optional[str]:
    """How FP16 / INT8 is obtained on this TensorRT (see the module doc); None for FP32."""
    check_supported(version)
    if precision == "fp32":
        return None
    return MECH_STRONGLY_TYPED if (version.major, version.minor) >= STRONGLY_TYPED_FROM else MECH_BUILDER_FLAG


def fp16_mechanism(version: TrtVersion) -> str:
    return str(precision_mechanism(version, "fp16"))


@dataclass(frozen=True)
class ShapeProfile:
    input_name: str
    min: Shape
    opt: Shape
    max: Shape


def parse_shape(text: str) -> Tuple[Optional[str], Shape]:
    """'1x3x384x480' or 'input:1x3x384x480' -> (name or None, (1, 3, 384, 480))."""
    name: Optional[str] = None
    s = str(text).strip()
    if ":" in s:
        name, s = s.rsplit(":", 1)
        name = name.strip() or None
    parts = re.split(r"[x,]", s.strip())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise EngineError(f"bad shape {text!r}: write it as NxCxHxW, e.g. 1x3x384x480") from None
    if len(shape) != 4 or any(d <= 0 for d in shape):
        raise EngineError(f"bad shape {text!r}: need 4 positive sizes NxCxHxW, e.g. 1x3x384x480")
    return name, shape


def _check_shape(shape: Shape, what: str) -> None:
    n, c, h, w = shape
    if c != 3:
        raise EngineError(f"{what} shape {_fmt(shape)}: the model takes 3 (RGB) channels")
    if h % 32 or w % 32:
        raise EngineError(f"{what} shape {_fmt(shape)}: height and width must be multiples of 32")


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def _profile_from_args(input_name: str, given: Sequence[str]) -> Tuple[Shape, Shape, Shape]:
    shapes = []
    for s, what in zip(given, ("--min", "--opt", "--max")):
        name, shape = parse_shape(s)
        if name is not None and name != input_name:
            raise EngineError(f"{what} names input {name!r} but the network input is {input_name!r}")
        shapes.append(shape)
    return shapes[0], shapes[1], shapes[2]


def _profile_from_sidecar(onnx_shape: Sequence[Any], meta: Optional[Dict[str, Any]]) -> Tuple[Shape, Shape, Shape]:
    """Dynamic dims take the sidecar's input.dynamic ranges, `opt` the export size (batch 1)."""
    inp = (meta or {}).get("input") or {}
    dyn = inp.get("dynamic") or {}
    if not dyn:
        raise EngineError("the ONNX input has dynamic dims but no --min/--opt/--max was given and the "
                          "sidecar has no input.dynamic ranges; pass --min/--opt/--max NxCxHxW")
    default_opt = {"batch": 1, "height": inp.get("height"), "width": inp.get("width")}
    mn, op, mx = [1, 3, 0, 0], [1, 3, 0, 0], [1, 3, 0, 0]
    for axis, i in {"batch": 0, "height": 2, "width": 3}.items():
        d = onnx_shape[i]
        if isinstance(d, int) and d > 0:
            mn[i] = op[i] = mx[i] = d
            continue
        if axis not in dyn:
            raise EngineError(f"input dim {axis} is dynamic but the sidecar gives no range for it; "
                              "pass --min/--opt/--max")
        lo, hi = dyn[axis]
        mn[i], op[i], mx[i] = lo, min(max(default_opt[axis] or lo, lo), hi), hi
    return tuple(mn), tuple(op), tuple(mx)


def _check_static(onnx_shape: Sequence[Any], given: Sequence[str]) -> None:
    static = tuple(int(d) for d in onnx_shape)
    for s in given:
        _, shape = parse_shape(s)
        if shape != static:
            raise EngineError(f"the ONNX input is static {_fmt(static)} but a profile shape is {_fmt(shape)}; "
                              "re-export with `pvtseg export --dynamic` for a range of sizes")


def make_profile(input_name: str, onnx_shape: Sequence[Any], *, min_shape: Optional[str] = None,
                 opt_shape: Optional[str] = None, max_shape: Optional[str] = None,
                 meta: Optional[Dict[str, Any]] = None) -> Optional[ShapeProfile]:
    """The optimization profile for the network input, or None for a static input.

    `onnx_shape` holds ints for static dims and None/str for dynamic ones. Without
    --min/--opt/--max, dynamic dims take the sidecar's `input.dynamic` ranges, with `opt` at
    the export size (batch 1).
    """
    given = [s for s in (min_shape, opt_shape, max_shape) if s]
    if len(onnx_shape) != 4:
        raise EngineError(f"input {input_name!r} has rank {len(onnx_shape)}; pvtseg models take NCHW (rank 4)")
    if given and len(given) != 3:
        raise EngineError("give all three of --min, --opt and --max (e.g. --min 1x3x256x320 "
                          "--opt 1x3x384x480 --max 1x3x512x640), or none to use the sidecar's ranges")
    if all(isinstance(d, int) and d > 0 for d in onnx_shape):
        _check_static(onnx_shape, given)
        return None
    mn, op, mx = _profile_from_args(input_name, given) if given else _profile_from_sidecar(onnx_shape, meta)
    for shape, what in ((mn, "--min"), (op, "--opt"), (mx, "--max")):
        _check_shape(shape, what)
        for i, d in enumerate(onnx_shape):
            if isinstance(d, int) and d > 0 and shape[i] != d:
                raise EngineError(f"{what} {_fmt(shape)}: dim {i} is fixed to {d} in the ONNX graph")
    if not all(a <= b <= c for a, b, c in zip(mn, op, mx)):
        raise EngineError(f"profile must satisfy min <= opt <= max in every dim, got "
                          f"{_fmt(mn)} / {_fmt(op)} / {_fmt(mx)}")
    return ShapeProfile(input_name, mn, op, mx)


@dataclass
class BuildPlan:
    version: TrtVersion
    precision: str                      # "fp32" | "fp16" | "int8"
    mechanism: Optional[str]            # None (fp32) | MECH_BUILDER_FLAG | MECH_STRONGLY_TYPED
    network_flags: List[str]            # trt.NetworkDefinitionCreationFlag names
    builder_flags: List[str]            # trt.BuilderFlag names
    convert_onnx_to_fp16: bool          # strongly typed FP16: fp16_onnx converts the graph first
    pin_fp32_layers: bool               # builder-flag FP16/INT8: per-layer precision constraints
    workspace_bytes: int = DEFAULT_WORKSPACE_MB << 20
    dla_core: Optional[int] = None
    timing_cache: Optional[str] = None
    profile: Optional[ShapeProfile] = None
    contract: str = ""                  # contract.py key of the parser this plan targets
    fp32_layers: List[str] = field(default_factory=list)     # ONNX node names kept FP32
    adaptations: List[str] = field(default_factory=list)     # adapt.py rewrites
    output_dtypes: Dict[str, str] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)        # contract problems left after adapting
    notes: List[str] = field(default_factory=list)

    @property
    def fp16_mechanism(self) -> Optional[str]:  # the sidecar key predates INT8
        return self.mechanism


def _precision_flags(v: TrtVersion, precision: str) -> Tuple[Optional[str], List[str], List[str], List[str]]:
    """(mechanism, network flags, builder flags, notes) for `precision` on TensorRT `v`."""
    network: List[str] = ["EXPLICIT_BATCH"] if v.major < 10 else []  # implicit (flag deprecated) from 10.0
    if precision == "fp32":
        return None, network, [], []
    mech = precision_mechanism(v, precision)
    if mech == MECH_STRONGLY_TYPED:
        if v.major < 11:
            network.append("STRONGLY_TYPED")  # 11.x: always strongly typed, the flag is deprecated and ignored
        what = ("ONNX converted to FP16 with FP32 islands (explicit Casts)" if precision == "fp16" else
                "INT8 where the graph has Q/DQ pairs; every other layer in the graph's own type (FP32 unless the "
                "Q/DQ graph is FP16)")
        return mech, network, [], [f"TensorRT {v.short}: strongly typed network, no precision builder flags or "
                                    f"per-layer precision (deprecated in 10.12, removed in 11); {what}"]
    flags = ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"] if precision == "int8" else \
        ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    what = ("explicit quantization: INT8 where the graph has Q/DQ pairs, FP16 elsewhere" if precision == "int8"
            else "FP16 builder flag")
    return mech, network, flags, [f"TensorRT {v.short}: {what}; the FP32 layers below pinned by per-layer "
                                  "precision constraints (OBEY_PRECISION_CONSTRAINTS)"]


def make_plan(version: "str | TrtVersion", *, fp16: bool = False, int8: bool = False,
              workspace_mb: Optional[int] = None, dla_core: Optional[int] = None,
              timing_cache: Optional[str] = None, profile: Optional[ShapeProfile] = None,
              fp32_layers: Sequence[str] = (), adaptations: Sequence[str] = (),
              output_dtypes: Optional[Dict[str, str]] = None, problems: Sequence[str] = (),
              contract: str = "") -> BuildPlan:
    """The build plan: `int8` (a Q/DQ graph) wins over `fp16`; workspace capped by default."""
    v = parse_trt_version(version) if isinstance(version, str) else version
    check_supported(v)
    if workspace_mb is not None and workspace_mb <= 0:
        raise EngineError(f"--workspace must be a positive number of MiB, got {workspace_mb}")
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    if dla_core is not None:
        if dla_core < 0:
            raise EngineError(f"--dla-core must be >= 0, got {dla_core}")
        if precision == "fp32":
            raise EngineError("DLA runs FP16 or INT8 only: add --fp16 (or --int8 with a Q/DQ graph) to build for "
                              "--dla-core")
    mech, network_flags, builder_flags, notes = _precision_flags(v, precision)
    if dla_core is not None:
        builder_flags.append("GPU_FALLBACK")
        notes.append(f"DLA core {dla_core} with GPU fallback for layers DLA cannot run")
    return BuildPlan(version=v, precision=precision, mechanism=mech, network_flags=network_flags,
                     builder_flags=builder_flags,
                     convert_onnx_to_fp16=(mech == MECH_STRONGLY_TYPED and precision == "fp16"),
                     pin_fp32_layers=(mech == MECH_BUILDER_FLAG),
                     workspace_bytes=int(workspace_mb or DEFAULT_WORKSPACE_MB) << 20,
                     dla_core=dla_core, timing_cache=timing_cache, profile=profile,
                     contract=contract, fp32_layers=list(fp32_layers), adaptations=list(adaptations),
                     output_dtypes=dict(output_dtypes or {}), problems=list(problems), notes=notes)


@dataclass(frozen=True)
class LayerInfo:
    """What builder.py reads off a trt.ILayer: its name, type name and output dtype names."""
    name: str
    type: str
    output_dtypes: Tuple[str, ...] = ("FLOAT",)


def _matches_island(layer_name: str, islands: Set[str]) -> bool:
    if layer_name in islands:
        return True
    # The ONNX parser names the extra layers of one node after it: "<node>_<n>", "<node>/...".
    for sep in ("_", "/", ".", ":", " "):
        head = layer_name
        while sep in head:
            head = head.rsplit(sep, 1)[0]
            if head in islands:
                return True
    return False


def select_fp32_layers(layers: Sequence[LayerInfo], island_names: Set[str]) -> List[int]:
    """Indices of the layers to pin to FP32 in a builder-flag FP16 build.

    A layer is pinned when its type is a normalisation / softmax / reduction / top-k, or its
    name is (or derives from) an ONNX node of the FP32 islands (fp16_onnx.island_node_names),
    and it produces at least one floating-point output (integer/shape layers are left alone).
    """
    out = []
    for i, layer in enumerate(layers):
        if not any(d in FLOAT_DTYPES for d in layer.output_dtypes):
            continue
        if layer.type in FP32_LAYER_TYPES or _matches_island(layer.name, island_names):
            out.append(i)
    return out
