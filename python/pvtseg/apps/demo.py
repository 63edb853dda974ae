"""`pvtseg demo` / python/demo_camera.py: live segmentation on a camera, video or stream.

    pvtseg demo --model models/build/x.onnx --source 0
    pvtseg demo --model x.engine --source csi://0 --device cuda
    pvtseg demo --source clip.mp4 --output out.mp4 --headless        # default model
    pvtseg demo                                                       # default model on the bundled clip

Keys (window mode): q / Esc quit, space pause, m cycles overlay / mask / side-by-side,
s saves the current frame as PNG. `--headless` opens no window, prints progress and
writes `--output` if given. A file source ends with one summary line (frames, mean FPS,
per-stage ms; a warning when fewer frames could be decoded than the file declares). A live
source that drops or stalls (no frame for --stall-timeout s) is reopened with backoff (logged).

Recording: SIGTERM and SIGINT end the loop after the current frame and finish the video
(exit 0 after SIGTERM, 130 after SIGINT; a second signal aborts, still closing the file).
Before every frame the free space is checked: when the disk is nearly full the recording
stops while the container can still be finished (exit 1, the frames so far play). The video
is written to a hidden temporary and renamed into place once it opens. Outputs that are
the source, unknown extensions and unwritable folders are refused before anything runs.

The default model (no --model) is models/camvid_pvt_v2_b0_segformer.pth with its sidecar
models/camvid_pvt_v2_b0_segformer.json. On first use it is exported once to
models/build/ (labels output, at the sidecar's input size, ONNX when onnx + onnxruntime
are installed, else TorchScript) and re-exported when the checkpoint's sha256 changes;
later runs load the cached artifact and never import the training code. A cached artifact
that does not match its sidecar's digest or does not load (a truncated file) is rebuilt.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..errors import DiskSpaceError, PvtsegError, WriteError
from ..io_utils import (check_free_space, check_writable, clean_stale_temps, describe_os_error, free_bytes,
                        fsync_dir, fsync_file, sha256_file, temp_path_for)

PROG = "pvtseg demo"
DEFAULT_NAME = "camvid_pvt_v2_b0_segformer"


def repo_models_dir() -> Path:
    """models/ of the source checkout (python/pvtseg/demo.py -> ../../models), else ./models."""
    env = os.environ.get("PVTSEG_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[3] / "models"
    return here if here.is_dir() else Path.cwd() / "models"


def default_model_paths() -> Dict[str, Path]:
    d = repo_models_dir()
    return {"checkpoint": d / f"{DEFAULT_NAME}.pth", "sidecar": d / f"{DEFAULT_NAME}.json",
            "clip": d / "samples" / "camvid_seq05vd.mp4", "build": d / "build"}


def _export_format() -> str:
    """ONNX when the exporter and ONNX Runtime are both importable (fastest on CPU here), else TorchScript."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torchscript"
    return "onnx"


