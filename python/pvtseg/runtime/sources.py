"""Frame sources for the demo: webcam index, video file, RTSP / HTTP stream, a raw
GStreamer pipeline ending in appsink, and `csi://N` (a Jetson CSI camera through
nvarguscamerasrc).

    with FrameSource("0") as src:                    # or "clip.mp4", "rtsp://...", "csi://0",
        for frame in src:                            #    "v4l2src ! videoconvert ! appsink"
            ...

Capture runs on its own thread. Live sources keep only the newest frame (older ones are
dropped and counted), so a slow consumer always sees the latest image: latency stays one
frame. Files are read frame by frame through a small bounded queue: nothing is dropped,
and decoding overlaps inference. A source that cannot be opened raises SourceError.

Live sources: a source whose reads fail, or that delivers no new frame for `stall_timeout`
seconds (default 5: a frozen RTSP server, a camera that hangs), counts as a drop: it is
logged on the `pvtseg.runtime.sources` logger and reopened with exponential backoff. The
stall watchdog does not wait for the blocked read to return (a C call cannot be
interrupted): the reader thread of that session is abandoned, releases its capture when
the read finally returns, and a new session starts. Streams open through FFmpeg with an
open timeout (default 10 s instead of FFmpeg's 30 s) and a read timeout equal to the stall
timeout (CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC, OpenCV >= 4.5.4).

Files end cleanly (or loop with `loop=True`). A frame that cannot be decoded before the
length the container declares (CAP_PROP_FRAME_COUNT) is counted and skipped, and reading
goes on (OpenCV's FFmpeg reader resumes after a corrupt stretch); `incomplete` then says
how many frames were read of how many declared.

The capture object is made by a factory (`capture_factory(spec) -> VideoCapture-like`), so
tests inject fakes and no real camera or network is needed.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from ..errors import SourceError, SourceTimeoutError

log = logging.getLogger("pvtseg.runtime.sources")

_STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass(frozen=True)
class SourceSpec:
    """What to open: kind in {"webcam", "file", "stream", "gstreamer", "csi"}."""

    kind: str
    target: Union[int, str]  # camera index, path, URL or GStreamer pipeline
    live: bool
    raw: str

    def __str__(self) -> str:
        return self.raw if self.kind != "csi" else f"{self.raw} ({self.target})"


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The Jetson nvarguscamerasrc -> BGR appsink pipeline for CSI camera `sensor_id`."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
            f"framerate=(fraction){fps}/1, format=(string)NV12 ! "
            f"nvvidconv flip-method={flip} ! video/x-raw, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


def parse_source(source: Union[int, str, os.PathLike]) -> SourceSpec:
    """Classify a --source value. `csi://N[?width=..&height=..&fps=..&flip=..]` is expanded."""
    if isinstance(source, int):
        return SourceSpec("webcam", source, True, str(source))
    raw = os.fspath(source).strip()
    if not raw:
        raise SourceError("empty --source: give a camera index (0), a video file, rtsp://..., csi://0 "
                          "or a GStreamer pipeline ending in appsink.")
    if re.fullmatch(r"\d+", raw):
        return SourceSpec("webcam", int(raw), True, raw)
    m = re.fullmatch(r"csi://(\d+)(?:\?(.*))?", raw)
    if m:
        opts = dict(kv.split("=", 1) for kv in m.group(2).split("&") if "=" in kv) if m.group(2) else {}
        try:
            pipe = csi_pipeline(int(m.group(1)), **{k: int(v) for k, v in opts.items()})
        except TypeError as e:
            raise SourceError(f"{raw}: unknown option ({e}); csi:// takes width, height, fps, flip.") from None
        return SourceSpec("csi", pipe, True, raw)
    if raw.startswith("csi://"):
        raise SourceError(f"{raw}: write csi://N with N the sensor id, e.g. csi://0.")
    if "!" in raw and "appsink" in raw:
        return SourceSpec("gstreamer", raw, True, raw)
    if "!" in raw:
        raise SourceError(f"{raw!r} looks like a GStreamer pipeline but does not end in appsink: "
                          "append '! videoconvert ! appsink' so OpenCV can pull BGR frames.")
    if raw.lower().startswith(_STREAM_SCHEMES):
        return SourceSpec("stream", raw, True, raw)
    return SourceSpec("file", raw, False, raw)


def default_capture_factory(spec: SourceSpec, open_timeout: Optional[float] = 10.0,
                            read_timeout: Optional[float] = None) -> Any:
    """Open a cv2.VideoCapture for a spec with the right OpenCV backend.

    `open_timeout` / `read_timeout` (seconds) bound FFmpeg's blocking calls for streams;
    OpenCV's FFmpeg backend defaults to 30 s for both.
    """
    import cv2

    if spec.kind == "webcam":
        cap = cv2.VideoCapture(int(spec.target))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap
    if spec.kind in ("gstreamer", "csi"):
        return cv2.VideoCapture(str(spec.target), cv2.CAP_GSTREAMER)
    if spec.kind == "stream":
        params = []
        if open_timeout and hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
            params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000)]
        if read_timeout and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
            params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)]
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap
    return cv2.VideoCapture(str(spec.target))


def _open_hint(spec: SourceSpec) -> str:
    if spec.kind == "file":
        return "check the path, and that OpenCV can decode it (`ffprobe FILE`)."
    if spec.kind == "webcam":
        return "check that the camera is connected and free (`ls /dev/video*`; close other apps using it)."
    if spec.kind in ("gstreamer", "csi"):
        return ("OpenCV needs GStreamer support (cv2.getBuildInformation() lists 'GStreamer: YES'; "
                "JetPack's OpenCV has it, pip's opencv-python does not). Test the pipeline with gst-launch-1.0.")
    return "check the URL, credentials and that the stream is reachable (`ffplay URL`)."


_END = object()


class FrameSource:
    """Threaded frame reader (see module docstring).

    Args:
        source: camera index, path, URL, GStreamer pipeline or csi://N (see parse_source).
        capture_factory: spec -> VideoCapture-like (isOpened, read, get, release).
        live: override live/file behaviour (default: from the source kind).
        loop: files only: restart at the end instead of stopping.
        reconnect: live only: reopen a source that stops delivering.
        backoff_initial / backoff_max: reconnect delays in seconds (doubling).
        max_reconnects: give up after this many failed reopen attempts in a row (None: never).
        queue_size: files only: decoded frames buffered ahead.
        max_failed_reads: live only: consecutive failed reads that count as a drop.
        stall_timeout: live only: seconds without a new frame that count as a drop (None or 0:
            no watchdog).
        open_timeout: streams opened by the default factory: seconds to wait for the server.
        max_decode_errors: files only: consecutive undecodable frames skipped before the
            rest of the file is given up.
    """

    def __init__(self, source: Union[int, str, os.PathLike, SourceSpec], *,
                 capture_factory: Optional[Callable[[SourceSpec], Any]] = None, live: Optional[bool] = None,
                 loop: bool = False, reconnect: bool = True, backoff_initial: float = 0.5,
                 backoff_max: float = 10.0, max_reconnects: Optional[int] = None, queue_size: int = 4,
                 max_failed_reads: int = 3, stall_timeout: Optional[float] = 5.0,
                 open_timeout: Optional[float] = 10.0, max_decode_errors: int = 250):
        self.spec = source if isinstance(source, SourceSpec) else parse_source(source)
        self.live = self.spec.live if live is None else bool(live)
        if self.spec.kind == "file" and not Path(str(self.spec.target)).exists():
            raise SourceError(f"video file {self.spec.target} does not exist. Pass an existing file, a camera "
                              "index (0), rtsp://..., csi://0 or a GStreamer pipeline ending in appsink.")
        if stall_timeout is not None and stall_timeout < 0:
            raise SourceError(f"stall_timeout must be >= 0 seconds (0: no watchdog), got {stall_timeout}")
        self.stall_timeout = float(stall_timeout) if stall_timeout else None
        # FFmpeg's own read timeout matches the watchdog, so a stalled read usually returns by itself.
        self.factory = capture_factory or functools.partial(
            default_capture_factory, open_timeout=open_timeout, read_timeout=self.stall_timeout)
        self.loop = loop
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_reconnects = max_reconnects
        self.max_failed_reads = max(1, int(max_failed_reads))
        self.max_decode_errors = max(1, int(max_decode_errors))
        # Stats (read by the consumer; written by the capture thread).
        self.frames_captured = 0
        self.frames_delivered = 0
        self.dropped = 0          # live: stale frames replaced by a newer one before the consumer took them
        self.reconnects = 0
        self.stalls = 0           # live: sessions ended by the watchdog
        self.decode_errors = 0    # files: frames that could not be decoded (skipped)
        self.incomplete: Optional[str] = None  # files: "read N of M declared frames ..." when short
        self.backoff_delays: list = []
        self.error: Optional[BaseException] = None

        self._cap = self._open(first=True)
        self.fps = self._prop("CAP_PROP_FPS")
        count = self._prop("CAP_PROP_FRAME_COUNT")
        self.frame_count = int(count) if count and count > 0 and not self.live else None
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._cond = threading.Condition()
        self._latest: Optional[np.ndarray] = None
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, queue_size))
        self._readers: list = []  # live sessions' reader threads (close() waits for them)
        self._thread = threading.Thread(target=self._run, name=f"pvtseg-capture[{self.spec.raw[:32]}]", daemon=True)
        self._thread.start()

    # -- opening -----------------------------------------------------------------------------
    def _open(self, first: bool = False) -> Any:
        try:
            cap = self.factory(self.spec)
        except SourceError:
            raise
        except Exception as e:  # a factory may raise anything (e.g. cv2.error)
            if first:
                raise SourceError(f"cannot open source {self.spec}: {e}. {_open_hint(self.spec)}") from e
            log.debug("reopen of %s raised %s", self.spec, e)
            return None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            if first:
                raise SourceError(f"cannot open source {self.spec}. {_open_hint(self.spec)}")
            return None
        return cap

    def _prop(self, name: str) -> Optional[float]:
        try:
            import cv2

            v = float(self._cap.get(getattr(cv2, name)))
        except Exception:
            return None
        return v if v == v and v > 0 else None  # NaN / 0 -> unknown

    # -- capture thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.live:
                self._run_live()
            else:
                self._run_file()
        except BaseException as e:  # never die silently: hand the error to the consumer
            self.error = e
        finally:
            self._ended.set()
            with self._cond:
                self._cond.notify_all()
            if not self.live:
                self._put(_END, force=True)
            cap, self._cap = self._cap, None
            if cap is not None:
                cap.release()

    def _put(self, item: Any, force: bool = False) -> bool:
        while not self._stop.is_set() or force:
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if force and self._stop.is_set():
                    try:  # closed: nobody reads the rest, make room for the end marker
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass
        return False

    def _run_file(self) -> None:
        good = bad = run = 0  # this pass: frames decoded, frames skipped, skipped in a row
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            if ok and frame is not None:
                good, run = good + 1, 0
                self.frames_captured += 1
                if not self._put(frame):
                    return
                continue
            if self._skip_undecodable(good + bad, run):
                bad, run = bad + 1, run + 1
                continue
            self._note_shortfall(good, bad)
            if self.loop and self.frames_captured > 0:
                self._rewind()
                good = bad = run = 0
                continue
            return

    def _skip_undecodable(self, position: int, run: int) -> bool:
        """A failed read before the declared end is a frame that cannot be decoded: skip it
        (each failed read moves past one frame, so `position` counts both kinds)."""
        declared = self.frame_count
        if declared is None or position >= declared:
            return False
        if run >= self.max_decode_errors:
            log.warning("%s: %d frames in a row cannot be decoded; giving up on the rest", self.spec, run)
            return False
        if run == 0:
            log.warning("%s: frame %d cannot be decoded (corrupt data?); skipping", self.spec, position + 1)
        self.decode_errors += 1
        return True

    def _note_shortfall(self, good: int, bad: int) -> None:
        if self.frame_count is not None and good < self.frame_count:
            self.incomplete = (f"read {good} of the {self.frame_count} frames {self.spec} declares "
                               f"({bad} could not be decoded)")
            log.warning("%s", self.incomplete)

    def _rewind(self) -> None:
        import cv2

        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._cap.release()
            self._cap = self._open(first=False)
            if self._cap is None:
                raise SourceError(f"cannot reopen {self.spec} to loop it.")

    def _run_live(self) -> None:
        while not self._stop.is_set():
            if self._cap is None and not self._reconnect():
                return
            cap, self._cap = self._cap, None  # the session's reader owns and releases it now
            outcome = self._session(cap)
            if outcome == "stopped":
                return
            if not self.reconnect:
                log.warning("source %s %s; not reconnecting (reconnect=False)", self.spec,
                            "stalled" if outcome == "stalled" else "stopped delivering frames")
                return

    def _session(self, cap: Any) -> str:
        """Read `cap` on a reader thread until it fails ("failed"), stalls ("stalled") or the
        source is closed ("stopped")."""
        abandoned = threading.Event()
        done = threading.Event()
        last = [time.monotonic()]
        reader = threading.Thread(target=self._read_session, args=(cap, abandoned, done, last), daemon=True,
                                  name=f"pvtseg-read[{self.spec.raw[:32]}]")
        reader.start()
        self._readers.append(reader)
        while not done.wait(0.05):
            if self._stop.is_set():
                abandoned.set()
                return "stopped"
            idle = time.monotonic() - last[0]
            if self.stall_timeout is not None and idle > self.stall_timeout:
                abandoned.set()  # the blocked read may never return; its thread releases cap if it does
                self.stalls += 1
                log.warning("source %s stalled: no new frame for %.1f s (watchdog %.1f s)", self.spec, idle,
                            self.stall_timeout)
                return "stalled"
        return "stopped" if self._stop.is_set() else "failed"

    def _read_session(self, cap: Any, abandoned: threading.Event, done: threading.Event, last: list) -> None:
        failed = 0
        try:
            while not (self._stop.is_set() or abandoned.is_set()):
                try:
                    ok, frame = cap.read()
                except Exception as e:  # a capture may raise (cv2.error): a failed read like any other
                    log.debug("read from %s raised %s", self.spec, e)
                    ok, frame = False, None
                if abandoned.is_set():
                    return
                if ok and frame is not None:
                    failed = 0
                    last[0] = time.monotonic()
                    self.frames_captured += 1
                    with self._cond:
                        if self._latest is not None:
                            self.dropped += 1  # the consumer had not taken the previous one: stale
                        self._latest = frame
                        self._cond.notify()
                    continue
                failed += 1
                if failed >= self.max_failed_reads:
                    return
        finally:
            cap.release()
            done.set()

    def _reconnect(self) -> bool:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        delay = self.backoff_initial
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            log.warning("source %s dropped; reconnecting in %.2f s (attempt %d)", self.spec, delay, attempt)
            self.backoff_delays.append(delay)
            if self._stop.wait(delay):
                return False
            cap = self._open(first=False)
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                log.warning("source %s reconnected after %d attempt(s)", self.spec, attempt)
                return True
            if self.max_reconnects is not None and attempt >= self.max_reconnects:
                raise SourceError(f"source {self.spec} dropped and did not come back after {attempt} attempts. "
                                  f"{_open_hint(self.spec)}")
            delay = min(delay * 2.0, self.backoff_max)
        return False

    # -- consumer API ----------------------------------------------------------------------------
    def read(self, timeout: Optional[float] = None) -> Optional[np.ndarray]:
        """The next frame (files) or the newest one (live); None at the end of the source.

        Raises SourceError if the source failed for good (e.g. gave up reconnecting), and
        SourceTimeoutError (a TimeoutError) if `timeout` seconds pass with no frame.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.live:
            with self._cond:
                while self._latest is None:
                    if self._ended.is_set() or self._stop.is_set():
                        return self._finish()
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise SourceTimeoutError(f"no frame from {self.spec} within {timeout} s")
                    self._cond.wait(0.1 if left is None else min(left, 0.1))
                frame, self._latest = self._latest, None
        else:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise SourceTimeoutError(f"no frame from {self.spec} within {timeout} s")
                try:
                    item = self._queue.get(timeout=0.1 if left is None else min(left, 0.1))
                except queue.Empty:
                    if self._stop.is_set():
                        return None
                    continue
                if item is _END:
                    self._queue.put_nowait(_END) if not self._queue.full() else None
                    return self._finish()
                frame = item
                break
        self.frames_delivered += 1
        return frame

    def _finish(self) -> Optional[np.ndarray]:
        """End of the source: None, or raise the capture thread's error."""
        if self.error is not None and not isinstance(self.error, (KeyboardInterrupt, SystemExit)):
            err = self.error
            if isinstance(err, SourceError):
                raise err
            raise SourceError(f"source {self.spec} failed: {err!r}") from err
        return None

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def close(self) -> None:
        """Stop the capture thread and release the device. Safe to call twice.

        Also waits (bounded) for readers still inside a capture's read(): a thread that is in
        OpenCV's C++ code when the interpreter exits is torn down by a forced unwind, which
        aborts the process ("FATAL: exception not rethrown") instead of a clean exit. Streams'
        reads return within the FFmpeg read timeout (= stall_timeout)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if threading.current_thread() is self._thread:
            return
        deadline = time.monotonic() + 5.0 + (self.stall_timeout or 0.0)
        for t in [self._thread] + list(self._readers):
            if t.is_alive():
                t.join(timeout=max(0.0, deadline - time.monotonic()))
        self._readers = [t for t in self._readers if t.is_alive()]
        if self._readers:
            log.warning("%s: %d capture read(s) still blocked after close(); the process may not exit cleanly",
                        self.spec, len(self._readers))

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass
