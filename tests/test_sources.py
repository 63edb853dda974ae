"""Frame sources: parsing, file reading (no drops), live latest-frame logic, reconnect/backoff.

No camera or network: live behaviour is driven through an injected fake capture factory.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import numpy as np
import pytest

from _runtime_artifacts import write_video

from pvtseg.errors import SourceError
from pvtseg.runtime.sources import FrameSource, csi_pipeline, parse_source


# -- parsing --------------------------------------------------------------------------------------

def test_parse_source_kinds(tmp_path):
    assert parse_source("0").kind == "webcam" and parse_source("0").target == 0 and parse_source(2).live
    s = parse_source("csi://1")
    assert s.kind == "csi" and s.live and "nvarguscamerasrc sensor-id=1" in s.target and s.target.endswith(
        "appsink drop=true max-buffers=1 sync=false")
    s = parse_source("csi://0?width=1920&height=1080&fps=60&flip=2")
    assert "width=(int)1920" in s.target and "framerate=(fraction)60/1" in s.target and "flip-method=2" in s.target
    assert parse_source("rtsp://10.0.0.2:8554/cam").kind == "stream"
    g = parse_source("videotestsrc ! videoconvert ! appsink")
    assert g.kind == "gstreamer" and g.live
    f = parse_source(str(tmp_path / "clip.mp4"))
    assert f.kind == "file" and not f.live
    assert csi_pipeline(0).startswith("nvarguscamerasrc sensor-id=0 !")


@pytest.mark.parametrize("bad,match", [("", "empty"), ("csi://x", "csi://N"), ("v4l2src ! videoconvert", "appsink"),
                                       ("csi://0?zoom=2", "unknown option")])
def test_parse_source_errors(bad, match):
    with pytest.raises(SourceError, match=match):
        parse_source(bad)


def test_missing_file_raises(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        FrameSource(str(tmp_path / "nope.mp4"))


def test_unopenable_sources_raise():
    class Closed:
        def isOpened(self):
            return False

        def release(self):
            pass

    with pytest.raises(SourceError, match="cannot open source 3"):
        FrameSource("3", capture_factory=lambda spec: Closed())

    def boom(spec):
        raise RuntimeError("device busy")

    with pytest.raises(SourceError, match="device busy"):
        FrameSource("rtsp://127.0.0.1:1/none", capture_factory=boom)


def test_undecodable_file_raises(tmp_path):
    p = tmp_path / "junk.mp4"
    p.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open source"):
        FrameSource(str(p))


# -- files: every frame, in order ------------------------------------------------------------------

def _blue(frame):
    return int(round(frame[:4, :4, 0].mean()))


def test_file_reads_every_frame_in_order_even_when_slow(tmp_path):
    video = write_video(tmp_path / "v.mp4", n=20)
    with FrameSource(str(video), queue_size=2) as src:
        assert not src.live and src.frame_count == 20 and src.fps == pytest.approx(10.0)
        got = []
        for i, f in enumerate(src):
            if i % 5 == 0:
                time.sleep(0.05)  # a slow consumer must not lose frames
            got.append(_blue(f))
    assert len(got) == 20
    # frame i is blue level 10 * i (mp4v is lossy, so only roughly): every frame, in order
    assert all(abs(g - 10 * i) <= 6 for i, g in enumerate(got)) and all(b - a >= 4 for a, b in zip(got, got[1:])), got
    assert src.dropped == 0 and src.read() is None  # stays at the end


def test_file_loop(tmp_path):
    video = write_video(tmp_path / "v.mp4", n=6)
    with FrameSource(str(video), loop=True) as src:
        got = [_blue(src.read(timeout=10)) for _ in range(15)]
    assert len(got) == 15 and abs(got[6] - got[0]) <= 6 and abs(got[12] - got[0]) <= 6


def test_close_mid_file_stops_thread(tmp_path):
    video = write_video(tmp_path / "v.mp4", n=20)
    src = FrameSource(str(video), queue_size=1)
    src.read()
    src.close()
    assert not src._thread.is_alive()


# -- live: fake cameras ----------------------------------------------------------------------------

class FakeCam:
    """A VideoCapture stand-in: `n` good frames (id in pixel [0,0,0..1]), then failed reads."""

    def __init__(self, session: int, n: int, period: float = 0.002):
        self.session, self.n, self.period, self.i = session, n, period, 0
        self.released = False

    def isOpened(self):
        return True

    def read(self):
        time.sleep(self.period)
        if self.i >= self.n:
            return False, None
        f = np.zeros((8, 8, 3), np.uint8)
        f[0, 0, 0], f[0, 0, 1] = self.session, self.i % 256
        self.i += 1
        return True, f

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True


class Factory:
    """Opens FakeCam sessions; `fail_opens` reopen attempts fail before the next success."""

    def __init__(self, frames_per_session=(5, 10_000), fail_opens=3):
        self.frames = list(frames_per_session)
        self.fail_opens = fail_opens
        self.opens = 0
        self.cams = []

    def __call__(self, spec):
        self.opens += 1
        if self.cams and self.fail_opens > 0:
            self.fail_opens -= 1
            return None  # e.g. the RTSP server is still down
        cam = FakeCam(len(self.cams), self.frames[min(len(self.cams), len(self.frames) - 1)])
        self.cams.append(cam)
        return cam


def test_live_reconnects_with_exponential_backoff(caplog):
    caplog.set_level(logging.WARNING, logger="pvtseg.runtime.sources")
    fac = Factory(frames_per_session=(5, 10_000), fail_opens=3)
    with FrameSource("rtsp://127.0.0.1:8554/cam", capture_factory=fac, backoff_initial=0.01, backoff_max=1.0,
                     max_failed_reads=2) as src:
        assert src.live
        sessions = set()
        deadline = time.monotonic() + 20
        while 1 not in sessions and time.monotonic() < deadline:
            f = src.read(timeout=10)
            sessions.add(int(f[0, 0, 0]))
        assert sessions == {0, 1}
        assert src.reconnects == 1
        assert src.backoff_delays[:4] == pytest.approx([0.01, 0.02, 0.04, 0.08])
        assert fac.opens == 1 + 4  # first open, 3 failed reopens, 1 good one
        assert fac.cams[0].released
    text = caplog.text
    assert "dropped; reconnecting in 0.01 s (attempt 1)" in text
    assert "attempt 4" in text and "reconnected after 4 attempt(s)" in text


def test_live_gives_up_after_max_reconnects():
    fac = Factory(frames_per_session=(3,), fail_opens=100)
    src = FrameSource("0", capture_factory=fac, backoff_initial=0.001, backoff_max=0.004, max_reconnects=4,
                      max_failed_reads=1)
    with pytest.raises(SourceError, match="did not come back after 4 attempts"):
        for _ in range(100):
            src.read(timeout=10)
    assert src.backoff_delays == pytest.approx([0.001, 0.002, 0.004, 0.004])
    src.close()


def test_live_without_reconnect_ends():
    src = FrameSource("0", capture_factory=Factory((3,)), reconnect=False, max_failed_reads=1)
    frames = list(src)
    assert 1 <= len(frames) <= 3 and src.reconnects == 0
    src.close()


def test_live_keeps_only_the_newest_frame():
    class Counter(FakeCam):
        def read(self):
            ok, f = super().read()
            f[0, 0, 1], f[0, 0, 2] = (self.i - 1) % 256, (self.i - 1) // 256  # frame id, 16 bits
            return ok, f

    cams = []

    def factory(spec):
        cams.append(Counter(0, 10 ** 9, period=0.001))
        return cams[-1]

    with FrameSource("0", capture_factory=factory) as src:
        src.read(timeout=5)
        for _ in range(3):
            time.sleep(0.05)  # a slow consumer: dozens of frames arrive meanwhile
            newest_before = cams[0].i - 1
            f = src.read(timeout=5)
            got = int(f[0, 0, 1]) + 256 * int(f[0, 0, 2])
            assert got >= newest_before - 1, (newest_before, got)  # the newest frame, not a stale one
        assert src.dropped > 20


def test_close_during_backoff_is_prompt():
    fac = Factory(frames_per_session=(1,), fail_opens=1000)
    src = FrameSource("0", capture_factory=fac, backoff_initial=30.0, max_failed_reads=1)
    time.sleep(0.2)
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 2.0 and not src._thread.is_alive()


def test_read_timeout():
    class Silent(FakeCam):
        def read(self):
            time.sleep(0.01)
            return False, None

    src = FrameSource("0", capture_factory=lambda s: Silent(0, 0), backoff_initial=30.0, max_failed_reads=10 ** 9)
    with pytest.raises(TimeoutError):
        src.read(timeout=0.2)
    src.close()


def test_file_end_with_full_queue_and_slow_consumer_keeps_every_frame(tmp_path):
    video = write_video(tmp_path / "v.mp4", n=8)
    with FrameSource(str(video), queue_size=2) as src:
        time.sleep(0.5)  # the reader hits the end while the queue is full
        got = []
        while True:
            f = src.read(timeout=10)
            if f is None:
                break
            got.append(f)
            time.sleep(0.15)
    assert len(got) == 8


# -- faults: a frozen source, a corrupt file, a server that never answers ------------------------

class FreezingCam(FakeCam):
    """Delivers `n` frames, then blocks in read() like a frozen RTSP server, until `thaw` is set."""

    def __init__(self, session: int, n: int, thaw: threading.Event):
        super().__init__(session, n)
        self.thaw = thaw

    def read(self):
        if self.i >= self.n:
            self.thaw.wait()
            return False, None
        return super().read()


def test_watchdog_counts_a_frozen_source_as_a_drop_and_reconnects(caplog):
    caplog.set_level(logging.WARNING, logger="pvtseg.runtime.sources")
    thaw = threading.Event()
    cams = []

    def factory(spec):
        cams.append(FreezingCam(len(cams), 5 if not cams else 10 ** 6, thaw))
        return cams[-1]

    t0 = time.monotonic()
    try:
        with FrameSource("rtsp://127.0.0.1:8554/cam", capture_factory=factory, stall_timeout=0.5,
                         backoff_initial=0.05) as src:
            sessions = set()
            while 1 not in sessions and time.monotonic() - t0 < 20:
                sessions.add(int(src.read(timeout=10)[0, 0, 0]))
            assert sessions == {0, 1} and src.stalls == 1 and src.reconnects == 1
            took = time.monotonic() - t0
            assert 0.5 < took < 5, took  # the watchdog's 0.5 s + one 0.05 s backoff, not a hang
            assert not cams[0].released  # its read is still blocked; the abandoned thread owns it
            thaw.set()  # the frozen read returns at last (close() would wait for it)
    finally:
        thaw.set()
    deadline = time.monotonic() + 5
    while not cams[0].released and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cams[0].released  # released by its own thread once the read returned
    assert re.search(r"stalled: no new frame for 0\.\d s \(watchdog 0\.5 s\)", caplog.text)
    assert "dropped; reconnecting in 0.05 s (attempt 1)" in caplog.text


def test_stall_without_reconnect_ends_the_source():
    thaw = threading.Event()
    try:
        src = FrameSource("0", capture_factory=lambda s: FreezingCam(0, 2, thaw), stall_timeout=0.3,
                          reconnect=False)
        frames = list(src)
        assert len(frames) == 2 and src.stalls == 1 and src.reconnects == 0
        thaw.set()
        src.close()
    finally:
        thaw.set()


def _corrupt_video(path, n=100):
    """An mp4 whose bytes 30%..40% are overwritten with noise (seeded: the same file every run)."""
    video = write_video(path, n=n, h=96, w=128)
    data = bytearray(video.read_bytes())
    a, b = int(len(data) * 0.3), int(len(data) * 0.4)
    data[a:b] = np.random.default_rng(0).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(data))
    return video


def test_corrupt_middle_of_a_file_is_skipped_and_reported(tmp_path):
    import cv2

    video = _corrupt_video(tmp_path / "c.mp4")
    # Reference: OpenCV itself, read the naive way (stop at the first failure) and past the failures.
    cap = cv2.VideoCapture(str(video))
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    oks = [cap.read()[0] for _ in range(declared)]
    cap.release()
    naive = oks.index(False)
    assert declared == 100 and naive < 60 and sum(oks) > naive  # frames exist after the bad stretch

    with FrameSource(str(video)) as src:
        got = list(src)
    assert len(got) == sum(oks) and src.decode_errors == declared - sum(oks)
    assert src.incomplete == (f"read {sum(oks)} of the 100 frames {video} declares "
                              f"({declared - sum(oks)} could not be decoded)")


def test_intact_file_is_not_reported(tmp_path):
    with FrameSource(str(write_video(tmp_path / "v.mp4", n=12))) as src:
        assert len(list(src)) == 12
    assert src.decode_errors == 0 and src.incomplete is None


def test_stream_open_timeout_is_bounded():
    """A server that accepts the connection and never answers (FFmpeg's default wait: 30 s)."""
    import inspect
    import socket

    from pvtseg.runtime.sources import default_capture_factory

    assert inspect.signature(default_capture_factory).parameters["open_timeout"].default <= 10
    assert inspect.signature(FrameSource).parameters["open_timeout"].default <= 10
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns = []
    threading.Thread(target=lambda: conns.append(srv.accept()), daemon=True).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(SourceError, match="cannot open source rtsp://127.0.0.1"):
            FrameSource(f"rtsp://127.0.0.1:{srv.getsockname()[1]}/cam", open_timeout=1.5)
    finally:
        srv.close()
    took = time.monotonic() - t0
    assert conns and 1.0 < took < 6, took  # it did connect, then gave up after ~1.5 s
