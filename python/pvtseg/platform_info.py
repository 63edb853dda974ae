"""What this machine is and what it can run: the facts `pvtseg doctor` shows.

    from pvtseg.platform_info import collect_facts
    facts = collect_facts()          # JSON-ready dict; the bench and engine sidecars record it

Jetson model and L4T / JetPack release (/etc/nv_tegra_release, the device tree), power mode
and whether clocks are locked, CUDA driver / GPU / compute capability, TensorRT and the
FP16 / INT8 / DLA support it reports, cuda-python, ONNX Runtime and its providers, torch,
OpenCV (version, GStreamer, CUDA, where it comes from), numpy, onnx.

Runs on Python 3.8 with the standard library only. torch is never imported (its version
comes from the package metadata); onnxruntime, tensorrt and cv2 are imported only when
`imports=True`. Files are read below `root` (default "/", or $PVTSEG_SYSROOT), so tests
can point it at a fabricated Jetson tree; libraries and Python packages are always this
process's own.
"""

from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.util
import os
import platform
import re
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

FACTS_SCHEMA = 1
ROOT_ENV = "PVTSEG_SYSROOT"

#: L4T release -> JetPack release, from NVIDIA's JetPack archive. Unlisted revisions of a
#: known major still get their family (see jetpack_for_l4t).
JETPACK_FOR_L4T = {
    "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}

#: What a JetPack family ships, for telling the user what to expect (and what pip must not replace).
JETPACK_STACKS = {
    "5.1": {"ubuntu": "20.04", "python": "3.8", "cuda": "11.4", "tensorrt": "8.5.2", "opencv": "4.5.4"},
    "6.0": {"ubuntu": "22.04", "python": "3.10", "cuda": "12.2", "tensorrt": "8.6.2", "opencv": "4.8.0"},
    "6.1": {"ubuntu": "22.04", "python": "3.10", "cuda": "12.6", "tensorrt": "10.3", "opencv": "4.8.0"},
}

#: cuda-python releases with binary wheels for a JetPack's Python on aarch64 (PyPI metadata):
#: 11.5.0-11.8.2 for cp38 (later 11.8.x need cuda-bindings, which has no cp38 wheel); 12.x
#: needs a CUDA 12 driver (JetPack 6); 13.x needs a CUDA 13 driver, which JetPack 6 lacks.
CUDA_PYTHON_FOR_JETPACK = {"5": "cuda-python>=11.5,<11.8.3", "6": "cuda-python>=12.2,<13"}

#: Tegra SoC (device-tree `compatible`) -> CUDA compute capability.
SOC_COMPUTE_CAPABILITY = {"tegra194": "7.2", "tegra234": "8.7", "tegra186": "6.2", "tegra210": "5.3"}


def sysroot(root: Optional[str] = None) -> str:
    return root or os.environ.get(ROOT_ENV) or "/"


def _read(root: str, *paths: str) -> Optional[str]:
    """Text of the first readable file among `paths` (absolute paths below `root`)."""
    for p in paths:
        try:
            with open(os.path.join(root, p.lstrip("/")), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            continue
    return None


# -- Jetson: release, model, power, clocks ----------------------------------------------------

def parse_nv_tegra_release(text: str) -> Optional[str]:
    """'# R35 (release), REVISION: 2.1, GCID: ...' -> '35.2.1' (None if it is not that line)."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", text)
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else None


def jetpack_for_l4t(l4t: str) -> Tuple[Optional[str], Optional[str]]:
    """(JetPack release, stack family) for an L4T release: '35.2.1' -> ('5.1', '5.1')."""
    parts = [int(x) for x in l4t.split(".")]
    exact = JETPACK_FOR_L4T.get(l4t)
    major, minor = parts[0], parts[1] if len(parts) > 1 else 0
    if major == 35:
        if minor < 2:
            return exact or "5.0.2", None
        return exact or "5.1.x", "5.1"
    if major == 36:
        family = "6.1" if minor >= 4 else "6.0"
        return exact or ("6.1 or later" if minor >= 4 else "6.0"), family
    if major == 34:
        return exact or "5.0 (developer preview)", None
    if major < 34:
        return "4.x or older", None
    return exact, None


def _device_tree_strings(root: str, name: str) -> List[str]:
    raw = _read(root, f"/proc/device-tree/{name}", f"/sys/firmware/devicetree/base/{name}")
    return [s for s in (raw or "").split("\x00") if s.strip()]


def power_mode(root: str) -> Optional[Dict[str, Any]]:
    """nvpmodel's current mode {id, name, maxn_id} from its status and config files (or `nvpmodel -q`
    on the real root). maxn_id is the unrestricted mode's id, which differs between boards."""
    status = _read(root, "/var/lib/nvpmodel/status")
    m = re.search(r"pmode:\s*(\d+)", status or "")
    mode_id: Optional[int] = int(m.group(1)) if m else None
    modes = {int(i): n for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>",
                                              _read(root, "/etc/nvpmodel.conf") or "")}
    name = modes.get(mode_id) if mode_id is not None else None
    if mode_id is None and root == "/":
        mode_id, name = _nvpmodel_query()
    if mode_id is None and name is None:
        return None
    maxn = sorted(i for i, n in modes.items() if n.upper().startswith("MAXN"))
    return {"id": mode_id, "name": name, "maxn_id": maxn[-1] if maxn else None}


