"""`pvtseg doctor` = python/doctor.py: one screen on what this machine can run, and what to install.

    pvtseg doctor              # Jetson / JetPack, power and clocks, CUDA, TensorRT, ONNX Runtime,
                               # torch, OpenCV; which backend loads which artifact; what is missing
    pvtseg doctor --json       # the same facts as JSON (what the bench records)
    pvtseg doctor --root DIR   # read /etc, /proc and /sys below DIR (fabricated trees, tests)

The facts come from pvtseg.platform_info.collect_facts (no torch import, Python 3.8).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

PROG = "pvtseg doctor"


# -- what to install, per machine ---------------------------------------------------------------

def _jetpack_major(facts: Dict[str, Any]) -> Optional[str]:
    stack = facts["jetson"].get("jetpack_stack") or {}
    family = stack.get("family")
    return family.split(".")[0] if family else None


def install_hint(what: str, facts: Dict[str, Any]) -> str:
    """The command (or pointer) that provides `what` on this machine."""
    from ..platform_info import CUDA_PYTHON_FOR_JETPACK

    jetson = facts["jetson"]["is_jetson"]
    if what == "opencv":
        return ("JetPack's OpenCV (with GStreamer): `sudo apt install nvidia-opencv`, seen from a venv only "
                "if it was made with --system-site-packages; never pip-install opencv-python* here"
                if jetson else '`pip install "pvtseg[opencv]"` (opencv-python-headless)')
    if what == "tensorrt":
        return ("JetPack's TensorRT: `sudo apt install python3-libnvinfer` (a venv needs "
                "--system-site-packages to see it)" if jetson else "`pip install tensorrt`")
    if what == "cuda-python":
        rng = CUDA_PYTHON_FOR_JETPACK.get(_jetpack_major(facts) or "")
        if rng:
            return f'`pip install "{rng}"`'
        return "`pip install cuda-python` with the same major version as the driver's CUDA"
    if what == "onnxruntime":
        return ("`pip install onnxruntime` (CPU); for CUDA an onnxruntime-gpu wheel built for this JetPack"
                if jetson else "`pip install onnxruntime` (or onnxruntime-gpu for CUDA)")
    if what == "torch":
        return ("NVIDIA's PyTorch wheel for this JetPack (PyPI's aarch64 torch has no CUDA); only needed "
                "for .ts artifacts, export and training" if jetson else '`pip install "pvtseg[torch]"`')
    if what == "gpu":
        return "an NVIDIA GPU with its driver (libcuda); engines are built on the GPU that runs them"
    return what


# -- which backend can load which artifact ----------------------------------------------------------

def backend_status(facts: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per artifact kind: ready or not, and what is missing."""
    cv_ok = facts["opencv"].get("found") and not facts["opencv"].get("error")
    common = [] if cv_ok else ["opencv"]
    trt = facts["tensorrt"]
    trt_ok = bool(trt.get("found") and not trt.get("error") and trt.get("path") is not None)  # imported
    gpu_ok = facts["cuda"].get("device") is not None
    cupy_ok = bool(facts["cuda_python"].get("found") and not facts["cuda_python"].get("error"))
    ort = facts["onnxruntime"]
    rows = [
        {"artifact": ".engine", "backend": "TensorRT",
         "missing": common + [m for m, ok in (("tensorrt", trt_ok), ("cuda-python", cupy_ok), ("gpu", gpu_ok))
                              if not ok]},
        {"artifact": ".onnx", "backend": "ONNX Runtime",
         "missing": common + ([] if ort.get("found") and not ort.get("error") else ["onnxruntime"]),
         "detail": ", ".join(p.replace("ExecutionProvider", "") for p in ort.get("providers", []))},
        {"artifact": ".ts", "backend": "TorchScript",
         "missing": common + ([] if facts["torch"].get("found") else ["torch"])},
        {"artifact": "build-engine", "backend": "TensorRT builder",
         "missing": [m for m, ok in (("tensorrt", trt_ok), ("gpu", gpu_ok)) if not ok]},
    ]
    for r in rows:
        r["ready"] = not r["missing"]
        r["install"] = [install_hint(m, facts) for m in r["missing"]]
    return rows


def _major(version: Optional[str]) -> Optional[int]:
    try:
        return int(str(version).split(".")[0])
    except (TypeError, ValueError):
        return None


def advice(facts: Dict[str, Any]) -> List[str]:
    """Problems worth fixing that the backend table does not show."""
    out: List[str] = []
    j, cv = facts["jetson"], facts["opencv"]
    if j["is_jetson"]:
        if cv.get("pip_wheels"):
            out.append(f"pip's {', '.join(cv['pip_wheels'])} shadows JetPack's OpenCV"
                       f"{' (this one has no GStreamer)' if cv.get('gstreamer') is False else ''}: the CSI "
                       "camera (nvarguscamerasrc) needs GStreamer. `pip uninstall` it.")
        elif cv.get("gstreamer") is False:
            out.append("this OpenCV has no GStreamer: CSI cameras (nvarguscamerasrc) cannot open. "
                       + install_hint("opencv", facts))
        py = facts["python"]
        if py["venv"] and py["venv_system_site_packages"] is False:
            out.append("this venv cannot see JetPack's TensorRT / OpenCV: recreate it with "
                       "`python3 -m venv --system-site-packages`.")
        stack = j.get("jetpack_stack") or {}
        if stack.get("python") and not py["version"].startswith(stack["python"] + "."):
            out.append(f"JetPack's Python bindings (TensorRT, OpenCV) are built for Python {stack['python']}; "
                       f"this is Python {py['version']}.")
        if (j.get("clocks") or {}).get("locked") is False:
            maxn = (j.get("power_mode") or {}).get("maxn_id")
            mode = f"`sudo nvpmodel -m {maxn}` (MAXN)" if maxn is not None else "the fastest `nvpmodel` mode"
            out.append(f"clocks are not locked: for steady timings run `sudo jetson_clocks` (and {mode} "
                       "for the most power).")
    drv, cupy = _major(facts["cuda"].get("driver")), _major(facts["cuda_python"].get("version"))
    if drv is not None and cupy is not None and drv != cupy:
        out.append(f"cuda-python {facts['cuda_python']['version']} is for CUDA {cupy}.x but the driver is CUDA "
                   f"{facts['cuda']['driver']}: {install_hint('cuda-python', facts)}.")
    return out


# -- rendering ---------------------------------------------------------------------------------------

def _yes(v: Any) -> str:
    return "?" if v is None else ("yes" if v else "no")


def _jetson_lines(j: Dict[str, Any]) -> List[str]:
    if not j["is_jetson"]:
        return [f"Jetson       : not a Jetson ({j.get('reason')})"]
    lines = [f"Jetson       : {j.get('model') or '?'} ({j.get('soc') or 'unknown SoC'})"]
    stack = j.get("jetpack_stack")
    expect = (f"; ships Python {stack['python']}, CUDA {stack['cuda']}, TensorRT {stack['tensorrt']}, "
              f"Ubuntu {stack['ubuntu']}") if stack else ""
    lines.append(f"L4T / JetPack: R{j.get('l4t') or '?'} -> JetPack {j.get('jetpack') or '?'}{expect}")
    pm, ck = j.get("power_mode"), j.get("clocks") or {}
    mode = f"{pm.get('name') or '?'} (id {pm.get('id')})" if pm else "unknown (nvpmodel not readable)"
    lines.append(f"Power mode   : {mode}; clocks locked: {_yes(ck.get('locked'))}")
    return lines


def _software_lines(f: Dict[str, Any]) -> List[str]:
    c, t, cp, o, cv = f["cuda"], f["tensorrt"], f["cuda_python"], f["onnxruntime"], f["opencv"]
    cupy = cp.get("error") or cp.get("version") or ("found" if cp.get("found") else "not installed")
    cuda = (f"driver {c['driver'] or '?'}; {c['device']}, compute capability {c['compute_capability']}"
            if c.get("device") else f"none ({c.get('reason')})")
    if t.get("error") or not t.get("found"):
        trt = t.get("error") or "not installed"
    else:
        caps = (f" (FP16 {_yes(t.get('fast_fp16'))}, INT8 {_yes(t.get('fast_int8'))}, "
                f"DLA cores {t.get('dla_cores')})" if "fast_fp16" in t else
                (f" (builder: {t['builder_error']})" if t.get("builder_error") else ""))
        trt = f"{t.get('version') or '?'}{caps}"
    cvs = "not installed" if not cv.get("found") else cv.get("error") or (
        f"{cv.get('version')} from {cv.get('path')} (GStreamer {_yes(cv.get('gstreamer'))}, "
        f"CUDA {_yes(cv.get('cuda'))})")
    return [f"CUDA         : {cuda}",
            f"TensorRT     : {trt}",
            f"cuda-python  : {cupy}",
            f"ONNX Runtime : {o.get('error') or o.get('version') or 'not installed'}",
            f"torch        : {f['torch'].get('version') or 'not installed'} (not imported)",
            f"OpenCV       : {cvs}",
            f"numpy / onnx : {f['numpy'].get('version') or 'not installed'} / "
            f"{f['onnx'].get('version') or 'not installed'}"]


def render(facts: Dict[str, Any], rows: List[Dict[str, Any]], notes: List[str]) -> str:
    py, osf = facts["python"], facts["os"]
    lines = [f"{PROG}: pvtseg {facts['pvtseg']}, Python {py['version']}"
             f"{' (venv)' if py['venv'] else ''}, {osf['system']} {osf['machine']}"]
    lines += _jetson_lines(facts["jetson"]) + _software_lines(facts)
    lines += ["", "Backends (artifact -> what runs it):"]
    for r in rows:
        state = "ready" if r["ready"] else "missing " + ", ".join(r["missing"])
        detail = f" [{r['detail']}]" if r.get("detail") and r["ready"] else ""
        lines.append(f"  {r['artifact']:<13} {r['backend']:<17} {state}{detail}")
    todo = [f"{m}: {h}" for r in rows for m, h in zip(r["missing"], r["install"])]
    todo = list(dict.fromkeys(todo)) + notes  # same component missing for two rows: say it once
    if todo:
        lines += ["", "To do:"] + [f"  - {t}" for t in todo]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the facts, backends and advice as JSON")
    p.add_argument("--root", metavar="DIR", help="read /etc, /proc, /sys below DIR (default: / or $PVTSEG_SYSROOT)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ..platform_info import collect_facts

    facts = collect_facts(args.root)
    rows, notes = backend_status(facts), advice(facts)
    if args.json:
        print(json.dumps({"facts": facts, "backends": rows, "advice": notes}, indent=2))
    else:
        print(render(facts, rows, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
