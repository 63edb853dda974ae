"""The Jetson side runs on the Jetson as shipped: Python 3.8 (JetPack 5.1), no torch, no pip OpenCV.

- every Jetson-side module parses as Python 3.8 and uses only what 3.8 has (ast + vermin),
  plus the run-time typing forms vermin does not see (`X | None` / `list[int]` outside annotations);
- the package installs into a fresh venv (no --system-site-packages) with its base
  dependencies (numpy, onnx) and onnxruntime only; then the Segmenter runs an ONNX file made
  here with the real export, build_engine.py --plan-only plans an engine for it, `pvtseg
  doctor` reports, and torch is never imported.
  The venv uses a Python 3.8 when one is installed (pyenv / python3.8 / $PVTSEG_PYTHON38),
  and then also replays the Segmenter on numpy 1.17.4, the numpy JetPack 5.1 ships.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "python" / "pvtseg"

#: What runs on the device: the runtime, engine building, the apps (demo, bench, doctor, ROS 2
#: node, quantize) and the scripts. The PyTorch side (models, export, training) is not here.
JETSON_SIDE_GLOBS = ["__init__.py", "__main__.py", "errors.py", "io_utils.py", "meta.py", "platform_info.py",
                     "runtime/**/*.py", "engine/*.py", "apps/*.py"]
NOT_JETSON_SIDE = {"engine/fp16_torch.py": "FP16 PyTorch reference (imports torch)",
                   "apps/list_models.py": "`pvtseg models` builds every model (imports torch)"}
#: Imported in the fresh venv only where their optional framework is: rclpy comes from ROS 2.
NEEDS_ROS = {"pvtseg.apps.ros2_node"}


def jetson_side_files(root: Path = ROOT) -> List[Path]:
    pkg = root / "python" / "pvtseg"
    files = {Path(p) for g in JETSON_SIDE_GLOBS for p in glob.glob(str(pkg / g), recursive=True)}
    files |= {Path(p) for p in glob.glob(str(root / "python" / "*.py"))}
    return sorted(p for p in files if p.relative_to(root / "python").as_posix()[len("pvtseg/"):] not in NOT_JETSON_SIDE)


def jetson_side_modules(root: Path = ROOT) -> List[str]:
    mods = []
    for p in jetson_side_files(root):
        if p.parent == root / "python":
            continue  # scripts: run, not imported
        parts = list(p.relative_to(root / "python").with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":
            mods.append(".".join(parts))
    return mods


# -- static checks --------------------------------------------------------------------------------------

def test_jetson_side_list_is_sane():
    names = {p.name for p in jetson_side_files()}
    assert {"segmenter.py", "builder.py", "doctor.py", "demo.py", "build_engine.py", "platform_info.py"} <= names
    assert "fp16_torch.py" not in names and "train.py" not in names


@pytest.mark.parametrize("path", jetson_side_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_parses_as_python38(path):
    ast.parse(path.read_text(), str(path), feature_version=(3, 8))


def test_vermin_target_38():
    pytest.importorskip("vermin", reason="vermin comes with `pip install -e .[dev]`")
    files = [str(p) for p in jetson_side_files()]
    cmd = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]  # vermin has no __main__
    r = subprocess.run(cmd + ["--target=3.8-", "--no-tips", "--violations", *files], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"vermin: Jetson-side code needs more than Python 3.8:\n{r.stdout}{r.stderr}"
    assert f"Analyzing {len(files)} files" in r.stdout, r.stdout  # it really looked at every file


def test_vermin_catches_a_39_feature(tmp_path):
    pytest.importorskip("vermin", reason="vermin comes with `pip install -e .[dev]`")
    bad = tmp_path / "bad.py"
    bad.write_text("import math\nNAME = 'pvt_v2'.removeprefix('pvt_')\nG = math.lcm(4, 6)\n")
    r = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--target=3.8-",
                        "--no-tips", "--violations", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "removeprefix" in r.stdout


_TYPE_NAMES = {"int", "str", "float", "bytes", "bool", "list", "dict", "tuple", "set", "frozenset", "type",
               "object", "Path", "Any", "Callable", "Sequence", "Mapping", "Iterable", "Iterator"}
_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


def _annotation_node_ids(tree: ast.AST) -> set:
    ids = set()
    for n in ast.walk(tree):
        anns = []
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = n.args
            args = a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]
            anns = [x.annotation for x in args if x.annotation] + ([n.returns] if n.returns else [])
        elif isinstance(n, ast.AnnAssign):
            anns = [n.annotation]
        ids |= {id(m) for an in anns for m in ast.walk(an)}
    return ids


def runtime_typing_problems(src: str) -> List[str]:
    """`list[int]` and `X | Y` type expressions evaluated at run time (fine in annotations under
    `from __future__ import annotations`, a TypeError on Python 3.8 anywhere else); vermin
    does not report them when the module has that future import."""
    tree = ast.parse(src)
    skip = _annotation_node_ids(tree) if "from __future__ import annotations" in src else set()

    def typeish(x: ast.AST) -> bool:
        return ((isinstance(x, ast.Constant) and x.value is None) or (isinstance(x, ast.Name) and x.id in _TYPE_NAMES)
                or (isinstance(x, ast.Subscript) and isinstance(x.value, ast.Name) and x.value.id in _GENERICS))

    out = []
    for n in ast.walk(tree):
        if id(n) in skip:
            continue
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id in _GENERICS:
            out.append(f"line {n.lineno}: {n.value.id}[...] outside an annotation")
        elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) and (typeish(n.left) or typeish(n.right)):
            out.append(f"line {n.lineno}: `X | Y` type union outside an annotation")
    return out


def test_runtime_typing_checker_catches_what_it_should():
    bad = textwrap.dedent("""\
        from __future__ import annotations
        Alias = list[int]
        def f(x: int | None = None, y: dict[str, int] = None) -> list[int]:
            return isinstance(x, int | str)
        """)
    problems = runtime_typing_problems(bad)
    assert len(problems) == 2 and "line 2" in problems[0] and "line 4" in problems[1], problems
    assert runtime_typing_problems("flags = 1 | 2\nmask = a | b\n") == []


@pytest.mark.parametrize("path", jetson_side_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_runtime_evaluated_new_typing(path):
    assert runtime_typing_problems(path.read_text()) == []


def test_package_metadata_fits_a_jetson():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the check itself needs no 3.8
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.8"
    base = " ".join(project["dependencies"]).lower()
    assert "torch" not in base and "opencv" not in base and "tensorrt" not in base
    assert "numpy" in base and "onnx" in base and "onnxruntime" not in base
    extras = project["optional-dependencies"]
    assert not any("opencv" in d for d in extras.get("demo", []) + extras.get("trt", []))
    assert extras["jetpack5"] == ["cuda-python>=11.5,<11.8.3", "numpy<2"]
    assert extras["jetpack6"] == ["cuda-python>=12.2,<13", "numpy<2"]
    assert any(d.startswith("vermin") for d in extras["dev"]) and any(d.startswith("torch") for d in extras["dev"])


# -- a fresh venv: no torch, no pip OpenCV ---------------------------------------------------------------

# Records every attempt to import torch, even one a `try: import torch` would swallow.
GUARD = """
import os, sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name != "torch" and not name.startswith("torch."):
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "_find_and_load":
            frame = frame.f_back
        if frame is None:  # importlib.util.find_spec: asking whether torch exists is no import
            return None
        with open(os.environ["PVTSEG_TORCH_LOG"], "a") as f:
            f.write(name + "\\n")
        raise ImportError("torch is blocked in this test venv: " + name)
