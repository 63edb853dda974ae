"""Frame sources for the demo: webcam index, video file, RTSP / HTTP stream, a raw
GStreamer pipeline ending in appsink, and `csi://N` (a Jetson CSI camera through
nvarguscamerasrc).

    with FrameSource("0") as src:                    # or "clip.mp4", "rtsp://...", "csi://0",
        for frame in src:                            #    "v4l2src ! videoconvert ! appsink"
            ...

Capture runs on its own thread. Live sources keep only the newest frame (older ones are
dropped and counted), so a slow consumer always sees the latest image: latency stays one
frame. Files are read frame by frame through a small bounded queue: nothing is dropped,
and decoding overlaps inference. A live source that stops delivering is reopened with
exponential backoff (logged on the `pvtseg.runtime.sources` logger); a file ends cleanly (or loops
with `loop=True`). A source that cannot be opened raises SourceError.

The capture object is made by a factory (`capture_factory(spec) -> VideoCapture-like`), so
tests inject fakes and no real camera or network is needed.
"""

from __future__ import annotations

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

from ..errors import SourceError

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


def default_capture_factory(spec: SourceSpec) -> Any:
    """Open a cv2.VideoCapture for a spec with the right OpenCV backend."""
    import cv2

    if spec.kind == "webcam":
        cap = cv2.VideoCapture(int(spec.target))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap
    if spec.kind in ("gstreamer", "csi"):
        return cv2.VideoCapture(str(spec.target), cv2.CAP_GSTREAMER)
    if spec.kind == "stream":
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG)
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
    """

    def __init__(self, source: Union[int, str, os.PathLike, SourceSpec], *,
                 capture_factory: Optional[Callable[[SourceSpec], Any]] = None, live: Optional[bool] = None,
                 loop: bool = False, reconnect: bool = True, backoff_initial: float = 0.5,
                 backoff_max: float = 10.0, max_reconnects: Optional[int] = None, queue_size: int = 4,
                 max_failed_reads: int = 3):
        self.spec = source if isinstance(source, SourceSpec) else parse_source(source)
        self.live = self.spec.live if live is None else bool(live)
        if self.spec.kind == "file" and not Path(str(self.spec.target)).exists():
            raise SourceError(f"video file {self.spec.target} does not exist. Pass an existing file, a camera "
                              "index (0), rtsp://..., csi://0 or a GStreamer pipeline ending in appsink.")
        self.factory = capture_factory or default_capture_factory
        self.loop = loop
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_reconnects = max_reconnects
        self.max_failed_reads = max(1, int(max_failed_reads))
        # Stats (read by the consumer; written by the capture thread).
        self.frames_captured = 0
        self.frames_delivered = 0
        self.dropped = 0
        self.reconnects = 0
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
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            if not ok or frame is None:
                if self.loop and self.frames_captured > 0:
                    self._rewind()
                    continue
                return
            self.frames_captured += 1
            if not self._put(frame):
                return

    def _rewind(self) -> None:
        import cv2

        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._cap.release()
            self._cap = self._open(first=False)
            if self._cap is None:
                raise SourceError(f"cannot reopen {self.spec} to loop it.")

    def _run_live(self) -> None:
        failed = 0
        while not self._stop.is_set():
            ok, frame = self._cap.read() if self._cap is not None else (False, None)
            if ok and frame is not None:
                failed = 0
                self.frames_captured += 1
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1  # the consumer had not taken the previous one: stale
                    self._latest = frame
                    self._cond.notify()
                continue
            failed += 1
            if failed < self.max_failed_reads:
                continue
            if not self.reconnect:
                log.warning("source %s stopped delivering frames; not reconnecting (reconnect=False)", self.spec)
                return
            if not self._reconnect():
                return
            failed = 0

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
        TimeoutError if `timeout` seconds pass with no frame.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.live:
            with self._cond:
                while self._latest is None:
                    if self._ended.is_set() or self._stop.is_set():
                        return self._finish()
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"no frame from {self.spec} within {timeout} s")
                    self._cond.wait(0.1 if left is None else min(left, 0.1))
                frame, self._latest = self._latest, None
        else:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no frame from {self.spec} within {timeout} s")
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
        """Stop the capture thread and release the device. Safe to call twice."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass
