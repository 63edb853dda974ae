"""`pvtseg demo` recording under faults: SIGTERM / SIGINT sent to a real demo process, a disk
that fills mid-recording (a small tmpfs when root, else an injected free-space reading), an
output that is the source, montage extensions, read-only destinations, and a truncated
cached export.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from _fault_helpers import fill, remount_ro, tmpfs
from _runtime_artifacts import cached_artifacts, write_video

from pvtseg.apps import demo

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "models" / "samples" / "camvid_seq05vd.mp4"


@pytest.fixture(scope="module")
def art():
    return cached_artifacts("tiny", height=64, width=64, output="labels")


def _frames(path: Path) -> int:
    """Frames OpenCV decodes from `path` (an independent reader of what the demo wrote)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


class _Lines:
    """Collects a process's output lines on a thread, so the test can wait for one."""

    def __init__(self, stream) -> None:
        self.lines: list = []
        self._t = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self._t.start()

    def wait_for(self, pattern: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, ln) for ln in list(self.lines)):
                return True
            time.sleep(0.1)
        return False

    def text(self) -> str:
        self._t.join(timeout=10)
        return "".join(self.lines)


@pytest.mark.parametrize("sig,rc", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_finishes_the_recording(tmp_path, art, sig, rc):
    """systemd / docker stop send SIGTERM, a terminal Ctrl-C SIGINT: the frames recorded so far play."""
    assert CLIP.is_file()
    out = tmp_path / "rec" / "o.mp4"
    p = subprocess.Popen([sys.executable, "-m", "pvtseg", "demo", "--model", str(art["onnx"]), "--source", str(CLIP),
                          "--loop", "--output", str(out), "--headless"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        so, se = _Lines(p.stdout), _Lines(p.stderr)
        assert so.wait_for(r"^frame \d+", 180), so.text() + se.text()  # recording for a second at least
        p.send_signal(sig)
        assert p.wait(timeout=60) == rc
    finally:
        p.kill()
        p.wait(30)
    stdout, stderr = so.text(), se.text()
    assert f"{signal.Signals(sig).name}: stopping after this frame" in stderr
    summary = stdout.strip().splitlines()[-1]
    m = re.search(r"^pvtseg demo: (\d+) frames in .*stopped by (\w+).*wrote (\S+) \((\d+) frames\)", summary)
    assert m, summary
    assert m.group(2) == signal.Signals(sig).name and Path(m.group(3)) == out
    assert int(m.group(1)) == int(m.group(4)) >= 1
    assert _frames(out) == int(m.group(4))  # every frame the log reports, playable
    assert os.listdir(out.parent) == ["o.mp4"]  # no hidden partial file left


def test_killed_recording_leaves_a_temporary_the_next_run_removes(tmp_path, art):
    out = tmp_path / "o.mp4"
    p = subprocess.Popen([sys.executable, "-m", "pvtseg", "demo", "--model", str(art["onnx"]), "--source", str(CLIP),
                          "--loop", "--output", str(out), "--headless"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        assert _Lines(p.stdout).wait_for(r"^frame \d+", 180)
    finally:
        p.kill()  # SIGKILL: no handler runs
        p.wait(30)
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(".o.mp4.") and ".pvtseg-tmp" in left[0] and not out.exists()
    video = write_video(tmp_path / "in.mp4", n=3, h=64, w=64)
    assert demo.main(["--model", str(art["onnx"]), "--source", str(video), "--output", str(out), "--headless",
                      "-q"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["in.mp4", "o.mp4"] and _frames(out) == 3


def test_disk_filling_mid_recording_keeps_a_playable_file(tmp_path, art, monkeypatch, capsys):
    with tmpfs(tmp_path / "fs", "4m") as mnt:
        out = tmp_path / "fs" / "o.mp4"
        if mnt is not None:
            fill(out.parent, leave=1_600_000)
        else:  # no tmpfs: the file system "has" 1.6 MB minus what the recording wrote so far
            def fake_free(_):
                tmps = list(out.parent.glob(".o.mp4.*"))
                return 1_600_000 - sum(t.stat().st_size for t in tmps)

            monkeypatch.setattr(demo, "free_bytes", fake_free)
        rc = demo.main(["--model", str(art["onnx"]), "--source", str(CLIP), "--loop", "--output", str(out),
                        "--headless", "-q"])
        err = capsys.readouterr().err
        assert rc == 1, err
        m = re.search(r"kept the (\d+) frames written so far in (\S+)", err)
        assert m and Path(m.group(2)) == out, err
        assert re.search(r"error: stopped recording .*o.mp4 after \d+ frames: .* MiB left .*ENOSPC", err), err
        n = int(m.group(1))
        assert n >= 5 and _frames(out) == n
        assert sorted(p.name for p in out.parent.iterdir()) == sorted(["o.mp4"] + (["filler.bin"] if mnt else []))


def test_disk_full_behind_the_check_is_reported_not_hidden(tmp_path, art, monkeypatch, capsys):
    """Another process fills the disk (the free-space check sees plenty): the encoder's writes
    fail silently, the file cannot be finished; the demo says so, exit 1, instead of 'wrote'."""
    with tmpfs(tmp_path / "fs", "3m") as mnt:
        if mnt is None:
            pytest.skip("needs a small tmpfs (root): OpenCV's encoder writes through FFmpeg, not os.write")
        out = mnt / "o.mp4"
        fill(mnt, leave=300_000)
        # The disk fills after the start (another process): neither free-space check sees it coming.
        monkeypatch.setattr(demo, "check_free_space", lambda *a, **k: None)
        monkeypatch.setattr(demo, "free_bytes", lambda _: None)
        rc = demo.main(["--model", str(art["onnx"]), "--source", str(CLIP), "--output", str(out), "--headless",
                        "-q", "--max-frames", "60"])
        err = capsys.readouterr().err
        assert rc == 1 and "cannot finish the recording" in err and "does not play" in err, err
        assert not out.exists() and (mnt / "o.unfinished.mp4").exists()


def test_output_that_is_the_source_is_refused(tmp_path, art, capsys):
    video = write_video(tmp_path / "in.mp4", n=5, h=64, w=64)
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    before = hashlib.sha256(video.read_bytes()).hexdigest()
    for out in (video, link, tmp_path / "sub" / ".." / "in.mp4"):
        assert demo.main(["--model", str(art["onnx"]), "--source", str(video), "--output", str(out),
                          "--headless"]) == 1
        err = capsys.readouterr().err
        assert "is the source video" in err and err.count("\n") == 1
    assert hashlib.sha256(video.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("ext,magic", [(".jpg", b"\xff\xd8\xff"), (".jpeg", b"\xff\xd8\xff"), (".bmp", b"BM"),
                                       (".png", b"\x89PNG")])
def test_montage_is_encoded_by_its_extension(tmp_path, art, ext, magic):
    video = write_video(tmp_path / "in.mp4", n=6, h=64, w=64)
    mont = tmp_path / f"grid{ext}"
    assert demo.main(["--model", str(art["onnx"]), "--source", str(video), "--montage", str(mont), "--headless",
                      "-q"]) == 0
    assert mont.read_bytes()[:len(magic)] == magic
    assert cv2.imread(str(mont)) is not None


def test_unknown_extensions_are_refused_before_running(tmp_path, art, capsys):
    video = write_video(tmp_path / "in.mp4", n=3, h=64, w=64)
    for flag, name, msg in (("--montage", "grid.gif", "unknown image extension; use one of .png, .jpg, .jpeg, .bmp"),
                            ("--output", "o.webm", "unknown video extension")):
        assert demo.main(["--model", str(art["onnx"]), "--source", str(video), flag, str(tmp_path / name),
                          "--headless"]) == 1
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
        assert not (tmp_path / name).exists()


def test_read_only_destinations_are_one_line(tmp_path, art, capsys):
    video = write_video(tmp_path / "in.mp4", n=3, h=64, w=64)
    with tmpfs(tmp_path / "ro", "1m") as mnt:
        if mnt is None or not remount_ro(mnt):
            ro = tmp_path / "ro"
            ro.chmod(0o555)
            if os.access(ro, os.W_OK):  # root ignores modes: nothing to test without a mount
                pytest.skip("cannot make a read-only folder here (root without mount)")
        for flag, name in (("--output", "o.mp4"), ("--montage", "m.png")):
            rc = demo.main(["--model", str(art["onnx"]), "--source", str(video), flag, str(tmp_path / "ro" / name),
                            "--headless"])
            err = capsys.readouterr().err
            assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
            assert err.startswith(f"pvtseg demo: error: cannot write {flag} into {tmp_path / 'ro'}: ")
            assert "Read-only file system (EROFS)" in err or "Permission denied (EACCES)" in err


def test_truncated_cached_export_is_rebuilt(tmp_path, monkeypatch, capsys):
    import torch

    from pvtseg import meta
    from pvtseg.models import camvid, create_model

    models = tmp_path / "models"
    models.mkdir()
    torch.manual_seed(0)
    ckpt = models / f"{demo.DEFAULT_NAME}.pth"
    torch.save(create_model("pvt_v2_b0_segformer", num_classes=11).state_dict(), ckpt)
    meta.write(ckpt.with_suffix(".json"), meta.make_meta(
        arch="pvt_v2_b0_segformer", num_classes=11, height=64, width=64, output_kind="logits",
        output_dtype="float32", output_stride=4, class_names=camvid.CLASS_NAMES, palette=camvid.PALETTE))
    (models / "samples").mkdir()
    write_video(models / "samples" / "camvid_seq05vd.mp4", n=3, h=64, w=64)
    monkeypatch.setenv("PVTSEG_MODELS", str(models))
    assert demo.main(["--headless", "-q"]) == 0
    art = next((models / "build").glob("*_labels.onnx"), None) or next((models / "build").glob("*_labels.ts"))
    good = art.read_bytes()
    capsys.readouterr()
    art.write_bytes(good[: len(good) // 2])  # a copy cut short, a disk error
    assert demo.main(["--headless", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"the cached {art} cannot be used" in out and "does not match its sidecar" in out
    assert "exporting" in out and "pvtseg demo: 3 frames" in out
    assert art.read_bytes() == good  # the same weights give the same file again


def test_corrupt_video_summary_says_how_many_frames_were_read(tmp_path, art, capsys):
    from test_sources import _corrupt_video

    video = _corrupt_video(tmp_path / "c.mp4")
    assert demo.main(["--model", str(art["onnx"]), "--source", str(video), "--headless", "-q"]) == 0
    out, err = capsys.readouterr()
    m = re.search(r"^pvtseg demo: (\d+) frames in .*; warning: read (\d+) of the 100 frames .* \((\d+) could not be "
                  r"decoded\)$", out.strip().splitlines()[-1])
    assert m and m.group(1) == m.group(2) and int(m.group(2)) + int(m.group(3)) == 100, out
    assert "pvtseg demo: warning: read" in err and int(m.group(2)) > 50  # the file goes on past the damage