sys.meta_path.insert(0, _NoTorch())
"""

# A test stand-in for OpenCV (the venv has no OpenCV: no pip wheel, and no system one for this
# interpreter): only the calls the Segmenter's ONNX path makes, in numpy that runs on numpy 1.17.
# It is not OpenCV; the labels it leads to are compared with the real-OpenCV run of this process.
CV2_STANDIN = '''
import os
import numpy as np
__version__ = "0-test-standin"
INTER_NEAREST, INTER_LINEAR, COLOR_BGRA2BGR, COLOR_GRAY2BGR = 0, 1, 1, 8
FONT_HERSHEY_SIMPLEX, LINE_AA = 0, 16
class error(Exception):
    pass
def _axis(n_out, n_in):
    x = np.clip((np.arange(n_out) + 0.5) * (n_in / float(n_out)) - 0.5, 0, n_in - 1)
    x0 = np.floor(x).astype(np.int64)
    return x0, np.minimum(x0 + 1, n_in - 1), (x - x0).astype(np.float32)
def resize(img, dsize, interpolation=INTER_LINEAR):
    (w, h), (H, W) = dsize, img.shape[:2]
    if interpolation == INTER_NEAREST:
        ys = np.minimum((np.arange(h) * (H / float(h))).astype(np.int64), H - 1)
        xs = np.minimum((np.arange(w) * (W / float(w))).astype(np.int64), W - 1)
        return np.ascontiguousarray(img[ys][:, xs])
    (y0, y1, fy), (x0, x1, fx) = _axis(h, H), _axis(w, W)
    extra = (1,) * (img.ndim - 2)
    fy, fx = fy.reshape((h, 1) + extra), fx.reshape((1, w) + extra)
    a = img.astype(np.float32)
    rows = a[y0] * (1 - fy) + a[y1] * fy
    out = rows[:, x0] * (1 - fx) + rows[:, x1] * fx
    return np.clip(np.rint(out), 0, 255).astype(np.uint8) if img.dtype == np.uint8 else out.astype(img.dtype)
def cvtColor(img, code):
    if code == COLOR_GRAY2BGR:
        return np.repeat(img[:, :, None], 3, axis=2)
    if code == COLOR_BGRA2BGR:
        return np.ascontiguousarray(img[:, :, :3])
    raise error("stand-in cvtColor: unsupported code %r" % code)
def __getattr__(name):
    if os.environ.get("PVTSEG_CV2_PERMISSIVE"):  # importing modules only: any constant will do
        return 0
    with open(os.environ["PVTSEG_CV2_LOG"], "a") as f:
        f.write(name + "\\n")
    raise AttributeError("cv2 stand-in has no %s" % name)
'''

# Runs inside the venv: segment the frames, keep what the backend saw and returned (for the
# numpy 1.17 replay), report.
VENV_RUN = '''
import json, sys
import numpy as np
onnx_path, work = sys.argv[1], sys.argv[2]
from pvtseg.runtime import Segmenter
frames = [np.load("%s/frame%d.npy" % (work, i)) for i in range(int(sys.argv[3]))]
seg = Segmenter(onnx_path)
infer, seen = seg.backend.infer, []
def recording_infer(batch):
    out = infer(batch)
    seen.append((batch.copy(), out.copy()))
    return out
seg.backend.infer = recording_infer
for i, f in enumerate(frames):
    np.save("%s/labels%d.npy" % (work, i), seg(f))
for i, (b, o) in enumerate(seen):
    np.save("%s/batch%d.npy" % (work, i), b)
    np.save("%s/out%d.npy" % (work, i), o)
print(json.dumps({"python": sys.version.split()[0], "numpy": np.__version__, "describe": seg.describe(),
                  "torch_in_sys_modules": any(k == "torch" or k.startswith("torch.") for k in sys.modules),
                  "cv2": sys.modules["cv2"].__file__}))
'''

# numpy 1.17.4 (JetPack 5.1's) cannot load this onnxruntime: replay what it returned and check
# that the runtime's own numpy code turns the same frames into the same batches and labels.
VENV_REPLAY = '''
import json, sys
import numpy as np
import pvtseg.runtime.segmenter as segmod
from pvtseg.runtime.backends.base import Backend
work, n = sys.argv[1], int(sys.argv[3])
class Replay(Backend):
    name = "replay"
    calls = 0
    def infer(self, batch):
        i = Replay.calls
        Replay.calls += 1
        expected = np.load("%s/batch%d.npy" % (work, i))
        if not np.array_equal(batch, expected):
            raise SystemExit("batch %d differs under numpy %s: max diff %g"
                             % (i, np.__version__, float(np.abs(batch - expected).max())))
        return np.load("%s/out%d.npy" % (work, i))
segmod.backend_class = lambda name: Replay
seg = segmod.Segmenter(sys.argv[2])
same = [bool(np.array_equal(seg(np.load("%s/frame%d.npy" % (work, i))), np.load("%s/labels%d.npy" % (work, i))))
        for i in range(n)]
print(json.dumps({"numpy": np.__version__, "same_labels": same}))
'''


def _python38() -> Optional[str]:
    cands = [os.environ.get("PVTSEG_PYTHON38"), shutil.which("python3.8")]
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for c in cands:
        if c and subprocess.run([c, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0:
            return c
    return None


def _pip(venv_py: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """pip acting on the venv: this process's pip with --python (pip >= 22.3), so the venv needs no
    pip of its own; --no-compile because byte-compiling sympy & co. is most of an install's time."""
    cmd = [sys.executable, "-m", "pip", "--python", str(venv_py)]
    if subprocess.run(cmd + ["--version"], capture_output=True).returncode != 0:  # older pip
        subprocess.run([str(venv_py), "-m", "ensurepip", "-q"], capture_output=True)
        cmd = [str(venv_py), "-m", "pip"]
    extra = {"install": ["--no-compile", "-q"], "download": ["-q"]}.get(args[0], [])
    return subprocess.run(cmd + [*args, *extra, "--disable-pip-version-check", "--retries", "1", "--timeout", "30"],
                          capture_output=True, text=True, timeout=timeout)