def ensure_exported(checkpoint: Path, sidecar: Optional[Path] = None, build_dir: Optional[Path] = None,
                    fmt: Optional[str] = None, log: Callable[[str], None] = print, output: str = "labels") -> Path:
    """Export `checkpoint` (.pth) once to build_dir (labels output by default, at the sidecar's
    size) and return the artifact; reuse the cached one while its checkpoint_sha256 matches.

    `output="logits_4x"` exports logits at 1/4 (the Segmenter upsamples + argmaxes them)."""
    from .. import meta as meta_mod

    checkpoint = Path(checkpoint)
    sidecar = Path(sidecar) if sidecar else checkpoint.with_suffix(".json")
    if not checkpoint.is_file():
        raise PvtsegError(f"no checkpoint {checkpoint}. Train one (`pvtseg train`) or pass --model with an "
                          "exported .onnx / .ts / .engine.")
    src_meta = meta_mod.read(sidecar)
    fmt = fmt or _export_format()
    build_dir = Path(build_dir) if build_dir else checkpoint.parent / "build"
    base = build_dir / f"{checkpoint.stem}_{'labels' if output == 'labels' else output}"
    artifact = base.with_suffix(".onnx" if fmt == "onnx" else ".ts")
    sha = sha256_file(checkpoint)
    if base.with_suffix(".json").is_file():
        try:
            cached = meta_mod.read(base.with_suffix(".json"))
        except PvtsegError:
            cached = {}
        if cached.get("checkpoint_sha256") == sha:
            problem = _broken_artifact(artifact) if artifact.is_file() else None
            if artifact.is_file() and problem is None:
                return artifact
            if problem is not None:
                log(f"the cached {artifact} cannot be used ({problem}): re-exporting")
                _remove_exports(base)
        else:
            # Every artifact of this base (other formats, engines built from it) is stale now.
            log(f"{checkpoint.name} changed since {base.name} was exported: re-exporting")
            _remove_exports(base)
    try:
        import torch  # noqa: F401

        from ..export import export_model
        from ..models import create_model
    except ImportError as e:
        raise PvtsegError(f"exporting {checkpoint} needs PyTorch ({e}). Install torch, or export the model on "
                          "another machine (`pvtseg export`) and pass the .onnx / .engine with --model.") from e
    inp = src_meta["input"]
    log(f"exporting {checkpoint.name} -> {artifact} (first use; cached afterwards)")
    model = create_model(src_meta["arch"], num_classes=src_meta["num_classes"], checkpoint=str(checkpoint)).eval()
    paths = export_model(model, out=str(base), arch=src_meta["arch"], height=int(inp["height"]),
                         width=int(inp["width"]), formats=(fmt,), output=output,
                         class_names=src_meta["class_names"], palette=src_meta["palette"], mean=inp["mean"],
                         std=inp["std"], checkpoint_sha256=sha, verify=True, log=lambda *a, **k: None)
    return Path(paths["onnx" if fmt == "onnx" else "torchscript"])


def _broken_artifact(artifact: Path) -> Optional[str]:
    """Why a cached export cannot be used, or None. The export recorded the file's size and sha256
    in its sidecar, so reading the sidecar catches a truncated or half-replaced file without
    loading the model a second time (the demo loads it right after)."""
    from .. import meta as meta_mod

    try:
        meta_mod.read(artifact)
    except (PvtsegError, OSError) as e:
        return str(e).splitlines()[0][:300]
    return None


def _remove_exports(base: Path) -> None:
    for suffix in (".onnx", ".ts", ".engine", ".onnx.data", ".json"):
        base.with_name(base.name + suffix).unlink(missing_ok=True)


def _require_default_model() -> None:
    ckpt = default_model_paths()["checkpoint"]
    if not ckpt.is_file():
        raise PvtsegError(f"no --model given and the default model {ckpt} is missing. Pass "
                          "--model with an exported .onnx / .ts / .engine, or train it with `pvtseg train`.")


def resolve_model(model: Optional[str], log: Callable[[str], None] = print) -> Path:
    """--model value -> an artifact the runtime can load (exporting a .pth on first use)."""
    if model is None:
        d = default_model_paths()
        _require_default_model()
        return ensure_exported(d["checkpoint"], d["sidecar"], d["build"], log=log)
    p = Path(model)
    if p.suffix.lower() in (".pth", ".pt") and p.with_suffix(".json").is_file():
        return ensure_exported(p, p.with_suffix(".json"), p.parent / "build", log=log)
    return p


# --------------------------------------------------------------------------------------------
# The loop (also used by `pvtseg bench` to measure the loop's overhead)
# --------------------------------------------------------------------------------------------

class Mean:
    """Running mean in O(1) memory (a long live run must not grow a list per frame)."""

    __slots__ = ("n", "total", "last")

    def __init__(self) -> None:
        self.n, self.total, self.last = 0, 0.0, 0.0

    def add(self, v: float) -> None:
        self.n += 1
        self.total += v
        self.last = v

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0


