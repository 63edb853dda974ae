"""Export under faults: a full disk at the TorchScript write (torch's C++ writer used to abort
the process), no room up front, a read-only folder, a graph replaced behind its sidecar,
external-data ONNX as one set, a killed run's temporaries, and an input size that cannot fit
in memory (8192x8192, refused in seconds with the estimate).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _fault_helpers import fill, inject_errno, remount_ro, tmpfs

from pvtseg import io_utils, meta
from pvtseg.errors import ExportMemoryError, MetaError, WriteError
from pvtseg.export import artifacts

ROOT = Path(__file__).resolve().parents[1]
ARCH = "pvt_v2_b0_segformer"


@pytest.fixture(scope="module")
def model():
    import torch

    from pvtseg.models import create_model

    torch.manual_seed(0)
    return create_model(ARCH, num_classes=11).eval()


def _export(model, out, **kw):
    kw.setdefault("verify", False)
    kw.setdefault("check_memory", False)
    return artifacts.export_model(model, out, arch=ARCH, height=64, width=64, log=lambda *a: None, **kw)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _cli(args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "python" / "export_model.py"), "--model", ARCH,
                           "--height", "64", "--width", "64", "--no-verify", *args],
                          capture_output=True, text=True, timeout=timeout)


def _one_line_error(r, *parts):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if "warning: no --checkpoint" not in ln]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("pvtseg export: error: ") and all(p in lines[0] for p in parts), lines[0]


def test_full_disk_keeps_previous_export(tmp_path, model, monkeypatch):
    """A 24 MB tmpfs holds one 14 MB TorchScript export but not a second one beside it."""
    with tmpfs(tmp_path / "fs", "24m") as mnt:
        out = tmp_path / "fs" / "m"
        _export(model, out, formats=("torchscript",))
        old = {p: _sha(out.with_suffix(p)) for p in (".ts", ".json")}
        # The disk fills after the up-front check: only the kernel's ENOSPC stops the write.
        monkeypatch.setattr(io_utils, "check_free_space", lambda *a, **k: None)
        monkeypatch.setattr(artifacts, "check_free_space", lambda *a, **k: None)
        if mnt is None:
            inject_errno(monkeypatch, out.parent, after_bytes=1 << 20)
        with pytest.raises(WriteError) as ei:  # before: torch.jit.save aborted the process (exit -6)
            _export(model, out, formats=("torchscript",))
        assert "No space left on device (ENOSPC)" in str(ei.value) and str(out.with_suffix(".ts")) in str(ei.value)
        monkeypatch.undo()
        assert sorted(os.listdir(out.parent)) == ["m.json", "m.ts"]  # no temporaries
        assert {p: _sha(out.with_suffix(p)) for p in (".ts", ".json")} == old
        assert meta.read(out.with_suffix(".ts"))["arch"] == ARCH  # still a matching pair

        if mnt is None:
            return
        r = _cli(["--formats", "onnx", "--out", str(out)])  # the script = `pvtseg export`
        _one_line_error(r, "not enough space in", "MiB is free")
        assert sorted(os.listdir(out.parent)) == ["m.json", "m.ts"]

        assert remount_ro(out.parent)
        t0 = time.monotonic()
        r = _cli(["--out", str(out / "sub" / "m")])
        _one_line_error(r, str(out), "Read-only file system (EROFS)")
        r = _cli(["--out", str(out.with_suffix(".ts") / "sub" / "m")])  # a file where a folder should be
        _one_line_error(r, "Not a directory (ENOTDIR)")
        assert time.monotonic() - t0 < 120


def test_graph_replaced_behind_its_sidecar_is_refused(tmp_path, model):
    """The state a crash between two renames (or a copy over the file) leaves: the runtime
    refuses it on load, with the fix, instead of running a graph its sidecar does not describe."""
    import torch

    from pvtseg.models import create_model
    from pvtseg.runtime import Segmenter

    torch.manual_seed(1)
    other = create_model(ARCH, num_classes=11).eval()
    a = _export(model, tmp_path / "a" / "m", formats=("onnx",))
    b = _export(other, tmp_path / "b" / "m", formats=("onnx",))
    Segmenter(a["onnx"]).close()
    a["onnx"].write_bytes(b["onnx"].read_bytes())
    with pytest.raises(MetaError, match=r"m.onnx does not match its sidecar .*Re-export"):
        Segmenter(a["onnx"])


def test_external_data_onnx_is_one_set_and_killed_temporaries_go(tmp_path, model, monkeypatch):
    """Past protobuf's 2 GB limit the weights go to <name>.onnx.data (the limit is lowered here):
    graph, weights and sidecar are renamed as one set, the self-check runs on the temporaries,
    and the temporaries of a killed earlier run in that folder are removed."""
    from pvtseg.runtime import Segmenter

    out = tmp_path / "m"
    tmp_path.mkdir(exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = io_utils._host()
    stale = [tmp_path / f".m.onnx.{host}-{dead.pid}-0.pvtseg-tmp", tmp_path / f".m.onnx.{host}-{dead.pid}-1.pvtseg-tmp"]
    stale[0].write_bytes(b"half an old export")
    stale[1].mkdir()
    monkeypatch.setattr(artifacts, "ONNX_2GB", 1 << 20)
    paths = _export(model, out, formats=("onnx",), verify=True)
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.onnx", "m.onnx.data"]
    side = meta.read(paths["onnx"])
    assert set(side["artifacts"]) == {"m.onnx", "m.onnx.data"}
    assert side["artifacts"]["m.onnx.data"]["bytes"] == (tmp_path / "m.onnx.data").stat().st_size > 10 << 20
    assert any("onnxruntime" in line for line in side["export"]["check"])
    import numpy as np

    with Segmenter(paths["onnx"]) as seg:
        labels = seg(np.zeros((48, 80, 3), np.uint8))
    assert labels.shape == (48, 80) and labels.dtype == np.uint8


def test_8192_is_refused_in_seconds(tmp_path, model, capsys):
    """b0 at 8192x8192: stage-1 attention alone is a 4M x 65K map (TiBs); refused with the estimate."""
    lines = []
    t0 = time.monotonic()
    with pytest.raises(ExportMemoryError) as ei:
        artifacts.export_model(model, tmp_path / "big", arch=ARCH, height=8192, width=8192, log=lines.append)
    took = time.monotonic() - t0
    msg = str(ei.value)
    assert took < 30, took
    assert "1x3x8192x8192 needs ~" in msg and "TiB" not in msg and "GiB" in msg and "available" in msg
    assert "--force-size" in msg and "--height/--width" in msg
    est = float(msg.split("needs ~")[1].split(" GiB")[0])
    assert est > 1000  # >= 1 TiB: the 4M x 65K attention map of stage 1 (x6 for the check's passes)
    assert os.listdir(tmp_path) == []  # nothing written, not even the folder's contents
    assert any(line.startswith("memory: 1x3x8192x8192 needs") for line in lines)


def test_cli_flag_and_small_sizes_pass_the_check(tmp_path, model):
    """The usual sizes pass the memory check (their estimate is far below what any machine has)."""
    from pvtseg.export.cli import build_parser
    from pvtseg.export.memory import available_memory, estimate_export_memory

    assert build_parser().parse_args(["--model", ARCH, "--out", "x", "--force-size"]).force_size
    est = estimate_export_memory(model, 1, 384, 480, output="labels")
    assert est.bytes < 1 << 30 and est.bytes < (available_memory() or 1 << 40)
    assert est.op_bytes > 0 and est.largest_op