def _wheelhouse(py: Path) -> Path:
    """Wheels for the venv's Python, downloaded once (later runs install offline, in seconds)."""
    tag = subprocess.run([str(py), "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"], capture_output=True,
                         text=True, check=True).stdout.strip()
    base = os.environ.get("PVTSEG_TEST_WHEELHOUSE") or os.path.expanduser("~/.cache/pvtseg-test-wheels")
    return Path(base) / tag


def _install(py: Path, wheelhouse: Path, *reqs: str) -> subprocess.CompletedProcess:
    """pip install reqs from the wheelhouse; fill it from PyPI when something is missing."""
    offline = ("install", "--no-index", "--find-links", str(wheelhouse), *reqs)
    r = _pip(py, *offline)
    if r.returncode != 0:
        d = _pip(py, "download", "--only-binary=:all:", "-d", str(wheelhouse), *reqs)
        for w in wheelhouse.glob("pvtseg-*.whl"):
            w.unlink()  # the project's own wheel is built fresh for every run
        r = _pip(py, *offline) if d.returncode == 0 else d
    return r


def _frames() -> List[np.ndarray]:
    import cv2

    rng = np.random.default_rng(3)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (120, 150, 3), dtype=np.uint8), (0, 0), 3)
    at_input = np.ascontiguousarray(smooth[:96, :128])  # the model's input size: no resize at all
    bgra = np.dstack([at_input, np.full(at_input.shape[:2], 255, np.uint8)])
    return [at_input, smooth, np.ascontiguousarray(at_input[:, :, 1]), bgra]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """(python, source copy, env) of a fresh venv with pvtseg[onnxruntime] installed, nothing else."""
    tmp = tmp_path_factory.mktemp("jetson_venv")
    src = tmp / "src"  # install from a copy: pip's build must not write into the shared tree
    shutil.copytree(ROOT / "python", src / "python",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    base = _python38() or sys.executable
    print(f"fresh venv from {base}" + ("" if base != sys.executable else " (no Python 3.8 found)"))
    venv = tmp / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # the wheel is built here (this interpreter has the build backend); the venv resolves its deps
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
             "-w", str(tmp / "dist"), str(src)]
    b = subprocess.run(build + ["--no-build-isolation"], capture_output=True, text=True, timeout=300)
    if b.returncode != 0:  # this interpreter lacks setuptools >= 64 / wheel: let pip fetch them
        b = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stderr
    wheel = next((tmp / "dist").glob("pvtseg-*.whl"))
    r = _install(py, _wheelhouse(py), f"{wheel}[onnxruntime]")
    if r.returncode != 0:
        pytest.skip(f"pip could not install pvtseg[onnxruntime] into a fresh venv (offline?): {r.stderr[-800:]}")
    shim = tmp / "shim"  # on PYTHONPATH: the torch guard and the cv2 stand-in
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(GUARD)
    (shim / "cv2.py").write_text(CV2_STANDIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(shim), PVTSEG_TORCH_LOG=str(tmp / "torch.log"), PVTSEG_CV2_LOG=str(tmp / "cv2.log"),
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return py, src, env, tmp


def test_fresh_venv_has_no_torch_and_no_pip_opencv(fresh_venv):
    py, _, env, _ = fresh_venv
    code = "import importlib.metadata as m, json; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    names = {n.lower() for n in json.loads(r.stdout)}
    assert {"pvtseg", "numpy", "onnx", "onnxruntime"} <= names
    assert "torch" not in names and not any(n.startswith("opencv") for n in names), sorted(names)


def test_every_jetson_side_module_imports_in_fresh_venv(fresh_venv):
    """Module-level code runs on this interpreter (3.8 when found) with no torch."""
    py, src, env, tmp = fresh_venv
    modules = [m for m in jetson_side_modules(src) if m not in NEEDS_ROS]  # what was installed
    code = ("import importlib, json, sys\n"
            "for m in json.loads(sys.argv[1]):\n    importlib.import_module(m)\n"
            "print(any(k == 'torch' or k.startswith('torch.') for k in sys.modules))")
    r = subprocess.run([str(py), "-c", code, json.dumps(modules)], capture_output=True, text=True,
                       env=dict(env, PVTSEG_CV2_PERMISSIVE="1"), timeout=300, cwd=str(tmp))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "False"
    assert not (tmp / "torch.log").exists(), (tmp / "torch.log").read_text()


@pytest.fixture(scope="module")
def venv_run(fresh_venv):
    """An ONNX made here with the real export, segmented inside the venv; what the backend saw is kept."""
    from _runtime_artifacts import make_artifacts

    py, _, env, tmp = fresh_venv
    work = tmp / "work"
    work.mkdir()
    onnx = make_artifacts(work, "jetson", height=96, width=128, output="labels", formats=("onnx",))["onnx"]
    frames = _frames()
    for i, f in enumerate(frames):
        np.save(work / f"frame{i}.npy", f)
    r = subprocess.run([str(py), "-c", VENV_RUN, str(onnx), str(work), str(len(frames))],
                       capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp))
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"fresh venv: Python {report['python']}, numpy {report['numpy']}, {report['describe']}")
    return onnx, frames, work, report


