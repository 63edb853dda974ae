"""Type-check the TensorRT-calling code (engine/builder.py) against the `tensorrt-stubs` package.

TensorRT itself cannot be installed here, so this is how the calls are checked in CI.
tensorrt-stubs 10.13 ships without a py.typed marker and with a few lines Python cannot
parse (parameters named `in`, a non-default after defaults); the test copies the stubs to
a temp dir, repairs those lines, and points MYPYPATH there. Install the stubs without their
`tensorrt` dependency (it downloads NVIDIA binaries): `pip install --no-deps tensorrt-stubs`.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / "python" / "pvtseg" / "engine" / "builder.py"


def _stub_dir(tmp: Path) -> Path:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy)")
    try:
        files = md.distribution("tensorrt-stubs").files or []
    except md.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    roots = {}
    for f in files:
        parts = Path(str(f)).parts
        if parts and parts[0] in ("tensorrt", "tensorrt_bindings") and str(f).endswith(".pyi"):
            roots[parts[0]] = Path(f.locate()).parent if len(parts) == 2 else None
    if set(roots) != {"tensorrt", "tensorrt_bindings"}:
        pytest.skip(f"tensorrt-stubs has an unexpected layout: {sorted(map(str, files))[:5]}")
    out = tmp / "stubs"
    for name, src in roots.items():
        shutil.copytree(src, out / name, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    bindings = out / "tensorrt_bindings" / "tensorrt.pyi"
    text = bindings.read_text()
    text = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", text)
    text = re.sub(r"(= None, channel_axis: int)\)", r"\1 = ...)", text)
    bindings.write_text(text)
    (out / "tensorrt_libs.pyi").write_text("")
    return out


def _mypy(stubs: Path, target: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MYPYPATH=str(stubs))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental", "--no-error-summary",
         "--show-error-codes", str(target)],
        cwd=ROOT / "python", env=env, capture_output=True, text=True, timeout=600)


def _own_errors(proc: subprocess.CompletedProcess, target: Path) -> list:
    # The stubs themselves have type errors (pybind's generated names); only ours count.
    return [ln for ln in proc.stdout.splitlines() if ln.startswith(str(target)) and ": error:" in ln]


def test_builder_typechecks_against_tensorrt_stubs(tmp_path):
    stubs = _stub_dir(tmp_path)
    proc = _mypy(stubs, BUILDER)
    errors = _own_errors(proc, BUILDER)
    assert not errors, "\n".join(errors)

    # The stubs are really in use: a wrong TensorRT call in the same setting is caught.
    bad = tmp_path / "bad_trt.py"
    bad.write_text("import tensorrt as trt\n\n\ndef f() -> None:\n    b = trt.Builder(trt.Logger())\n"
                   "    b.create_network('x')\n    b.no_such_method()\n")
    errors = _own_errors(_mypy(stubs, bad), bad)
    assert len(errors) == 2, errors


def _deprecated_members(cls: str) -> set:
    """Members the 10.13 stubs document as [DEPRECATED] in `class cls`'s docstring."""
    try:
        files = md.distribution("tensorrt-stubs").files or []
    except md.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    stub = next(f for f in files if str(f).endswith("tensorrt_bindings/tensorrt.pyi"))
    text = Path(str(stub.locate())).read_text()
    start = text.index(f"class {cls}:")
    doc = text[start:text.index('"""', text.index('"""', start) + 3)]
    members = re.findall(r"^\s{6}(\w+) :(.*?)(?=^\s{6}\w+ :|\Z)", doc, re.M | re.S)
    assert members, f"no members parsed from the stubs' {cls}"
    return {name for name, body in members if "[DEPRECATED]" in body}


@pytest.mark.parametrize("version", ["10.13.0", "11.1.0"])
def test_strongly_typed_plans_use_no_deprecated_flag(version):
    """The flags a 10.13 / 11 plan names are not deprecated in TensorRT 10.13's Python API, while
    the 10.3 plans do use flags 10.13 deprecates (so this check can fail)."""
    from pvtseg.engine.plan import make_plan

    builder_dep, network_dep = _deprecated_members("BuilderFlag"), _deprecated_members("NetworkDefinitionCreationFlag")
    assert {"FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"} <= builder_dep and "EXPLICIT_BATCH" in network_dep
    for kw in ({}, {"fp16": True}, {"int8": True}, {"fp16": True, "dla_core": 0}):
        plan = make_plan(version, **kw)
        assert not set(plan.builder_flags) & builder_dep and not set(plan.network_flags) & network_dep, (kw, plan)
        assert not plan.pin_fp32_layers  # no ILayer.precision / set_output_type (deprecated in 10.12)
    old = make_plan("10.3.0", fp16=True)
    assert set(old.builder_flags) & builder_dep and old.pin_fp32_layers