STAGES = ("wait", "pre", "infer", "post", "render", "write")


@dataclass
class LoopStats:
    frames: int = 0
    wall_s: float = 0.0
    stages: Dict[str, Mean] = field(default_factory=lambda: {k: Mean() for k in STAGES})
    saved: List[str] = field(default_factory=list)
    quit_by_user: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def mean(self, name: str) -> float:
        """Mean ms per frame of a stage: wait (for the source), pre, infer, post, render, write."""
        return self.stages[name].mean

    def record(self, tm: Any, *, wait_ms: float, render_ms: float, write_ms: float) -> None:
        """One frame done: its stage times (`tm`: the Segmenter's pre / infer / post ms)."""
        self.frames += 1
        st = self.stages
        st["wait"].add(wait_ms)
        st["pre"].add(tm.pre)
        st["infer"].add(tm.infer)
        st["post"].add(tm.post)
        st["render"].add(render_ms)
        st["write"].add(write_ms)

    def summary(self) -> str:
        return (f"{self.frames} frames in {self.wall_s:.1f} s, mean {self.fps:.1f} FPS; per frame: "
                f"pre {self.mean('pre'):.1f} ms, infer {self.mean('infer'):.1f} ms, post {self.mean('post'):.1f} ms, "
                f"render {self.mean('render'):.1f} ms")


MONTAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


class Montage:
    """Keeps a few rendered frames and writes them as one image grid, encoded by the file's
    extension (MONTAGE_EXTS)."""

    def __init__(self, total: Optional[int], count: int = 6, cols: int = 3, tile_width: int = 320):
        self.count, self.cols, self.tile_width = count, cols, tile_width
        self.pick = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()) if total else None
        self.tiles: List[np.ndarray] = []

    def offer(self, index: int, img: np.ndarray) -> None:
        import cv2

        keep = index in self.pick if self.pick is not None else index % 30 == 0
        if not keep:
            return
        h = max(1, round(img.shape[0] * self.tile_width / img.shape[1]))
        self.tiles.append(cv2.resize(img, (self.tile_width, h), interpolation=cv2.INTER_AREA))
        self.tiles = self.tiles[-self.count:]

    def write(self, path: Path) -> Optional[Path]:
        import cv2

        from ..io_utils import atomic_write_bytes

        if not self.tiles:
            return None
        h = max(t.shape[0] for t in self.tiles)
        tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in self.tiles]
        while len(tiles) % self.cols and len(tiles) > self.cols:
            tiles.append(np.zeros_like(tiles[0]))
        cols = min(self.cols, len(tiles))
        rows = [np.concatenate(tiles[r:r + cols], axis=1) for r in range(0, len(tiles), cols)]
        grid = np.concatenate(rows, axis=0)
        ext = Path(path).suffix.lower()
        if ext not in MONTAGE_EXTS:
            raise PvtsegError(f"--montage {path}: unknown image extension; use one of {', '.join(MONTAGE_EXTS)}")
        ok, buf = cv2.imencode(ext, grid)
        if not ok:
            raise PvtsegError(f"OpenCV could not encode the montage {path} as {ext}; use .png")
        atomic_write_bytes(path, buf.tobytes())
        return Path(path)