def test_segmenter_in_fresh_venv_matches_this_process(fresh_venv, venv_run):
    from pvtseg.runtime import Segmenter

    _, _, _, tmp = fresh_venv
    onnx, frames, work, report = venv_run
    assert report["cv2"].startswith(str(tmp / "shim")), "the venv found an OpenCV it should not have"
    assert report["torch_in_sys_modules"] is False
    ref = Segmenter(onnx)  # the same artifact and frames through this process's OpenCV + onnxruntime
    for i, f in enumerate(frames):
        got, want = np.load(work / f"labels{i}.npy"), ref(f)
        assert got.shape == f.shape[:2] and got.dtype == np.uint8
        assert len(np.unique(want)) >= 3, "a constant label map would make the comparison empty"
        resized = f.shape[:2] != ref.input_size
        print(f"frame {i} {f.shape}: {(got == want).mean():.5f} of labels agree with this process")
        # same size: only the onnxruntime versions differ; resized: also the stand-in's resize
        assert (got == want).mean() >= (0.97 if resized else 0.999), f"frame {i}: {(got == want).mean():.4f}"
    cv2_log = tmp / "cv2.log"
    missing = sorted(set(cv2_log.read_text().split())) if cv2_log.exists() else []
    assert missing == [], f"the Segmenter path asked OpenCV for more than the stand-in has: {missing}"


