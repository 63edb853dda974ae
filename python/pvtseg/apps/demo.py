"""`pvtseg demo` / python/demo_camera.py: live segmentation on a camera, video or stream.

    pvtseg demo --model models/build/x.onnx --source 0
    pvtseg demo --model x.engine --source csi://0 --device cuda
    pvtseg demo --source clip.mp4 --output out.mp4 --headless        # default model
    pvtseg demo                                                       # default model on the bundled clip

Keys (window mode): q / Esc quit, space pause, m cycles overlay / mask / side-by-side,
s saves the current frame as PNG. `--headless` opens no window, prints progress and
writes `--output` if given. A file source ends with one summary line (frames, mean FPS,
per-stage ms). A live source that drops is reopened with backoff (logged).

The default model (no --model) is models/camvid_pvt_v2_b0_segformer.pth with its sidecar
models/camvid_pvt_v2_b0_segformer.json. On first use it is exported once to
models/build/ (labels output, at the sidecar's input size, ONNX when onnx + onnxruntime
are installed, else TorchScript) and re-exported when the checkpoint's sha256 changes;
later runs load the cached artifact and never import the training code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..errors import PvtsegError

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


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    sha = _sha256(checkpoint)
    if base.with_suffix(".json").is_file():
        try:
            cached = meta_mod.read(base.with_suffix(".json"))
        except PvtsegError:
            cached = {}
        if cached.get("checkpoint_sha256") == sha:
            if artifact.is_file():
                return artifact
        else:
            # Every artifact of this base (other formats, engines built from it) is stale now.
            log(f"{checkpoint.name} changed since {base.name} was exported: re-exporting")
            for suffix in (".onnx", ".ts", ".engine", ".onnx.data", ".json"):
                base.with_name(base.name + suffix).unlink(missing_ok=True)
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


def resolve_model(model: Optional[str], log: Callable[[str], None] = print) -> Path:
    """--model value -> an artifact the runtime can load (exporting a .pth on first use)."""
    if model is None:
        d = default_model_paths()
        if not d["checkpoint"].is_file():
            raise PvtsegError(f"no --model given and the default model {d['checkpoint']} is missing. Pass "
                              "--model with an exported .onnx / .ts / .engine, or train it with `pvtseg train`.")
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

    def summary(self) -> str:
        return (f"{self.frames} frames in {self.wall_s:.1f} s, mean {self.fps:.1f} FPS; per frame: "
                f"pre {self.mean('pre'):.1f} ms, infer {self.mean('infer'):.1f} ms, post {self.mean('post'):.1f} ms, "
                f"render {self.mean('render'):.1f} ms")


class Montage:
    """Keeps a few rendered frames and writes them as one PNG grid."""

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
        ok, buf = cv2.imencode(".png", grid)
        if not ok:
            raise PvtsegError(f"could not encode the montage {path}")
        atomic_write_bytes(path, buf.tobytes())
        return Path(path)


class VideoOut:
    """cv2.VideoWriter that writes to a hidden partial file and renames it when closed."""

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 30.0
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.writer: Any = None
        self.size: Optional[tuple] = None
        self.frames = 0

    def write(self, img: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter.fourcc(*self.FOURCC.get(self.path.suffix.lower(), "mp4v"))
            self.size = (img.shape[1], img.shape[0])
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise PvtsegError(f"cannot write {self.path}: OpenCV has no encoder for {self.path.suffix!r} here. "
                                  "Use .mp4 or .avi.")
        if (img.shape[1], img.shape[0]) != self.size:  # the view mode changed the size
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(img)
        self.frames += 1

    def close(self, keep: bool = True) -> Optional[Path]:
        if self.writer is None:
            return None
        self.writer.release()
        self.writer = None
        if keep and self.frames:
            os.replace(self.tmp, self.path)
            return self.path
        self.tmp.unlink(missing_ok=True)
        return None


def run_loop(seg: Any, source: Any, *, visualizer: Any = None, writer: Optional[VideoOut] = None,
             show: bool = False, max_frames: Optional[int] = None, montage: Optional[Montage] = None,
             progress: Optional[Callable[[int, LoopStats], None]] = None, save_dir: Path = Path("."),
             window: str = "pvtseg") -> LoopStats:
    """Read -> segment -> render -> write / show, until the source ends, max_frames, or q/Esc."""
    import cv2

    stats = LoopStats()
    fps_ema: Optional[float] = None
    paused = False
    t_start = time.perf_counter()
    t_prev = t_start
    last: Optional[np.ndarray] = None
    while max_frames is None or stats.frames < max_frames:
        if show and paused:
            key = cv2.waitKey(30) & 0xFF
            if key in (ord("q"), 27):
                stats.quit_by_user = True
                break
            if key == ord(" "):
                paused = False
            elif key == ord("s") and last is not None:
                stats.saved.append(_save(last, save_dir, stats.frames))
            t_prev = time.perf_counter()
            continue
        t0 = time.perf_counter()
        frame = source.read()
        t1 = time.perf_counter()
        if frame is None:
            break
        labels = seg(frame)
        tm = seg.timings
        t2 = time.perf_counter()
        if visualizer is not None:
            out = visualizer.render(frame, labels, fps_ema, tm)
        else:
            out = None
        t3 = time.perf_counter()
        if writer is not None and out is not None:
            writer.write(out)
        if montage is not None and out is not None:
            montage.offer(stats.frames, out)
        t4 = time.perf_counter()
        stats.frames += 1
        st = stats.stages
        st["wait"].add((t1 - t0) * 1e3)
        st["pre"].add(tm.pre)
        st["infer"].add(tm.infer)
        st["post"].add(tm.post)
        st["render"].add((t3 - t2) * 1e3)
        st["write"].add((t4 - t3) * 1e3)
        dt = t4 - t_prev
        t_prev = t4
        if dt > 0:
            fps_ema = 1.0 / dt if fps_ema is None else 0.9 * fps_ema + 0.1 / dt
        if show and out is not None:
            last = out
            cv2.imshow(window, out)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27):
                stats.quit_by_user = True
                break
            if key == ord(" "):
                paused = True
            elif key == ord("m") and visualizer is not None:
                visualizer.next_mode()
            elif key == ord("s"):
                stats.saved.append(_save(out, save_dir, stats.frames))
        if progress is not None:
            progress(stats.frames, stats)
    stats.wall_s = time.perf_counter() - t_start
    return stats


def _save(img: np.ndarray, save_dir: Path, index: int) -> str:
    import cv2

    path = Path(save_dir) / f"pvtseg_{time.strftime('%Y%m%d_%H%M%S')}_{index:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
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
    p.add_argument("--output", help="write the rendered video here (.mp4 or .avi)")
    p.add_argument("--headless", action="store_true", help="no window: print progress (use with --output)")
    p.add_argument("--alpha", type=float, default=0.5, help="mask opacity over the frame (0..1, default 0.5)")
    p.add_argument("--no-legend", action="store_true", help="hide the class legend")
    p.add_argument("--mode", choices=("overlay", "mask", "side-by-side"), default="overlay", help="initial view")
    p.add_argument("--montage", help="also write a PNG grid of a few output frames here")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (TensorRT engines always use the GPU)")
    p.add_argument("--threads", type=int, help="CPU threads for the backend (default: all cores)")
    p.add_argument("--loop", action="store_true", help="loop a video file")
    p.add_argument("--save-dir", default=".", help="where `s` saves frames (default: .)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the summary")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if not 0.0 <= args.alpha <= 1.0:
        print(f"{PROG}: --alpha must be in 0..1, got {args.alpha}", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except PvtsegError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from ..runtime import Segmenter, Visualizer
    from ..runtime.sources import FrameSource

    model = resolve_model(args.model)
    source = args.source
    if source is None:
        if args.model is None:
            clip = default_model_paths()["clip"]
            if not clip.is_file():
                raise PvtsegError(f"the bundled clip {clip} is missing; pass --source (a video file, 0 for a webcam, ...).")
            source = str(clip)
        else:
            source = "0"
    seg = Segmenter(model, device=args.device, **({"threads": args.threads} if args.threads else {}))
    show = not args.headless
    if show and not _gui_available():
        print(f"{PROG}: no display / OpenCV built without GUI (opencv-python-headless?): running headless. "
              "Pass --headless to silence this, --output to save the video.", file=sys.stderr)
        show = False
    vis = Visualizer(seg.meta, alpha=args.alpha, legend=not args.no_legend, mode=args.mode)
    with FrameSource(source, loop=args.loop) as src:
        print(f"{PROG}: {seg.describe()}; source {src.spec} ({'live' if src.live else 'file'}"
              f"{f', {src.frame_count} frames' if src.frame_count else ''})", flush=True)
        total = src.frame_count if not args.loop else None
        if args.max_frames:
            total = min(total, args.max_frames) if total else args.max_frames
        writer = VideoOut(Path(args.output), src.fps or 30.0) if args.output else None
        montage = Montage(total) if args.montage else None
        last_print = [time.perf_counter()]

        def progress(n: int, st: LoopStats) -> None:
            if args.quiet or show:
                return
            now = time.perf_counter()
            if now - last_print[0] < 1.0 and n != total:
                return
            last_print[0] = now
            of = f"/{total}" if total else ""
            fps = n / max(now - t0, 1e-9)
            print(f"frame {n}{of}  {fps:.1f} FPS  {seg.timings}", flush=True)

        t0 = time.perf_counter()
        try:
            stats = run_loop(seg, src, visualizer=vis, writer=writer, show=show, max_frames=args.max_frames,
                             montage=montage, progress=progress, save_dir=Path(args.save_dir))
        finally:
            # Keep what was recorded even when a live source failed for good or on Ctrl-C.
            written = writer.close(keep=True) if writer is not None else None
            if writer is not None and written is not None and sys.exc_info()[0] is not None:
                print(f"{PROG}: kept the {writer.frames} frames written so far in {written}", file=sys.stderr)
            if show:
                import cv2

                cv2.destroyAllWindows()
        extra = []
        if src.live:
            extra.append(f"dropped {src.dropped} stale, reconnects {src.reconnects}")
        if written:
            extra.append(f"wrote {written}")
        if montage is not None:
            m = montage.write(Path(args.montage))
            if m:
                extra.append(f"montage {m}")
        print(f"{PROG}: {stats.summary()}" + ("; " + "; ".join(extra) if extra else ""), flush=True)
    seg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