def _nvpmodel_query() -> Tuple[Optional[int], Optional[str]]:
    try:
        out = subprocess.run(["nvpmodel", "-q"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=5, check=False, universal_newlines=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    m = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", out)
    return (int(m.group(2)), m.group(1)) if m else (None, None)


def _freq_pair(root: str, lo: str, hi: str) -> Optional[Tuple[int, int]]:
    a, b = _read(root, lo), _read(root, hi)
    try:
        return (int(a), int(b)) if a is not None and b is not None else None
    except ValueError:
        return None


def clocks(root: str) -> Dict[str, Any]:
    """Whether CPU and GPU clocks are pinned at one frequency (what `jetson_clocks` does)."""
    gpu = None
    for d in sorted(glob.glob(os.path.join(root, "sys/class/devfreq/*"))):
        if re.search(r"gpu|gv11b|ga10b|gp10b|gm20b", os.path.basename(d)):
            rel = "/" + os.path.relpath(d, root)
            gpu = _freq_pair(root, rel + "/min_freq", rel + "/max_freq")
            if gpu:
                break
    cpus = []
    for d in sorted(glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq"))):
        rel = "/" + os.path.relpath(d, root)
        pair = _freq_pair(root, rel + "/scaling_min_freq", rel + "/scaling_max_freq")
        if pair:
            cpus.append(pair)
    pinned = [p[0] == p[1] for p in ([gpu] if gpu else []) + cpus]
    return {"locked": all(pinned) if pinned else None,
            "gpu_hz": list(gpu) if gpu else None,
            "cpu_khz": [list(p) for p in cpus[:1]] if cpus else None}


def jetson_facts(root: Optional[str] = None) -> Dict[str, Any]:
    """Jetson model / SoC / L4T / JetPack / power / clocks; is_jetson False elsewhere."""
    root = sysroot(root)
    release = _read(root, "/etc/nv_tegra_release")
    l4t = parse_nv_tegra_release(release) if release else None
    model = _device_tree_strings(root, "model")
    compatible = _device_tree_strings(root, "compatible")
    soc = next((c.split(",")[-1] for c in compatible if re.search(r"tegra\d", c)), None)
    facts: Dict[str, Any] = {"is_jetson": bool(l4t or soc), "model": model[0].strip() if model else None,
                             "soc": soc, "l4t": l4t, "jetpack": None, "jetpack_stack": None,
                             "soc_compute_capability": SOC_COMPUTE_CAPABILITY.get(soc or "")}
    if not facts["is_jetson"]:
        facts["reason"] = "no /etc/nv_tegra_release and no Tegra SoC in the device tree"
        return facts
    if l4t:
        jetpack, family = jetpack_for_l4t(l4t)
        facts["jetpack"] = jetpack
        facts["jetpack_stack"] = dict(JETPACK_STACKS[family], family=family) if family else None
    facts["power_mode"] = power_mode(root)
    facts["clocks"] = clocks(root)
    return facts


# -- Python packages and libraries -------------------------------------------------------------

def dist_version(*names: str) -> Optional[str]:
    """Installed version of the first distribution found among `names` (no import)."""
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def module_found(name: str) -> bool:
    """Whether `import name` would find a module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def python_facts() -> Dict[str, Any]:
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    system_site: Optional[bool] = None
    if in_venv:
        cfg = _read("/", os.path.join(sys.prefix, "pyvenv.cfg")) or ""
        m = re.search(r"include-system-site-packages\s*=\s*(\w+)", cfg)
        system_site = (m.group(1).lower() == "true") if m else None
    return {"version": platform.python_version(), "executable": sys.executable, "venv": in_venv,
            "venv_system_site_packages": system_site}


def cuda_driver_version() -> Optional[str]:
    """The CUDA version the installed driver supports ('11.4'), via libcuda; None without one."""
    from .engine.device import _libcuda

    lib = _libcuda()
    v = ctypes.c_int(0)
    if lib is None or lib.cuDriverGetVersion(ctypes.byref(v)) != 0 or v.value <= 0:
        return None
    return f"{v.value // 1000}.{(v.value % 1000) // 10}"


def cuda_facts() -> Dict[str, Any]:
    from .engine.device import gpu_info  # ctypes only; no torch, no cuda-python

    name, cc, reason = gpu_info(0)
    return {"driver": cuda_driver_version(), "device": name, "compute_capability": cc,
            "reason": reason or None}


def tensorrt_facts(imports: bool = True) -> Dict[str, Any]:
    """TensorRT version, where it comes from, and what its builder reports about this GPU."""
    facts: Dict[str, Any] = {"version": dist_version("tensorrt", "tensorrt-cu12", "tensorrt-cu11"),
                             "found": module_found("tensorrt")}
    if not (imports and facts["found"]):
        return facts
    try:
        import tensorrt as trt
    except Exception as e:  # a broken install raises more than ImportError
        facts["error"] = f"import tensorrt failed: {e}"
        return facts
    if not hasattr(trt, "Builder"):
        facts["error"] = "only type stubs (tensorrt-stubs) are installed, not the TensorRT library"
        return facts
    facts.update(version=str(trt.__version__), path=os.path.dirname(getattr(trt, "__file__", "") or ""))
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        facts["fast_fp16"] = getattr(builder, "platform_has_fast_fp16", None)
        facts["fast_int8"] = getattr(builder, "platform_has_fast_int8", None)
        facts["dla_cores"] = int(getattr(builder, "num_DLA_cores", 0) or 0)
        del builder
    except Exception as e:  # no GPU / driver mismatch: the version is still worth showing
        facts["builder_error"] = str(e) or type(e).__name__
    return facts


def cuda_python_facts(imports: bool = True) -> Dict[str, Any]:
    """cuda-python (the TensorRT backend's buffers and streams): version and which module imports."""
    facts: Dict[str, Any] = {"version": dist_version("cuda-python", "cuda-bindings"),
                             "found": module_found("cuda")}
    if not (imports and facts["found"]):
        return facts
    errors = []
    for module in ("cuda.bindings.runtime", "cuda.cudart"):  # cuda-python >= 12.6, then older
        try:
            importlib.import_module(module)
        except Exception as e:  # ImportError, or a driver error raised at import
            errors.append(f"{module}: {e}")
            continue
        facts["module"] = module
        return facts
    facts["error"] = "cuda-python does not import (" + "; ".join(errors) + ")"
    return facts


def onnxruntime_facts(imports: bool = True) -> Dict[str, Any]:
    facts: Dict[str, Any] = {"version": dist_version("onnxruntime", "onnxruntime-gpu"),
                             "found": module_found("onnxruntime")}
    if imports and facts["found"]:
        try:
            import onnxruntime as ort

            facts.update(version=ort.__version__, providers=list(ort.get_available_providers()))
        except Exception as e:
            facts["error"] = f"import onnxruntime failed: {e}"
    return facts


def opencv_facts(imports: bool = True) -> Dict[str, Any]:
    """OpenCV version and build (GStreamer, CUDA), and which pip wheels of it are installed."""
    from importlib import metadata

    wheels = sorted({f"{d.metadata['Name']} {d.version}" for d in metadata.distributions()
                     if (d.metadata["Name"] or "").lower().startswith("opencv-")})
    facts: Dict[str, Any] = {"found": module_found("cv2"), "pip_wheels": wheels}
    if not (imports and facts["found"]):
        return facts
    try:
        import cv2
    except Exception as e:
        facts["error"] = f"import cv2 failed: {e}"
        return facts
    facts.update(version=getattr(cv2, "__version__", None), path=os.path.dirname(cv2.__file__ or ""))
    try:
        info = cv2.getBuildInformation()
    except AttributeError:  # not an OpenCV build (a stand-in): nothing to report
        return facts
    facts["gstreamer"] = bool(re.search(r"GStreamer:\s*YES", info))
    facts["cuda"] = bool(re.search(r"NVIDIA CUDA:\s*YES", info))
    return facts


def collect_facts(root: Optional[str] = None, *, imports: bool = True) -> Dict[str, Any]:
    """Everything above in one JSON-ready dict (what the bench and engine sidecars record).

    imports=False skips importing onnxruntime / tensorrt / cv2 / cuda-python (versions come
    from package metadata only); torch is never imported either way.
    """
    from . import __version__

    return {
        "schema": FACTS_SCHEMA,
        "pvtseg": __version__,
        "os": {"system": platform.system(), "machine": platform.machine(), "release": platform.release()},
        "python": python_facts(),
        "jetson": jetson_facts(root),
        "cuda": cuda_facts(),
        "tensorrt": tensorrt_facts(imports),
        "cuda_python": cuda_python_facts(imports),
        "onnxruntime": onnxruntime_facts(imports),
        "opencv": opencv_facts(imports),
        "torch": {"version": dist_version("torch"), "found": module_found("torch")},
        "onnx": {"version": dist_version("onnx"), "found": module_found("onnx")},
        "numpy": {"version": dist_version("numpy"), "found": module_found("numpy")},
    }