class VideoOut:
    """cv2.VideoWriter into a hidden temporary beside `path`, renamed into place by close().

    A container only plays once the writer is released (mp4 writes its index, avi its idx1,
    at the end), and that last write needs room. So before every frame the free space of
    the target's file system is checked, and recording stops with DiskSpaceError while
    enough is left to finish the file (RESERVE, a few frames, the index); close() then
    releases the writer, checks that the result opens and reads, and renames it.
    """

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
    RESERVE = 1 << 20       # bytes kept free to finish the file
    INDEX_BYTES = 32        # per frame, for the container's index

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        if self.path.suffix.lower() not in self.FOURCC:
            raise PvtsegError(f"--output {self.path}: unknown video extension; use one of {', '.join(self.FOURCC)}")
        self.fps = fps if fps and fps > 0 else 30.0
        self.tmp = temp_path_for(self.path, self.path.suffix)  # the writer picks the container by extension
        self.writer: Any = None
        self.size: Optional[tuple] = None
        self.frames = 0
        self.frames_in_file: Optional[int] = None  # what the finished file declares (close)

    def write(self, img: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            self._open(img)
        self._check_room(img)
        if (img.shape[1], img.shape[0]) != self.size:  # the view mode changed the size
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(img)
        self.frames += 1

    def _open(self, img: np.ndarray) -> None:
        import cv2

        fourcc = cv2.VideoWriter.fourcc(*self.FOURCC[self.path.suffix.lower()])
        self.size = (img.shape[1], img.shape[0])
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self.size)
        if not self.writer.isOpened():
            self.writer = None
            check_writable(self.path.parent, "the video")  # a folder that became read-only says so
            raise PvtsegError(f"cannot write {self.path}: OpenCV has no encoder for {self.path.suffix!r} here. "
                              "Use .mp4 or .avi.")

    def _check_room(self, img: np.ndarray) -> None:
        free = free_bytes(self.path.parent)
        if free is None:
            return
        try:
            written = self.tmp.stat().st_size
        except OSError:
            written = 0
        per_frame = written / self.frames if self.frames and written else img.nbytes / 10
        need = self.RESERVE + 4 * per_frame + self.INDEX_BYTES * self.frames
        if free < need:
            raise DiskSpaceError(
                errno.ENOSPC, f"stopped recording {self.path} after {self.frames} frames: {free / 2 ** 20:.1f} MiB "
                "left on its file system (No space left on device, ENOSPC), kept to finish the file. Free some "
                "space or record somewhere else.", str(self.path))

    def close(self, keep: bool = True) -> Optional[Path]:
        """Finish the file; with frames and `keep`, check it plays and rename it into place.

        Raises WriteError when the finished file does not open (its data is kept beside it)."""
        if self.writer is None:
            return None
        self.writer.release()
        self.writer = None
        if not (keep and self.frames):
            self.tmp.unlink(missing_ok=True)
            return None
        self.frames_in_file = self._frames_in(self.tmp)
        if self.frames_in_file is None:
            kept = self.path.with_name(f"{self.path.stem}.unfinished{self.path.suffix}")
            os.replace(self.tmp, kept)
            raise WriteError(errno.EIO, f"cannot finish the recording {self.path}: {self.frames} frames were encoded "
                             f"but the file does not play (disk full or I/O error?); its data is in {kept}.",
                             str(self.path))
        fsync_file(self.tmp)
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    @staticmethod
    def _frames_in(path: Path) -> Optional[int]:
        """Frames the file declares, or None when it does not open or its first frame does not decode."""
        import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened() or not cap.read()[0]:
                return None
            return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()


