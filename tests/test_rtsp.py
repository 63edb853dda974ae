"""A real RTSP stream (Debian's gst-rtsp-server on 127.0.0.1, tests/rtsp_server.py) read by a
real `pvtseg demo` process through pip OpenCV's FFmpeg: the server is killed and restarted,
then frozen (SIGSTOP) and resumed (SIGCONT); the demo reconnects both times and its
recording plays. Skipped, with the reason, where the system packages are missing
(tests/run_all.sh installs them: python3-gi gir1.2-gst-rtsp-server-1.0
gstreamer1.0-plugins-base gstreamer1.0-plugins-good).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import cv2
import pytest

from _runtime_artifacts import cached_artifacts

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # python3-gi is built for the system python, not pyenv / venv
_PROBE = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
          "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
          "missing = [e for e in ('videotestsrc', 'jpegenc', 'rtpjpegpay') if not Gst.ElementFactory.find(e)]; "
          "print('missing GStreamer elements: ' + ' '.join(missing) if missing else 'ok')")


def _unavailable() -> Optional[str]:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} (the RTSP server runs on the system python with python3-gi)"
    r = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or r.stdout.strip() != "ok":
        why = (r.stdout.strip() or r.stderr.strip().splitlines()[-1:] or ["?"])
        why = why if isinstance(why, str) else why[0]
        return (f"gst-rtsp-server through python3-gi is not usable ({why}); apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good")
    if not re.search(r"FFMPEG:\s+YES", cv2.getBuildInformation()):
        return "this OpenCV has no FFmpeg backend (needed for rtsp://)"
    return None


_REASON = _unavailable()
if _REASON:
    print(f"test_rtsp: skipped: {_REASON}", file=sys.stderr)
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """tests/rtsp_server.py on a port; it exits by itself after `max_s` seconds."""

    def __init__(self, port: int, max_s: int = 120) -> None:
        self.port, self.max_s = port, max_s
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Server":
        deadline = time.monotonic() + 20
        while True:  # the port may be held a moment after the previous server was killed
            self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(self.port), str(self.max_s)],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if self.proc.stdout.readline().strip() == "ready":
                return self
            self.proc.wait(10)
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start: {self.proc.stderr.read()}")
            time.sleep(0.5)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


class Lines:
    def __init__(self, stream) -> None:
        self.lines: list = []
        self._t = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self._t.start()

    def count(self, pattern: str) -> int:
        return sum(1 for ln in list(self.lines) if re.search(pattern, ln))

    def wait(self, pattern: str, n: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.count(pattern) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {n} x {pattern!r} within {timeout} s:\n" + "".join(self.lines))
            time.sleep(0.1)

    def last_frame(self) -> int:
        nums = [int(m.group(1)) for ln in list(self.lines) for m in [re.match(r"frame (\d+)", ln)] if m]
        return nums[-1] if nums else 0

    def wait_frames_after(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.last_frame() <= n + 5:
            if time.monotonic() > deadline:
                raise AssertionError(f"no frames after {n} within {timeout} s:\n" + "".join(self.lines))
            time.sleep(0.1)


def test_demo_reconnects_after_server_kill_and_freeze(tmp_path):
    art = cached_artifacts("tiny", height=64, width=64, output="labels")
    port = _free_port()
    url = f"rtsp://127.0.0.1:{port}/cam"
    out = tmp_path / "rtsp.mp4"
    server = Server(port).start()
    demo = subprocess.Popen([sys.executable, "-m", "pvtseg", "demo", "--model", str(art["onnx"]), "--source", url,
                             "--headless", "--stall-timeout", "2", "--open-timeout", "2", "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    so, se = Lines(demo.stdout), Lines(demo.stderr)
    t0 = time.monotonic()
    try:
        so.wait(r"^frame \d+", timeout=120)
        # 1. The server dies (a crash, a reboot) and comes back on the same port.
        server.kill()
        se.wait(r"stalled: no new frame|dropped; reconnecting", timeout=20)
        n = so.last_frame()
        server = Server(port).start()
        se.wait(r"reconnected after \d+ attempt", 1, timeout=40)
        so.wait_frames_after(n)
        # 2. The server freezes (SIGSTOP: it keeps its socket but sends nothing), then thaws.
        server.signal(signal.SIGSTOP)
        stalls = se.count(r"stalled: no new frame")
        se.wait(r"stalled: no new frame", stalls + 1, timeout=15)
        time.sleep(3)  # reopening a frozen server times out (--open-timeout 2), then backs off
        n = so.last_frame()
        server.signal(signal.SIGCONT)
        se.wait(r"reconnected after \d+ attempt", 2, timeout=60)
        so.wait_frames_after(n)
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0, "".join(se.lines)[-3000:]
    finally:
        demo.kill()
        demo.wait(30)
        server.kill()
    took = time.monotonic() - t0
    summary = "".join(so.lines).strip().splitlines()[-1]
    m = re.search(r"^pvtseg demo: (\d+) frames in .*stopped by SIGTERM.* (\d+) stalls, reconnects (\d+).*"
                  r"wrote \S+ \((\d+) frames\)", summary)
    assert m, summary + "".join(se.lines)
    assert int(m.group(3)) >= 2 and int(m.group(2)) >= 1
    cap = cv2.VideoCapture(str(out))
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    assert decoded == int(m.group(4)) == int(m.group(1)) > 10
    assert took < 240, took
