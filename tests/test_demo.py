"""pvtseg demo: headless runs on generated videos, default-model export cache, CLI errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from _runtime_artifacts import cached_artifacts, write_video

from pvtseg.apps import demo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def art():
    return cached_artifacts("tiny", height=128, width=160, output="labels")


def _count_frames(path: Path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    size = None
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n += 1
        size = f.shape
    cap.release()
    return n, size


def test_headless_demo_writes_playable_video(tmp_path, art, capsys):
    video = write_video(tmp_path / "in.mp4", n=20, h=96, w=128)
    out, mont = tmp_path / "out" / "seg.mp4", tmp_path / "grid.png"
    rc = demo.main(["--model", str(art["onnx"]), "--source", str(video), "--output", str(out), "--headless",
                    "--montage", str(mont), "--alpha", "0.6"])
    text = capsys.readouterr().out
    assert rc == 0, text
    n, size = _count_frames(out)
    assert n == 20 and size == (96, 128, 3)
    assert not list(out.parent.glob(".*pvtseg-tmp*"))  # the temp file was renamed into place
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("pvtseg demo: 20 frames in") and "FPS" in summary and "infer" in summary
    assert "frame 20/20" in text  # progress
    grid = cv2.imread(str(mont))
    assert grid is not None and grid.shape[1] == 3 * 320 and grid.shape[0] >= 2 * 200


def test_demo_max_frames_side_by_side_torchscript(tmp_path, art, capsys):
    video = write_video(tmp_path / "in.avi", n=12, h=64, w=96)
    out = tmp_path / "o.avi"
    rc = demo.main(["--model", str(art["torchscript"]), "--source", str(video), "--output", str(out),
                    "--headless", "--max-frames", "7", "--mode", "side-by-side", "--no-legend", "-q"])
    assert rc == 0
    n, size = _count_frames(out)
    assert n == 7 and size == (64, 192, 3)
    assert "7 frames" in capsys.readouterr().out


def test_demo_script_is_the_same_command(tmp_path, art):
    video = write_video(tmp_path / "in.mp4", n=5, h=64, w=64)
    r = subprocess.run([sys.executable, str(ROOT / "python" / "demo_camera.py"), "--model", str(art["onnx"]),
                        "--source", str(video), "--headless", "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "pvtseg demo: 5 frames" in r.stdout
    h = subprocess.run([sys.executable, str(ROOT / "python" / "demo_camera.py"), "--help"], capture_output=True,
                       text=True, timeout=120)
    assert h.returncode == 0 and "--source" in h.stdout and "q/Esc" in h.stdout


def test_window_mode_without_display_falls_back(tmp_path, art, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = write_video(tmp_path / "in.mp4", n=3, h=64, w=64)
    assert demo.main(["--model", str(art["onnx"]), "--source", str(video)]) == 0
    err = capsys.readouterr().err
    assert "running headless" in err


@pytest.mark.parametrize("argv,msg", [
    (["--source", "/nonexistent/clip.mp4"], "does not exist"),
    (["--source", "v4l2src ! videoconvert"], "appsink"),
])
def test_demo_errors_are_one_line(art, capsys, argv, msg):
    assert demo.main(["--model", str(art["onnx"]), "--headless"] + argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("pvtseg demo: error:") and msg in err


def test_demo_missing_model_file(capsys, tmp_path):
    assert demo.main(["--model", str(tmp_path / "x.onnx"), "--headless"]) == 1
    assert "no model file" in capsys.readouterr().err


def test_no_model_without_default_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PVTSEG_MODELS", str(tmp_path))
    assert demo.main(["--headless"]) == 1
    err = capsys.readouterr().err
    assert "default model" in err and "--model" in err


def test_default_model_export_is_cached_by_sha256(tmp_path, monkeypatch, capsys):
    """No --model: models/<default>.pth is exported once to models/build/, re-exported when it changes."""
    import torch

    from pvtseg import meta
    from pvtseg.models import camvid, create_model

    models = tmp_path / "models"
    (models / "samples").mkdir(parents=True)
    torch.manual_seed(0)
    m = create_model("pvt_v2_b0_segformer", num_classes=11)
    ckpt = models / f"{demo.DEFAULT_NAME}.pth"
    torch.save(m.state_dict(), ckpt)
    meta.write(ckpt.with_suffix(".json"), meta.make_meta(
        arch="pvt_v2_b0_segformer", num_classes=11, height=64, width=96, output_kind="logits",
        output_dtype="float32", output_stride=4, class_names=camvid.CLASS_NAMES, palette=camvid.PALETTE))
    write_video(models / "samples" / "camvid_seq05vd.mp4", n=4, h=72, w=96)
    monkeypatch.setenv("PVTSEG_MODELS", str(models))

    assert demo.main(["--headless", "-q"]) == 0
    out = capsys.readouterr().out
    assert "exporting" in out and "pvtseg demo: 4 frames" in out
    built = sorted(p.name for p in (models / "build").iterdir())
    art = next((models / "build").glob("*_labels.*[sx]"))  # .onnx or .ts
    side = meta.read(art)
    assert side["output"]["kind"] == "labels" and side["input"]["height"] == 64 and side["input"]["width"] == 96
    mtime = art.stat().st_mtime_ns

    assert demo.main(["--headless", "-q"]) == 0  # cached: no second export
    assert "exporting" not in capsys.readouterr().out and art.stat().st_mtime_ns == mtime

    torch.manual_seed(1)
    torch.save(create_model("pvt_v2_b0_segformer", num_classes=11).state_dict(), ckpt)
    assert demo.main(["--headless", "-q", "--max-frames", "2"]) == 0
    assert "changed" in capsys.readouterr().out
    assert meta.read(art)["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert sorted(p.name for p in (models / "build").iterdir()) == built


def test_keys_quit_pause_mode_and_save(tmp_path, art, monkeypatch):
    """The window loop's keys, with cv2's GUI calls replaced (no display here)."""
    from pvtseg.runtime import Segmenter, Visualizer
    from pvtseg.runtime.sources import FrameSource

    keys = iter([ord("m"), ord("s"), ord(" "), -1, ord("s"), ord(" "), ord("m"), 27])
    shown = []
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda ms=0: next(keys, ord("q")))
    video = write_video(tmp_path / "in.mp4", n=20, h=64, w=80)
    seg = Segmenter(art["onnx"])
    vis = Visualizer(seg.meta)
    with FrameSource(str(video)) as src:
        st = demo.run_loop(seg, src, visualizer=vis, show=True, save_dir=tmp_path / "shots")
    assert st.quit_by_user
    # frame 1 overlay, 'm' -> mask; frame 2 's' saves; frame 3 ' ' pauses; while paused: -1, 's' saves again,
    # ' ' resumes; frame 4 'm' -> side-by-side; frame 5 Esc quits
    assert st.frames == 5 and len(st.saved) == 2 and all(Path(p).is_file() for p in st.saved)
    assert shown[0] == (64, 80, 3) and shown[-1] == (64, 160, 3)
    assert vis.mode == "side-by-side"