def test_build_engine_plan_only_in_fresh_venv(fresh_venv, venv_run):
    py, src, env, _ = fresh_venv
    onnx = venv_run[0]
    plan = [str(py), str(src / "python" / "build_engine.py"), "--plan-only", "--trt-version", "8.5.2",
            "--fp16", "--onnx", str(onnx)]
    p = subprocess.run(plan, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    here = subprocess.run([sys.executable] + plan[1:], capture_output=True, text=True, timeout=120)
    assert here.returncode == 0, here.stderr
    assert p.stdout.startswith("TensorRT 8.5.2")
    assert p.stdout.splitlines()[:3] == here.stdout.splitlines()[:3]  # version, flags: the same plan


def test_doctor_in_fresh_venv_and_torch_never_imported(fresh_venv, venv_run):
    py, _, env, tmp = fresh_venv
    d = subprocess.run([str(py), "-m", "pvtseg", "doctor", "--json"], capture_output=True, text=True,
                       env=dict(env, PVTSEG_CV2_LOG=str(tmp / "cv2_doctor.log")), timeout=120, cwd=str(tmp))
    assert d.returncode == 0, d.stderr
    doc = json.loads(d.stdout)
    assert doc["facts"]["python"]["version"] == venv_run[3]["python"]
    assert doc["facts"]["torch"]["found"] is False and doc["facts"]["opencv"]["pip_wheels"] == []
    assert next(b for b in doc["backends"] if b["artifact"] == ".onnx")["ready"] is True
    torch_log = tmp / "torch.log"  # every venv process of this module ran with the guard
    assert not torch_log.exists(), f"torch import attempted: {torch_log.read_text()}"


def test_runtime_numpy_code_on_jetpack51_numpy(fresh_venv, venv_run):
    """Replays the recorded backend outputs with numpy 1.17.4 (Ubuntu 20.04 / JetPack 5.1)."""
    py, _, env, tmp = fresh_venv
    onnx, frames, work, _ = venv_run
    version = subprocess.run([str(py), "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                             capture_output=True, text=True, env=env).stdout.strip()
    if version != "True":
        pytest.skip("numpy 1.17.4 has wheels for Python 3.8 only, and no Python 3.8 was found")
    wheelhouse = _wheelhouse(py)
    wheels = list(wheelhouse.glob("numpy-1.17.4-*.whl"))
    if not wheels:
        r = _pip(py, "download", "--only-binary=:all:", "--no-deps", "-d", str(wheelhouse), "numpy==1.17.4")
        wheels = list(wheelhouse.glob("numpy-1.17.4-*.whl"))
        if not wheels:
            pytest.skip(f"pip could not download numpy 1.17.4 (offline?): {r.stderr[-500:]}")
    old_numpy = tmp / "numpy117"  # a wheel is a zip of the installed tree: put it first on the path
    if not old_numpy.exists():
        zipfile.ZipFile(wheels[0]).extractall(old_numpy)
    n = len(frames)
    rr = subprocess.run([str(py), "-c", VENV_REPLAY, str(work), str(onnx), str(n)], capture_output=True, text=True,
                        env=dict(env, PYTHONPATH=f"{old_numpy}{os.pathsep}{env['PYTHONPATH']}"), timeout=120)
    assert rr.returncode == 0, rr.stderr[-3000:] + rr.stdout
    rep = json.loads(rr.stdout.strip().splitlines()[-1])
    assert rep["numpy"] == "1.17.4" and rep["same_labels"] == [True] * n