class StopSignals:
    """SIGTERM (systemd, `docker stop`) and SIGINT (Ctrl-C) end the loop after the current
    frame, so the recording is finished and plays; a second signal aborts at once
    (KeyboardInterrupt; the recording is still closed). Handlers are restored on exit;
    outside the main thread, where Python cannot install them, none are installed."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        try:
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        # os.write, not print: a handler may run while print holds stdout's buffer.
        os.write(2, f"{PROG}: {signal.Signals(signum).name}: stopping after this frame and finishing the output "
                    "(send it again to abort)\n".encode())

    def __call__(self) -> bool:
        return self.signum is not None

    def exit_code(self) -> int:
        """0 after SIGTERM (a requested stop, everything saved: what service managers expect),
        130 after Ctrl-C (the shell's convention for an interrupted command)."""
        return 128 + signal.SIGINT if self.signum == signal.SIGINT else 0


def _next_frame(source: Any, stop: Optional[Callable[[], bool]]) -> Optional[np.ndarray]:
    """source.read(); with `stop`, in short waits so a stop request is seen within 0.25 s."""
    if stop is None:
        return source.read()
    while not stop():
        try:
            return source.read(timeout=0.25)
        except TimeoutError:
            continue
    return None


def run_loop(seg: Any, source: Any, *, visualizer: Any = None, writer: Optional[VideoOut] = None,
             show: bool = False, max_frames: Optional[int] = None, montage: Optional[Montage] = None,
             progress: Optional[Callable[[int, LoopStats], None]] = None, save_dir: Path = Path("."),
             window: str = "pvtseg", stop: Optional[Callable[[], bool]] = None) -> LoopStats:
    """Read -> segment -> render -> write / show, until the source ends, max_frames, q/Esc, or
    `stop()` turns true (checked before each frame and while waiting for one)."""
    import cv2

    stats = LoopStats()
    fps_ema: Optional[float] = None
    paused: Optional[bool] = False  # None: quit
    t_start = time.perf_counter()
    t_prev = t_start
    last: Optional[np.ndarray] = None
    while (max_frames is None or stats.frames < max_frames) and not (stop is not None and stop()):
        if show and paused:
            paused = _on_key(cv2.waitKey(30) & 0xFF, True, stats, last, None, save_dir)
            if paused is None:
                break
            t_prev = time.perf_counter()
            continue
        t0 = time.perf_counter()
        frame = _next_frame(source, stop)
        t1 = time.perf_counter()
        if frame is None:
            break
        labels = seg(frame)
        tm = seg.timings
        t2 = time.perf_counter()
        out = visualizer.render(frame, labels, fps_ema, tm) if visualizer is not None else None
        t3 = time.perf_counter()
        if writer is not None and out is not None:
            writer.write(out)
        if montage is not None and out is not None:
            montage.offer(stats.frames, out)
        t4 = time.perf_counter()
        stats.record(tm, wait_ms=(t1 - t0) * 1e3, render_ms=(t3 - t2) * 1e3, write_ms=(t4 - t3) * 1e3)
        dt, t_prev = t4 - t_prev, t4
        if dt > 0:
            fps_ema = 1.0 / dt if fps_ema is None else 0.9 * fps_ema + 0.1 / dt
        if show and out is not None:
            last = out
            cv2.imshow(window, out)
            paused = _on_key(cv2.waitKey(1) & 0xFF, False, stats, out, visualizer, save_dir)
            if paused is None:
                break
        if progress is not None:
            progress(stats.frames, stats)
    stats.wall_s = time.perf_counter() - t_start
    return stats


def _on_key(key: int, paused: bool, stats: LoopStats, img: Optional[np.ndarray], visualizer: Any,
            save_dir: Path) -> Optional[bool]:
    """Apply a window key: q / Esc quit (returns None), space toggles pause, m the view mode
    (while running), s saves the frame shown. Returns the new paused state."""
    if key in (ord("q"), 27):
        stats.quit_by_user = True
        return None
    if key == ord(" "):
        return not paused
    if key == ord("m") and visualizer is not None:
        visualizer.next_mode()
    elif key == ord("s") and img is not None:
        stats.saved.append(_save(img, save_dir, stats.frames))
    return paused


def _save(img: np.ndarray, save_dir: Path, index: int) -> str:
    import cv2

    from ..io_utils import atomic_write_bytes

    path = Path(save_dir) / f"pvtseg_{time.strftime('%Y%m%d_%H%M%S')}_{index:06d}.png"
    ok, png = cv2.imencode(".png", img)
    if ok:
        atomic_write_bytes(path, png.tobytes())  # a full disk leaves no half PNG behind
    print(f"saved {path}", flush=True)
    return str(path)


def _gui_available() -> bool:
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("pvtseg", cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        return False


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Live semantic segmentation on a camera, video or stream.",
                                epilog="Keys: q/Esc quit, space pause, m overlay/mask/side-by-side, s save a frame.")
    p.add_argument("--model", help="exported .onnx / .ts / .engine (with its .json), or a .pth with a .json "
                                   "sidecar (exported once to build/). Default: the bundled CamVid model")
    p.add_argument("--source", help="camera index (0), video file, rtsp://..., csi://N, or a GStreamer pipeline "
                                    "ending in appsink. Default with no --model: the bundled CamVid clip; else 0")
    p.add_argument("--output", help="write the rendered video here (.mp4 or .avi; also .m4v, .mov, .mkv)")
    p.add_argument("--headless", action="store_true", help="no window: print progress (use with --output)")
    p.add_argument("--alpha", type=float, default=0.5, help="mask opacity over the frame (0..1, default 0.5)")
    p.add_argument("--no-legend", action="store_true", help="hide the class legend")
    p.add_argument("--mode", choices=("overlay", "mask", "side-by-side"), default="overlay", help="initial view")
    p.add_argument("--montage", help="also write a grid of a few output frames here (.png, .jpg/.jpeg or .bmp)")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (TensorRT engines always use the GPU)")
    p.add_argument("--threads", type=int, help="CPU threads for the backend (default: all cores)")
    p.add_argument("--backend", choices=("onnxruntime", "torchscript", "tensorrt"),
                   help="default: from the model's extension; `tensorrt` on an .onnx builds an engine once and "
                        "caches it beside the ONNX")
    p.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16",
                   help="precision of the engine built for --backend tensorrt (default fp16)")
    p.add_argument("--loop", action="store_true", help="loop a video file")
    p.add_argument("--stall-timeout", type=float, default=5.0,
                   help="live sources: seconds without a new frame that count as a drop and reconnect "
                        "(default 5; 0 disables the watchdog)")
    p.add_argument("--open-timeout", type=float, default=10.0,
                   help="streams (rtsp://, http://, ...): seconds to wait for the server when opening (default 10)")
    p.add_argument("--save-dir", default=".", help="where `s` saves frames (default: .)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the summary")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if not 0.0 <= args.alpha <= 1.0:
        print(f"{PROG}: --alpha must be in 0..1, got {args.alpha}", file=sys.stderr)
        return 2
    if args.stall_timeout < 0 or args.open_timeout <= 0:
        print(f"{PROG}: --stall-timeout must be >= 0 and --open-timeout > 0 (seconds)", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only folder, no permission: one line with the path and cause
        print(f"{PROG}: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except PvtsegError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


def _pick_source(args: argparse.Namespace) -> str:
    if args.source is not None:
        return str(args.source)
    if args.model is not None:
        return "0"
    _require_default_model()  # the missing model is the first thing to say
    clip = default_model_paths()["clip"]
    if not clip.is_file():
        raise PvtsegError(f"the bundled clip {clip} is missing; pass --source (a video file, 0 for a webcam, ...).")
    return str(clip)


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_outputs(args: argparse.Namespace, source: str) -> None:
    """Refuse, before any slow work, outputs that would overwrite the source or each other, unknown
    extensions, and folders that cannot be written (WriteError: read-only, no permission, full)."""
    from ..runtime.sources import parse_source

    spec = parse_source(source)
    outs = [(flag, Path(v)) for flag, v in (("--output", args.output), ("--montage", args.montage)) if v]
    for flag, path in outs:
        if spec.kind == "file" and _same_file(path, Path(str(spec.target))):
            raise PvtsegError(f"{flag} {path} is the source video {source}: it would be overwritten while it is "
                              "read. Write the result somewhere else.")
    if len(outs) == 2 and _same_file(outs[0][1], outs[1][1]):
        raise PvtsegError(f"--output and --montage are the same file {outs[0][1]}; give them different names.")
    if args.output and Path(args.output).suffix.lower() not in VideoOut.FOURCC:
        raise PvtsegError(f"--output {args.output}: unknown video extension; use one of {', '.join(VideoOut.FOURCC)}")
    if args.montage and Path(args.montage).suffix.lower() not in MONTAGE_EXTS:
        raise PvtsegError(f"--montage {args.montage}: unknown image extension; use one of {', '.join(MONTAGE_EXTS)}")
    for flag, path in outs:
        check_writable(path.parent, f"{flag} into")
        clean_stale_temps(path.parent)  # the hidden partial video of a run killed with SIGKILL
    if args.output:
        check_free_space(Path(args.output).parent, VideoOut.RESERVE, f"recording --output {args.output}", margin=0)


def _run(args: argparse.Namespace) -> int:
    from ..runtime import Segmenter, Visualizer
    from ..runtime.sources import FrameSource

    source = _pick_source(args)
    check_outputs(args, source)
    model = resolve_model(args.model)
    seg = Segmenter(model, device=args.device, backend=args.backend, precision=args.precision,
                    **({"threads": args.threads} if args.threads else {}))
    show = not args.headless
    if show and not _gui_available():
        print(f"{PROG}: no display / OpenCV built without GUI (opencv-python-headless?): running headless. "
              "Pass --headless to silence this, --output to save the video.", file=sys.stderr)
        show = False
    vis = Visualizer(seg.meta, alpha=args.alpha, legend=not args.no_legend, mode=args.mode)
    with StopSignals() as stop, FrameSource(source, loop=args.loop, stall_timeout=args.stall_timeout,
                                            open_timeout=args.open_timeout) as src:
        print(f"{PROG}: {seg.describe()}; source {src.spec} ({'live' if src.live else 'file'}"
              f"{f', {src.frame_count} frames' if src.frame_count else ''})", flush=True)
        stats, extra = _record(args, seg, src, vis, show, stop)
        if stop.signum is not None:
            extra.insert(0, f"stopped by {signal.Signals(stop.signum).name}")
        if src.incomplete and not stop():
            print(f"{PROG}: warning: {src.incomplete}", file=sys.stderr)
            extra.append(f"warning: {src.incomplete}")
        print(f"{PROG}: {stats.summary()}" + ("; " + "; ".join(extra) if extra else ""), flush=True)
    seg.close()
    return stop.exit_code()


def _record(args: argparse.Namespace, seg: Any, src: Any, vis: Any, show: bool,
            stop: StopSignals) -> "tuple[LoopStats, List[str]]":
    """The loop with its writers; returns the stats and the summary's extra parts."""
    total = src.frame_count if not args.loop else None
    if args.max_frames:
        total = min(total, args.max_frames) if total else args.max_frames
    writer = VideoOut(Path(args.output), src.fps or 30.0) if args.output else None
    montage = Montage(total) if args.montage else None
    t0 = time.perf_counter()
    last_print = [t0]

    def progress(n: int, st: LoopStats) -> None:
        now = time.perf_counter()
        if args.quiet or show or (now - last_print[0] < 1.0 and n != total):
            return
        last_print[0] = now
        print(f"frame {n}{f'/{total}' if total else ''}  {n / max(now - t0, 1e-9):.1f} FPS  {seg.timings}",
              flush=True)

    try:
        stats = run_loop(seg, src, visualizer=vis, writer=writer, show=show, max_frames=args.max_frames,
                         montage=montage, progress=progress, save_dir=Path(args.save_dir), stop=stop)
    finally:
        # Finish what was recorded whatever ended the loop: a full disk, a source that failed for good,
        # a second Ctrl-C.
        written = writer.close(keep=True) if writer is not None else None
        if writer is not None and written is not None and sys.exc_info()[0] is not None:
            print(f"{PROG}: kept the {writer.frames} frames written so far in {written}", file=sys.stderr)
        if show:
            import cv2

            cv2.destroyAllWindows()
    extra = []
    if src.live:
        extra.append(f"dropped {src.dropped} stale, {src.stalls} stalls, reconnects {src.reconnects}")
    if writer is not None and written is not None:
        extra.append(f"wrote {written} ({writer.frames} frames)")
    if montage is not None:
        m = montage.write(Path(args.montage))
        if m:
            extra.append(f"montage {m}")
    return stats, extra


if __name__ == "__main__":
    sys.exit(main())
