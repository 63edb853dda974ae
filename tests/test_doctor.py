"""`pvtseg doctor` / pvtseg.platform_info: fabricated Jetson trees (JetPack 5.1 and 6.1) and this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pvtseg.apps import doctor
from pvtseg.platform_info import (collect_facts, jetpack_for_l4t, jetson_facts, parse_nv_tegra_release,
                                  tensorrt_facts)

ROOT = Path(__file__).resolve().parents[1]

# First lines of /etc/nv_tegra_release as JetPack writes them (GCIDs from real releases).
JP51_RELEASE = ("# R35 (release), REVISION: 2.1, GCID: 32398013, BOARD: t186ref, EABI: aarch64, "
                "DATE: Sun Jan 22 03:18:23 UTC 2023\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n")
JP61_RELEASE = ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
                "DATE: Fri Sep 13 04:36:44 UTC 2024\n# KERNEL_VARIANT: oot\n")


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def _jetson_tree(root: Path, release: str, model: str, compatible: list, gpu: str, gpu_freqs: tuple,
                 cpu_freqs: tuple, pmode: str = "", conf: str = "") -> Path:
    """A Jetson's /etc, /proc/device-tree and /sys files, as far as the doctor reads them."""
    _write(root, "/etc/nv_tegra_release", release)
    _write(root, "/proc/device-tree/model", model + "\x00")  # device-tree strings end with NUL
    _write(root, "/proc/device-tree/compatible", "\x00".join(compatible) + "\x00")
    _write(root, f"/sys/class/devfreq/{gpu}/min_freq", f"{gpu_freqs[0]}\n")
    _write(root, f"/sys/class/devfreq/{gpu}/max_freq", f"{gpu_freqs[1]}\n")
    _write(root, "/sys/class/devfreq/15340000.vic/min_freq", "115200000\n")  # not the GPU: ignored
    _write(root, "/sys/class/devfreq/15340000.vic/max_freq", "729600000\n")
    for i in range(2):
        _write(root, f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_min_freq", f"{cpu_freqs[0]}\n")
        _write(root, f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_max_freq", f"{cpu_freqs[1]}\n")
    if pmode:
        _write(root, "/var/lib/nvpmodel/status", pmode)
    if conf:
        _write(root, "/etc/nvpmodel.conf", conf)
    return root


@pytest.fixture()
def xavier_jp51(tmp_path):
    """Xavier NX dev kit on JetPack 5.1 (L4T R35.2.1), 15 W 6-core mode, clocks not locked."""
    conf = textwrap.dedent("""\
        < PARAM TYPE=FILE NAME=CPU_ONLINE >
        < POWER_MODEL ID=0 NAME=MODE_15W_2CORE >
        CPU_ONLINE CORE_0 1
        < POWER_MODEL ID=2 NAME=MODE_15W_6CORE >
        CPU_ONLINE CORE_0 1
        < POWER_MODEL ID=8 NAME=MODE_20W_6CORE >
        < PM_CONFIG DEFAULT=2 >
        """)
    return _jetson_tree(tmp_path / "xnx", JP51_RELEASE, "NVIDIA Jetson Xavier NX Developer Kit",
                        ["nvidia,p3509-0000+p3668-0001", "nvidia,jetson-xavier-nx", "nvidia,tegra194"],
                        "17000000.gv11b", (114750000, 1109250000), (1190400, 1420800), "pmode:0002\n", conf)


@pytest.fixture()
def orin_jp61(tmp_path):
    """Orin Nano dev kit on JetPack 6.1 (L4T R36.4.0), 15 W mode, clocks locked. MAXN is not id 0 there."""
    conf = ("< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=25W >\n"
            "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n< POWER_MODEL ID=3 NAME=7W >\n< PM_CONFIG DEFAULT=0 >\n")
    return _jetson_tree(tmp_path / "orin", JP61_RELEASE, "NVIDIA Jetson Orin Nano Developer Kit",
                        ["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"],
                        "17000000.ga10b", (624750000, 624750000), (1510400, 1510400), "pmode:0000\n", conf)


def _run_doctor(*args: str, env_extra: dict = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, str(ROOT / "python" / "doctor.py"), *args], capture_output=True,
                          text=True, env=env, timeout=120)


# -- release parsing ---------------------------------------------------------------------------------

def test_l4t_release_and_jetpack_mapping():
    assert parse_nv_tegra_release(JP51_RELEASE) == "35.2.1"
    assert parse_nv_tegra_release(JP61_RELEASE) == "36.4.0"
    assert parse_nv_tegra_release("garbage") is None
    assert jetpack_for_l4t("35.2.1") == ("5.1", "5.1")
    assert jetpack_for_l4t("35.4.1") == ("5.1.2", "5.1")
    assert jetpack_for_l4t("35.9.9") == ("5.1.x", "5.1")     # unknown revision: still the 5.1 family
    assert jetpack_for_l4t("36.3.0") == ("6.0", "6.0")
    assert jetpack_for_l4t("36.4.3") == ("6.2", "6.1")       # 6.2 ships the 6.1 stack (CUDA 12.6, TRT 10.3)
    assert jetpack_for_l4t("36.4.9") == ("6.1 or later", "6.1")
    assert jetpack_for_l4t("32.7.1") == ("4.x or older", None)


# -- fabricated Jetsons --------------------------------------------------------------------------------

def test_jetpack51_xavier_facts(xavier_jp51):
    j = jetson_facts(str(xavier_jp51))
    assert j["is_jetson"] and j["model"] == "NVIDIA Jetson Xavier NX Developer Kit"
    assert (j["soc"], j["soc_compute_capability"], j["l4t"], j["jetpack"]) == ("tegra194", "7.2", "35.2.1", "5.1")
    assert j["jetpack_stack"]["python"] == "3.8" and j["jetpack_stack"]["tensorrt"] == "8.5.2"
    assert j["power_mode"] == {"id": 2, "name": "MODE_15W_6CORE", "maxn_id": None}  # Xavier NX has no MAXN
    assert j["clocks"]["locked"] is False and j["clocks"]["gpu_hz"] == [114750000, 1109250000]


def test_jetpack61_orin_facts(orin_jp61):
    j = jetson_facts(str(orin_jp61))
    assert (j["soc"], j["soc_compute_capability"], j["l4t"], j["jetpack"]) == ("tegra234", "8.7", "36.4.0", "6.1")
    assert j["jetpack_stack"]["cuda"] == "12.6" and j["jetpack_stack"]["tensorrt"] == "10.3"
    assert j["power_mode"] == {"id": 0, "name": "15W", "maxn_id": 2}
    assert j["clocks"]["locked"] is True


def test_power_mode_unknown_without_nvpmodel_status(orin_jp61):
    (orin_jp61 / "var/lib/nvpmodel/status").unlink()
    assert jetson_facts(str(orin_jp61))["power_mode"] is None  # below a fabricated root: not guessed


def test_unlocked_orin_names_its_maxn_mode(orin_jp61):
    _write(orin_jp61, "/sys/class/devfreq/17000000.ga10b/min_freq", "306000000\n")
    notes = doctor.advice(collect_facts(str(orin_jp61), imports=False))
    assert any("`sudo nvpmodel -m 2` (MAXN)" in n for n in notes)


def test_clocks_locked_needs_gpu_and_every_cpu(orin_jp61):
    _write(orin_jp61, "/sys/devices/system/cpu/cpu1/cpufreq/scaling_min_freq", "729600\n")
    assert jetson_facts(str(orin_jp61))["clocks"]["locked"] is False


def test_doctor_screen_jetpack51(xavier_jp51):
    r = _run_doctor("--root", str(xavier_jp51))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Jetson       : NVIDIA Jetson Xavier NX Developer Kit (tegra194)" in out
    assert "R35.2.1 -> JetPack 5.1; ships Python 3.8, CUDA 11.4, TensorRT 8.5.2" in out
    assert "Power mode   : MODE_15W_6CORE (id 2); clocks locked: no" in out
    assert "sudo jetson_clocks" in out and "the fastest `nvpmodel` mode" in out
    # cuda-python is not installed here: the hint names the JetPack 5.1 (CUDA 11.4) range
    assert "cuda-python>=11.5,<11.8.3" in out
    assert "python3-libnvinfer" in out       # TensorRT from apt on a Jetson, not pip
    assert "JetPack's Python bindings (TensorRT, OpenCV) are built for Python 3.8" in out
    assert len(out.splitlines()) <= 40, "doctor must fit one screen"


def test_doctor_json_jetpack61_env_root(orin_jp61):
    r = _run_doctor("--json", env_extra={"PVTSEG_SYSROOT": str(orin_jp61)})
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["facts"]["jetson"]["jetpack"] == "6.1"
    engine = next(b for b in data["backends"] if b["artifact"] == ".engine")
    hints = " ".join(engine["install"])
    if "cuda-python" in engine["missing"]:
        assert "cuda-python>=12.2,<13" in hints
    assert not any("jetson_clocks" in a for a in data["advice"])  # clocks are locked


def test_pip_opencv_on_a_jetson_is_flagged(xavier_jp51):
    facts = collect_facts(str(xavier_jp51), imports=False)
    facts["opencv"].update(found=True, pip_wheels=["opencv-python-headless 4.10.0.84"], gstreamer=False)
    notes = doctor.advice(facts)
    assert any("shadows JetPack's OpenCV" in n and "GStreamer" in n for n in notes)
    facts["opencv"].update(pip_wheels=[], gstreamer=True)
    assert not any("shadows" in n or "GStreamer" in n for n in doctor.advice(facts))


def test_venv_without_system_site_packages_on_a_jetson(xavier_jp51):
    facts = collect_facts(str(xavier_jp51), imports=False)
    facts["python"].update(venv=True, venv_system_site_packages=False)
    assert any("--system-site-packages" in n for n in doctor.advice(facts))


def test_cuda_python_major_must_match_driver(xavier_jp51):
    facts = collect_facts(str(xavier_jp51), imports=False)
    facts["cuda"]["driver"] = "11.4"
    facts["cuda_python"]["version"] = "12.6.2"
    notes = doctor.advice(facts)
    assert any("is for CUDA 12.x but the driver is CUDA 11.4" in n and "<11.8.3" in n for n in notes)
    facts["cuda_python"]["version"] = "11.8.2"
    assert not any("cuda-python" in n for n in doctor.advice(facts))


# -- TensorRT probe, with a stand-in tensorrt module ------------------------------------------------

FAKE_TRT = """
__version__ = "8.5.2.2"
class Logger:
    ERROR = 1
    def __init__(self, severity=None):
        self.severity = severity
class Builder:
    def __init__(self, logger):
        if {fail!r}:
            raise RuntimeError("CUDA initialization failure with error: 35")
        self.platform_has_fast_fp16 = True
        self.platform_has_fast_int8 = True
        self.num_DLA_cores = 2
"""


@pytest.mark.parametrize("fail", [False, True])
def test_tensorrt_capabilities_reported(tmp_path, xavier_jp51, fail):
    pkg = tmp_path / "fake" / "tensorrt"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_TRT.format(fail=fail))
    r = _run_doctor("--root", str(xavier_jp51), env_extra={"PYTHONPATH": str(tmp_path / "fake")})
    assert r.returncode == 0, r.stderr
    if fail:
        assert "TensorRT     : 8.5.2.2 (builder: CUDA initialization failure with error: 35)" in r.stdout
    else:
        assert "TensorRT     : 8.5.2.2 (FP16 yes, INT8 yes, DLA cores 2)" in r.stdout


def test_tensorrt_type_stubs_are_not_tensorrt(tmp_path, monkeypatch):
    pkg = tmp_path / "tensorrt"
    pkg.mkdir()
    (pkg / "__init__.pyi").write_text("class Builder: ...\n")
    (pkg / "__init__.py").write_text("")  # what a stubs-only install looks like to `import tensorrt`
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    facts = tensorrt_facts(imports=True)
    assert "type stubs" in facts["error"]
    assert "tensorrt" in doctor.backend_status({**collect_facts(imports=False), "tensorrt": facts})[0]["missing"]


# -- this machine -------------------------------------------------------------------------------------

def test_doctor_on_this_machine_matches_the_libraries():
    """No Jetson here: it says so; versions and providers agree with the libraries themselves."""
    import cv2
    import onnxruntime

    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import json, sys
        from pvtseg.apps.doctor import main
        main(["--json"])
        print(json.dumps({"torch_imported": "torch" in sys.modules}))
        """)], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    report, tail = r.stdout.rsplit("\n{", 1)
    data, probe = json.loads(report), json.loads("{" + tail)
    assert probe["torch_imported"] is False, "the doctor imported torch"
    f = data["facts"]
    if not Path("/etc/nv_tegra_release").exists():
        assert f["jetson"]["is_jetson"] is False
    assert f["onnxruntime"]["version"] == onnxruntime.__version__
    assert f["onnxruntime"]["providers"] == onnxruntime.get_available_providers()
    assert f["opencv"]["version"] == cv2.__version__
    # independent of the build-information text the doctor parses: ask the video I/O registry
    assert f["opencv"]["gstreamer"] == cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER)
    onnx_row = next(b for b in data["backends"] if b["artifact"] == ".onnx")
    assert onnx_row["ready"] is True


def test_pvtseg_doctor_command():
    r = subprocess.run([sys.executable, "-m", "pvtseg", "doctor"], capture_output=True, text=True, timeout=120,
                       cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    assert "Backends (artifact -> what runs it):" in r.stdout and ".onnx" in r.stdout
    if not Path("/etc/nv_tegra_release").exists():
        assert "not a Jetson" in r.stdout
