"""Atomic file sets under real faults: a full disk (a 2 MB tmpfs when root, else injected
ENOSPC), a read-only file system, a rename failing half-way, a process killed with SIGKILL
between two renames, and the temporaries such a run leaves behind.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _fault_helpers import fill, inject_errno, is_root, remount_ro, tmpfs

from pvtseg import io_utils, meta
from pvtseg.errors import DiskSpaceError, MetaError, WriteError
from pvtseg.io_utils import AtomicSet, atomic_write_bytes, clean_stale_temps

ROOT = Path(__file__).resolve().parents[1]


def _sidecar(graph: bytes) -> bytes:
    m = meta.make_meta(arch="x", num_classes=2, height=32, width=32, output_kind="labels", output_dtype="uint8")
    m[meta.ARTIFACTS_KEY] = {"x.onnx": meta.bytes_digest(graph)}
    return meta.dumps(m).encode()


def _write_set(folder: Path, graph: bytes) -> None:
    with AtomicSet() as s:
        s.write_bytes(folder / "x.onnx", graph)
        s.write_bytes(folder / "x.json", _sidecar(graph))
        s.commit(first=[folder / "x.json"])


def _listing(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name != "filler.bin")


@pytest.fixture
def small_fs(tmp_path):
    with tmpfs(tmp_path / "fs", "2m") as mnt:
        yield mnt, tmp_path / "fs"


def test_full_disk_keeps_previous_set(small_fs, monkeypatch):
    """ENOSPC while writing the second file: temporaries removed, the previous set intact."""
    mnt, folder = small_fs
    old = os.urandom(300_000)
    _write_set(folder, old)
    if mnt is not None:
        fill(folder, leave=400_000)  # room for one 300 kB temporary, not for two
    # Another writer fills the disk between the space check and the write: only the kernel says no.
    monkeypatch.setattr(io_utils, "check_free_space", lambda *a, **k: None)
    if mnt is None:
        inject_errno(monkeypatch, folder, errno.ENOSPC, after_bytes=400_000)
    with pytest.raises(WriteError) as ei:
        with AtomicSet() as s:
            s.write_bytes(folder / "x.onnx", os.urandom(300_000))
            s.write_bytes(folder / "x.ts", os.urandom(300_000))
            s.commit()
    e = ei.value
    assert e.errno == errno.ENOSPC and isinstance(e, OSError)
    msg = str(e)
    assert "\n" not in msg and str(folder / "x.ts") in msg and "No space left on device (ENOSPC)" in msg
    assert _listing(folder) == ["x.json", "x.onnx"]  # no temporaries, no x.ts
    assert (folder / "x.onnx").read_bytes() == old
    assert meta.read(folder / "x.onnx")["arch"] == "x"  # the old pair still matches


def test_space_is_checked_before_writing(small_fs):
    mnt, folder = small_fs
    if mnt is None:
        pytest.skip("needs a small tmpfs (root): the real free space of this disk is unknown")
    with pytest.raises(DiskSpaceError, match=r"not enough space in .*fs: x.onnx needs about 4\.\d MiB, 2\.0 MiB"):
        atomic_write_bytes(folder / "x.onnx", b"\0" * (3 << 20))
    assert _listing(folder) == []


def test_read_only_folder_is_one_line(small_fs, monkeypatch):
    mnt, folder = small_fs
    _write_set(folder, b"graph-v1")
    if mnt is None or not remount_ro(folder):
        inject_errno(monkeypatch, folder, errno.EROFS)
    with pytest.raises(WriteError) as ei:
        atomic_write_bytes(folder / "x.onnx", b"graph-v2")
    assert ei.value.errno == errno.EROFS
    assert str(ei.value) == (f"cannot write {folder / 'x.onnx'}: Read-only file system (EROFS); the file system is "
                             "mounted read-only; write somewhere else. Nothing was changed.")
    assert (folder / "x.onnx").read_bytes() == b"graph-v1"


def test_rename_failing_half_way_restores_the_previous_set(tmp_path, monkeypatch):
    _write_set(tmp_path, b"graph-v1")
    before = {p: (tmp_path / p).read_bytes() for p in ("x.onnx", "x.json")}
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(Path(dst).name)
        if len(calls) == 2:  # the sidecar is in place, the graph's rename fails
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(WriteError, match="x.onnx: Input/output error"):
        _write_set(tmp_path, b"graph-v2")
    monkeypatch.setattr(os, "replace", real)
    assert calls[:2] == ["x.json", "x.onnx"]  # sidecar first
    assert {p: (tmp_path / p).read_bytes() for p in ("x.onnx", "x.json")} == before
    assert _listing(tmp_path) == ["x.json", "x.onnx"]


_KILLED_BETWEEN_RENAMES = r"""
import os, signal, sys
from pathlib import Path
from pvtseg.io_utils import AtomicSet
sys.path.insert(0, sys.argv[2])
from test_reliability_io import _sidecar
folder = Path(sys.argv[1])
real = os.replace
n = [0]
def replace(src, dst):
    n[0] += 1
    if n[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # power cut / OOM killer between the two renames
    return real(src, dst)
os.replace = replace
with AtomicSet() as s:
    s.write_bytes(folder / "x.onnx", b"graph-v2")
    s.write_bytes(folder / "x.json", _sidecar(b"graph-v2"))
    s.commit(first=[folder / "x.json"])
"""


def test_kill_between_renames_is_detected_and_cleaned(tmp_path, monkeypatch):
    """SIGKILL between the sidecar's and the graph's rename: the reader refuses the old graph
    beside the new sidecar (instead of failing on the first frame), and the next run removes
    the temporaries the killed one left."""
    _write_set(tmp_path, b"graph-v1")
    r = subprocess.run([sys.executable, "-c", _KILLED_BETWEEN_RENAMES, str(tmp_path), str(ROOT / "tests")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    left = [p for p in _listing(tmp_path) if p not in ("x.json", "x.onnx")]
    assert left and all(".pvtseg-tmp" in p for p in left)  # the graph's temporary (+ its backups)
    assert (tmp_path / "x.onnx").read_bytes() == b"graph-v1"
    with pytest.raises(MetaError, match="does not match its sidecar .*interrupted"):
        meta.read(tmp_path / "x.onnx")
    assert meta.read(tmp_path / "x.json")["arch"] == "x"  # the sidecar alone reads fine
    monkeypatch.setattr(io_utils, "_CLEANED", set())  # a new process: it has not cleaned this folder yet
    _write_set(tmp_path, b"graph-v3")  # the next run
    assert _listing(tmp_path) == ["x.json", "x.onnx"]
    assert meta.read(tmp_path / "x.onnx") and (tmp_path / "x.onnx").read_bytes() == b"graph-v3"


_SLEEPER = r"""
import sys, time
from pathlib import Path
from pvtseg.io_utils import AtomicSet
s = AtomicSet()
s.write_bytes(Path(sys.argv[1]) / "y.onnx", b"partial")
print("ready", flush=True)
time.sleep(120)
"""


def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _SLEEPER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        procs[0].kill()
        procs[0].wait(30)  # reaped: its pid is gone
        temps = {p.pid: [n for n in _listing(tmp_path) if f"-{p.pid}-" in n] for p in procs}
        assert all(len(v) == 1 for v in temps.values())
        foreign_new = tmp_path / ".z.onnx.otherhost-1-0.pvtseg-tmp"
        foreign_old = tmp_path / ".z.ts.otherhost-1-1.pvtseg-tmp"
        legacy = tmp_path / f".z.onnx.{procs[0].pid}.tmp"  # an older pvtseg's export temporary
        for f in (foreign_new, foreign_old, legacy):
            f.write_bytes(b"x")
        os.utime(foreign_old, (time.time() - 2 * 86400,) * 2)
        removed = sorted(p.name for p in clean_stale_temps(tmp_path, force=True))
        assert removed == sorted([temps[procs[0].pid][0], foreign_old.name, legacy.name])
        assert (tmp_path / temps[procs[1].pid][0]).exists() and foreign_new.exists()
    finally:
        for p in procs:
            p.kill()
            p.wait(30)


def test_atomic_path_names_the_target_not_the_temporary(tmp_path, monkeypatch):
    inject_errno(monkeypatch, tmp_path, errno.ENOSPC, after_bytes=10)
    with pytest.raises(WriteError) as ei:
        with io_utils.atomic_path(tmp_path / "model.pth") as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.write(fd, b"0123456789abcdef")
                os.write(fd, b"more")
            finally:
                os.close(fd)
    assert str(ei.value).startswith(f"cannot write {tmp_path / 'model.pth'}: No space left on device (ENOSPC)")
    assert _listing(tmp_path) == []


def test_cli_reports_filesystem_errors_in_one_line(capsys):
    from pvtseg.apps.cli import call_main

    def main(argv):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/models/x.onnx")

    assert call_main(main, "pvtseg export", []) == 1
    err = capsys.readouterr().err
    assert err == "pvtseg export: error: /srv/models/x.onnx: Permission denied (EACCES)\n"


def test_digest_is_recorded_and_checked(tmp_path):
    art = tmp_path / "m.ts"
    art.write_bytes(b"v1")
    m = meta.make_meta(arch="x", num_classes=2, height=32, width=32, output_kind="labels", output_dtype="uint8")
    meta.write(art, m, digest=True)
    assert json.loads((tmp_path / "m.json").read_text())["artifacts"]["m.ts"] == meta.bytes_digest(b"v1")
    assert meta.ARTIFACTS_KEY not in m  # the caller's dict is not modified
    meta.read(art)
    art.write_bytes(b"v2")  # same size, other content
    with pytest.raises(MetaError, match="m.ts does not match"):
        meta.read(art)
