"""`pvtseg bench`: per-stage latency of each backend vs Hugging Face's eager SegFormer, in one run.

    pvtseg bench --model models/build/x.onnx --backends onnxruntime,torchscript --frames 200 \\
                 --json bench.json --plot bench.png
    pvtseg bench --model models/build/x.ts --device cuda --fp16 --cuda-graph

What is measured (warm-up excluded):
- each backend of the artifact family (x.onnx, x.ts, x.engine beside each other): the
  Segmenter's pre / infer / post ms per frame and their sum (frame in -> labels out), as
  p50 / p90 / p99, and FPS = 1000 / mean total. On CUDA, `--fp16` adds TorchScript FP16
  and `--cuda-graph` a TorchScript CUDA-graph variant; the backends return host arrays, so
  every timing includes the device synchronisation.
- the reference, measured in the same run on the same frames: transformers'
  SegformerForSemanticSegmentation of the same architecture (random weights: timing does
  not depend on them), eager, at the same input size: forward + bilinear upsample to the
  frame size + argmax (+ copy to host). Its input tensor is prepared outside the timed
  region, so the reference is *not* charged for preprocessing and the ratio is conservative.
  With `--fp16` on CUDA the reference runs in FP16 too.
- camera-loop overhead: the demo's loop (capture thread decoding a video file, segment,
  render overlay + legend + text, no display / writer) vs bare Segmenter calls on the same
  frames already in memory, with the fastest backend.
- memory: process RSS (VmRSS from /proc/self/status) over N frames of a looped file
  through the same loop; growth = last sample - sample after the first 10% of frames.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PvtsegError

PROG = "pvtseg bench"
SUFFIXES = {"onnxruntime": ".onnx", "torchscript": ".ts", "tensorrt": ".engine"}

# Hugging Face SegformerConfig for the architectures pvtseg registers as <encoder>_segformer.
_SMALL = dict(hidden_sizes=[32, 64, 160, 256], decoder_hidden_size=256)
_BIG = dict(hidden_sizes=[64, 128, 320, 512])
_HF_ENCODERS: Dict[str, Dict[str, Any]] = {
    "b0": dict(_SMALL, depths=[2, 2, 2, 2]),
    "b1": dict(_BIG, depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "b2": dict(_BIG, depths=[3, 4, 6, 3], decoder_hidden_size=768),
    "b3": dict(_BIG, depths=[3, 4, 18, 3], decoder_hidden_size=768),
    "b4": dict(_BIG, depths=[3, 8, 27, 3], decoder_hidden_size=768),
    "b5": dict(_BIG, depths=[3, 6, 40, 3], decoder_hidden_size=768),
}


def hf_config_kwargs(arch: str, num_classes: int) -> Optional[Dict[str, Any]]:
    """SegformerConfig kwargs for `pvt_v2_bN_segformer` / `mit_bN_segformer`, else None."""
    for prefix, ratios in (("pvt_v2_", None), ("mit_", [4, 4, 4, 4])):
        if arch.startswith(prefix) and arch.endswith("_segformer"):
            b = arch[len(prefix):-len("_segformer")]
            if b not in _HF_ENCODERS:
                return None
            enc = _HF_ENCODERS[b]
            mlp = ratios or ([4, 4, 4, 4] if b == "b5" else [8, 8, 4, 4])
            return dict(num_channels=3, num_encoder_blocks=4, depths=enc["depths"], sr_ratios=[8, 4, 2, 1],
                        hidden_sizes=enc["hidden_sizes"], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
                        num_attention_heads=[1, 2, 5, 8], mlp_ratios=mlp,
                        decoder_hidden_size=enc["decoder_hidden_size"], num_labels=num_classes)
    return None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def percentiles(values: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def rss_mb() -> float:
    """Resident set size of this process in MiB, from /proc/self/status (no psutil)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource  # fallback: peak, not current

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def camvid_dir() -> Optional[Path]:
    env = os.environ.get("PVTSEG_CAMVID")
    cands = [Path(env)] if env else []
    root = Path(__file__).resolve().parents[3]
    cands += [root.parent / "shared" / "data" / "camvid", Path.cwd().parent / "shared" / "data" / "camvid"]
    for c in cands:
        if (c / "test" / "images").is_dir():
            return c
    return None


def load_frames(source: Optional[str], n: int, size: Tuple[int, int] = (360, 480)) -> Tuple[List[np.ndarray], str]:
    """Up to n distinct BGR frames: a folder of images, a video file, CamVid test, or synthetic."""
    import cv2

    paths: List[Path] = []
    if source:
        p = Path(source)
        if p.is_dir():
            paths = sorted(q for q in p.iterdir() if q.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        elif p.is_file():
            cap = cv2.VideoCapture(str(p))
            frames: List[np.ndarray] = []
            while len(frames) < n:
                ok, f = cap.read()
                if not ok:
                    break
                frames.append(f)
            cap.release()
            if not frames:
                raise PvtsegError(f"could not decode frames from {p}")
            return frames, f"{p.name} ({len(frames)} frames)"
        else:
            raise PvtsegError(f"--source {source}: no such file or folder")
    else:
        cv = camvid_dir()
        if cv is not None:
            paths = sorted((cv / "test" / "images").glob("*.jpg"))
            source = str(cv / "test" / "images")
    if paths:
        read = [cv2.imread(str(q)) for q in paths[:n]]
        imgs: List[np.ndarray] = [f for f in read if f is not None]
        if imgs:
            h, w = imgs[0].shape[:2]
            return imgs, f"{len(imgs)} frames {w}x{h} from {source}"
    rng = np.random.default_rng(0)
    h, w = size
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3) for _ in range(min(n, 16))]
    return frames, f"{len(frames)} synthetic frames {w}x{h}"


def family(model: Path) -> Dict[str, Path]:
    """backend -> artifact for x.onnx / x.ts / x.engine beside `model` (same stem)."""
    out = {}
    for backend, suffix in SUFFIXES.items():
        p = model.with_suffix(suffix)
        if p.is_file():
            out[backend] = p
    return out


def resolve_family(model: Optional[str], log: Callable[[str], None]) -> Dict[str, Path]:
    from .demo import default_model_paths, ensure_exported

    if model is None or Path(model).suffix.lower() in (".pth", ".pt"):
        if model is None:
            d = default_model_paths()
            ckpt, side, build = d["checkpoint"], d["sidecar"], d["build"]
        else:
            ckpt = Path(model)
            side, build = ckpt.with_suffix(".json"), ckpt.parent / "build"
        if not ckpt.is_file():
            raise PvtsegError(f"no --model given and the default model {ckpt} is missing; pass --model with an "
                              "exported artifact (x.onnx / x.ts / x.engine).")
        fams: Dict[str, Path] = {}
        for fmt in ("onnx", "torchscript"):
            try:
                p = ensure_exported(ckpt, side, build, fmt=fmt, log=log)
            except PvtsegError as e:
                log(f"note: no {fmt} artifact: {e}")
                continue
            fams["onnxruntime" if fmt == "onnx" else "torchscript"] = p
        return fams
    p = Path(model)
    if not p.is_file():
        raise PvtsegError(f"--model {p}: no such file")
    return family(p)


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------

class SegmenterRunner:
    """Times one Segmenter: per-stage ms from seg.timings, total = wall time of the call."""

    def __init__(self, label: str, seg: Any):
        self.label, self.seg = label, seg
        self.pre: List[float] = []
        self.infer: List[float] = []
        self.post: List[float] = []
        self.total: List[float] = []

    def __call__(self, i: int, frame: np.ndarray, record: bool = True) -> None:
        t0 = time.perf_counter()
        self.seg(frame)
        dt = (time.perf_counter() - t0) * 1e3
        if record:
            t = self.seg.timings
            self.pre.append(t.pre)
            self.infer.append(t.infer)
            self.post.append(t.post)
            self.total.append(dt)

    def result(self) -> Dict[str, Any]:
        tot = percentiles(self.total)
        return {"label": self.label, "artifact": str(self.seg.path), "describe": self.seg.backend.describe(),
                "pre": percentiles(self.pre), "infer": percentiles(self.infer), "post": percentiles(self.post),
                "total": tot, "fps": 1000.0 / tot["mean"] if tot["mean"] > 0 else 0.0, "frames": len(self.total)}


class ReferenceRunner:
    """HF transformers' eager SegFormer: forward + bilinear upsample to the frame size + argmax.

    The input tensors are prepared once per distinct frame outside the timed region."""

    label = "reference"

    def __init__(self, meta: Dict[str, Any], frames: List[np.ndarray], device: str, fp16: bool,
                 preprocess: Callable[[np.ndarray], np.ndarray]):
        kw = hf_config_kwargs(meta["arch"], int(meta["num_classes"]))
        if kw is None:
            raise PvtsegError(f"no Hugging Face SegFormer equivalent of {meta['arch']} (only pvt_v2_bN / mit_bN "
                              "with the segformer head)")
        try:
            import torch
            import torch.nn.functional as F
            import transformers
            from transformers import SegformerConfig, SegformerForSemanticSegmentation
        except ImportError as e:
            raise PvtsegError(f"the reference needs torch and transformers ({e}): pip install transformers") from e
        self.torch, self.F = torch, F
        torch.manual_seed(0)
        self.dev = torch.device(device)
        self.dtype = torch.float16 if fp16 and self.dev.type == "cuda" else torch.float32
        self.model = SegformerForSemanticSegmentation(SegformerConfig(**kw)).eval().to(self.dev, self.dtype)
        self.inputs = [torch.from_numpy(preprocess(f).copy()).to(self.dev, self.dtype) for f in frames]
        self.sizes = [(f.shape[0], f.shape[1]) for f in frames]
        params = sum(p.numel() for p in self.model.parameters())
        self.name = (f"HF transformers {transformers.__version__} SegformerForSemanticSegmentation eager "
                     f"{'fp16' if self.dtype == torch.float16 else 'fp32'} ({params / 1e6:.2f}M params)")
        self.total: List[float] = []

    def __call__(self, i: int, frame: np.ndarray, record: bool = True) -> None:
        torch, F = self.torch, self.F
        k = i % len(self.inputs)
        with torch.inference_mode():
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
            t0 = time.perf_counter()
            logits = self.model(pixel_values=self.inputs[k]).logits
            up = F.interpolate(logits, size=self.sizes[k], mode="bilinear", align_corners=False)
            up.argmax(dim=1).to(torch.uint8).cpu()  # .cpu() synchronises on CUDA
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
            dt = (time.perf_counter() - t0) * 1e3
        if record:
            self.total.append(dt)

    def result(self) -> Dict[str, Any]:
        tot = percentiles(self.total)
        return {"name": self.name, "total": tot, "fps": 1000.0 / tot["mean"] if tot["mean"] > 0 else 0.0,
                "frames": len(self.total), "torch_threads": self.torch.get_num_threads()}


def measure(runners: List[Any], frames: List[np.ndarray], n: int, warmup: int) -> None:
    """Warm each runner up, then time them interleaved (frame i through every runner in turn),
    so that a change of machine load during the run hits every runner alike."""
    for r in runners:
        for i in range(warmup):
            r(i, frames[i % len(frames)], record=False)
    for i in range(n):
        for r in runners:
            r(i, frames[i % len(frames)])


def _write_video(frames: List[np.ndarray], path: Path, fps: float = 30.0) -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        wr.write(f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)))
    wr.release()
    return path


def bench_loop_overhead(seg: Any, video: Path, n: int, warmup: int, rounds: int = 5) -> Dict[str, Any]:
    """Demo loop on a file source vs bare Segmenter calls on the same frames (in memory).

    Both run in alternating blocks (`rounds` of n / rounds frames each) so that a change of
    machine load hits both alike. The loop: capture thread decoding the file, segment,
    render (overlay + legend + text); no display, no writer."""
    import cv2

    from .demo import run_loop
    from ..runtime import Visualizer
    from ..runtime.sources import FrameSource

    cap = cv2.VideoCapture(str(video))
    frames: List[np.ndarray] = []
    while len(frames) < n + warmup:
        ok, f = cap.read()
        if not ok:
            if not frames:
                break
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        frames.append(f)
    cap.release()
    if not frames:
        raise PvtsegError(f"cannot decode {video}")
    vis = Visualizer(seg.meta)
    rounds = max(1, min(rounds, n))
    chunk = max(1, n // rounds)
    bare_s = 0.0
    loop_s = 0.0
    loop_frames = 0
    render_ms = wait_ms = 0.0
    with FrameSource(str(video), loop=True) as src:
        for i in range(warmup):
            seg(frames[i % len(frames)])
        run_loop(seg, src, visualizer=vis, max_frames=warmup)
        k = 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            for j in range(chunk):
                seg(frames[(k + j) % len(frames)])
            bare_s += time.perf_counter() - t0
            k += chunk
            st = run_loop(seg, src, visualizer=vis, max_frames=chunk)
            loop_s += st.wall_s
            loop_frames += st.frames
            render_ms += st.mean("render") * st.frames
            wait_ms += st.mean("wait") * st.frames
    bare = bare_s * 1e3 / (chunk * rounds)
    loop = loop_s * 1e3 / max(loop_frames, 1)
    return {"frames": chunk * rounds, "rounds": rounds, "bare_ms": bare, "loop_ms": loop,
            "overhead_pct": 100.0 * (loop / bare - 1.0), "render_ms": render_ms / max(loop_frames, 1),
            "wait_ms": wait_ms / max(loop_frames, 1)}


def bench_memory(seg: Any, video: Path, n: int) -> Dict[str, Any]:
    """RSS over n frames of a looped file through the demo loop (render included)."""
    from .demo import run_loop
    from ..runtime import Visualizer
    from ..runtime.sources import FrameSource

    vis = Visualizer(seg.meta)
    samples: List[Tuple[int, float]] = [(0, rss_mb())]
    every = max(1, n // 20)

    def progress(k: int, _st: Any) -> None:
        if k % every == 0 or k == n:
            samples.append((k, rss_mb()))

    t0 = time.perf_counter()
    with FrameSource(str(video), loop=True) as src:
        st = run_loop(seg, src, visualizer=vis, max_frames=n, progress=progress)
    base_k = max(1, n // 10)
    base = next((mb for k, mb in samples if k >= base_k), samples[-1][1])
    return {"frames": st.frames, "seconds": time.perf_counter() - t0, "rss_start_mb": samples[0][1],
            "rss_after_warmup_mb": base, "rss_end_mb": samples[-1][1], "growth_mb": samples[-1][1] - base,
            "rss_max_mb": max(mb for _, mb in samples), "samples": samples}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def format_table(rows: List[Dict[str, Any]], ref: Optional[Dict[str, Any]]) -> str:
    head = (f"{'backend':<44} {'pre p50':>8} {'infer p50/p90/p99':>20} {'post p50':>9} "
            f"{'total p50/p90/p99 ms':>22} {'FPS':>7} {'vs ref':>7}")
    lines = [head, "-" * len(head)]

    def trip(d: Dict[str, float]) -> str:
        return f"{d['p50']:.1f}/{d['p90']:.1f}/{d['p99']:.1f}"

    for r in rows:
        ratio = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
        lines.append(f"{r['label'][:44]:<44} {r['pre']['p50']:>8.1f} {trip(r['infer']):>20} {r['post']['p50']:>9.1f} "
                     f"{trip(r['total']):>22} {r['fps']:>7.1f} {ratio:>7}")
    if ref is not None:
        lines.append(f"{'reference: HF SegFormer eager (fwd+up+argmax)':<44} {'-':>8} {'-':>20} {'-':>9} "
                     f"{trip(ref['total']):>22} {ref['fps']:>7.1f} {'1.00x':>7}")
    return "\n".join(lines)


def format_markdown(result: Dict[str, Any]) -> str:
    """The result as a Markdown table (for READMEs and reports)."""
    ref = result.get("reference")
    h, w = result["input"]
    fh, fw = result["frame"]
    lines = [f"`{result['arch']}`, input {w}x{h}, frames {fw}x{fh}, {result['host']['processor']} "
             f"({result['host']['cpus']} CPUs), device {result['host']['device']}; "
             f"{result.get('timed_frames', '?')} timed frames after {result.get('warmup_frames', '?')} warm-up; "
             f"load average {result['loadavg_1min'][0]:.2f} -> {result['loadavg_1min'][1]:.2f}",
             "",
             "| backend | pre p50 | infer p50 / p90 / p99 | post p50 | total p50 / p90 / p99 (ms) | FPS | vs reference |",
             "|---|---|---|---|---|---|---|"]

    def trip(d: Dict[str, float]) -> str:
        return f"{d['p50']:.1f} / {d['p90']:.1f} / {d['p99']:.1f}"

    for r in result["backends"]:
        sp = f"**{r['speedup']:.2f}x**" if r.get("speedup") else "-"
        lines.append(f"| {r['label']} | {r['pre']['p50']:.1f} | {trip(r['infer'])} | {r['post']['p50']:.1f} | "
                     f"{trip(r['total'])} | {r['fps']:.1f} | {sp} |")
    if ref:
        lines.append(f"| reference: HF SegFormer eager, forward + upsample + argmax | - | - | - | {trip(ref['total'])} "
                     f"| {ref['fps']:.1f} | 1.00x |")
    lo = result.get("loop_overhead")
    if lo:
        lines += ["", f"Camera loop ({lo['backend']}, file source, capture thread + render, no window): "
                      f"{lo['loop_ms']:.1f} ms/frame vs bare Segmenter {lo['bare_ms']:.1f} ms/frame, "
                      f"overhead **{lo['overhead_pct']:+.1f}%** (render {lo['render_ms']:.1f} ms/frame)."]
    mem = result.get("memory")
    if mem:
        lines += ["", f"Memory ({Path(mem['model']).name}, {mem['frames']} frames of a looped file through the demo "
                      f"loop): RSS {mem['rss_after_warmup_mb']:.1f} MB after warm-up -> {mem['rss_end_mb']:.1f} MB, "
                      f"growth **{mem['growth_mb']:+.2f} MB**."]
    return "\n".join(lines) + "\n"


def write_plot(path: Path, rows: List[Dict[str, Any]], ref: Optional[Dict[str, Any]], title: str) -> Path:
    """Horizontal bar chart of p50 total ms (stacked pre / infer / post) with OpenCV."""
    import cv2

    from ..io_utils import atomic_write_bytes

    entries = [(r["label"], r["pre"]["p50"], r["infer"]["p50"], r["post"]["p50"], r["fps"]) for r in rows]
    if ref is not None:
        entries.append(("reference HF eager", 0.0, ref["total"]["p50"], 0.0, ref["fps"]))
    W, bar_h, left, top = 900, 34, 300, 60
    H = top + bar_h * len(entries) + 50
    img = np.full((H, W, 3), 255, np.uint8)
    vmax = max((a + b + c) for _, a, b, c, _ in entries) or 1.0
    scale = (W - left - 130) / vmax
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title[:90], (10, 25), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "p50 ms per frame: pre (grey) + infer (blue) + post (orange)", (10, 48), font, 0.45,
                (80, 80, 80), 1, cv2.LINE_AA)
    colors = [(160, 160, 160), (200, 120, 40), (40, 140, 240)]
    for i, (label, pre, inf, post, fps) in enumerate(entries):
        y = top + i * bar_h
        cv2.putText(img, label[:40], (10, y + 21), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x = left
        for v, c in zip((pre, inf, post), colors):
            w = int(round(v * scale))
            if w > 0:
                cv2.rectangle(img, (x, y + 6), (x + w, y + bar_h - 6), c, -1)
            x += w
        cv2.putText(img, f"{pre + inf + post:.1f} ms  {fps:.1f} FPS", (x + 6, y + 21), font, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise PvtsegError(f"cannot encode {path}")
    atomic_write_bytes(path, buf.tobytes())
    return Path(path)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Benchmark pvtseg backends against Hugging Face's eager "
                                                       "SegFormer, measured in the same run.")
    p.add_argument("--model", help="an artifact (x.onnx / x.ts / x.engine: its siblings with the same stem are "
                                   "benchmarked too) or a .pth with a .json sidecar; several, comma-separated, "
                                   "to compare artifact families. Default: the bundled model")
    p.add_argument("--backends", help="comma list of tensorrt, torchscript, onnxruntime (default: all present)")
    p.add_argument("--frames", type=int, default=100, help="timed frames per backend (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up frames per backend (default 10)")
    p.add_argument("--source", help="frames: an image folder or a video (default: CamVid test, 480x360)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for the backends (default: all cores)")
    p.add_argument("--fp16", action="store_true", help="CUDA: add TorchScript FP16 (and run the reference in FP16)")
    p.add_argument("--cuda-graph", action="store_true", help="CUDA: add a TorchScript CUDA-graph variant")
    p.add_argument("--no-reference", action="store_true", help="skip the Hugging Face reference")
    p.add_argument("--loop-frames", type=int, default=100,
                   help="frames for the camera-loop overhead measurement (0 skips it; default 100)")
    p.add_argument("--memory-frames", type=int, default=0,
                   help="frames of a looped file for the RSS growth measurement (0 skips it; e.g. 2000)")
    p.add_argument("--memory-model", help="artifact for the memory run (default: the fastest backend's)")
    p.add_argument("--json", help="write all results here")
    p.add_argument("--plot", help="write a PNG bar chart here")
    p.add_argument("--markdown", help="write the results as a Markdown table here")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except PvtsegError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


def _variants(fam: Dict[str, Path], wanted: Optional[List[str]], device: str, fp16: bool,
              cuda_graph: bool) -> List[Tuple[str, Path, Dict[str, Any]]]:
    order = ["tensorrt", "torchscript", "onnxruntime"]
    out: List[Tuple[str, Path, Dict[str, Any]]] = []
    unknown = [b for b in (wanted or []) if b not in order]
    if unknown:
        raise PvtsegError(f"unknown backend(s) {unknown}; choose from {', '.join(order)}")
    cuda = device.startswith("cuda")
    for b in order:
        if b not in fam or (wanted and b not in wanted):
            continue
        if b == "tensorrt" and not cuda:
            continue
        out.append((b, fam[b], {}))
        if b == "torchscript" and cuda:
            if fp16:
                out.append(("torchscript fp16", fam[b], {"fp16": True}))
            if cuda_graph:
                out.append(("torchscript fp16 cuda-graph" if fp16 else "torchscript cuda-graph", fam[b],
                            {"fp16": fp16, "cuda_graph": True}))
    return out


def _collect_variants(args: argparse.Namespace, log: Callable[[str], None]) -> List[Tuple[str, Path, Dict[str, Any]]]:
    models = [m.strip() for m in args.model.split(",") if m.strip()] if args.model else [None]
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    if (args.fp16 or args.cuda_graph) and not args.device.startswith("cuda"):
        log("note: --fp16 / --cuda-graph apply on CUDA only; ignored on cpu")
    variants: List[Tuple[str, Path, Dict[str, Any]]] = []
    for model in models:
        fam = resolve_family(model, log)
        if not fam:
            raise PvtsegError(f"no artifact found for --model {model}")
        vs = _variants(fam, wanted, args.device, args.fp16, args.cuda_graph)
        if len(models) > 1:  # tell the families apart in the table
            vs = [(f"{label} [{_output_tag(path)}]", path, opts) for label, path, opts in vs]
        variants += vs
    if not variants:
        raise PvtsegError("none of the requested backends has an artifact for --model here")
    return variants


def _open_segmenters(variants: List[Tuple[str, Path, Dict[str, Any]]], args: argparse.Namespace,
                     log: Callable[[str], None]) -> Dict[str, Any]:
    """label -> Segmenter for every variant that loads here (the others are logged and skipped)."""
    from ..runtime import Segmenter

    kept: Dict[str, Any] = {}
    for label, path, opts in variants:
        if args.threads:
            opts = dict(opts, threads=args.threads)
        try:
            seg = Segmenter(path, device=args.device, **opts)
        except PvtsegError as e:
            log(f"skip {label}: {e}")
            continue
        kept[label] = seg
        log(f"  {label:<28} {seg.describe()}")
    if not kept:
        raise PvtsegError("no backend could run here (see the skip lines above)")
    return kept


def _make_reference(args: argparse.Namespace, kept: Dict[str, Any], frames: List[np.ndarray],
                    log: Callable[[str], None]) -> Optional[ReferenceRunner]:
    if args.no_reference:
        return None
    first = next(iter(kept.values()))
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)  # same thread budget as the backends
        ref_runner = ReferenceRunner(first.meta, frames, args.device, args.fp16, lambda f: first.preprocess(f))
        log(f"  {'reference':<28} {ref_runner.name}")
        return ref_runner
    except PvtsegError as e:
        log(f"reference skipped: {e}")
        return None


def _timed_rows(args: argparse.Namespace, kept: Dict[str, Any], frames: List[np.ndarray],
                log: Callable[[str], None]) -> Tuple[List[Dict[str, Any]], Optional[Dict[str, Any]], List[float]]:
    """Time every backend and the reference on the same frames; rows carry the speed-up."""
    runners = [SegmenterRunner(label, seg) for label, seg in kept.items()]
    ref_runner = _make_reference(args, kept, frames, log)
    load_before = _loadavg()
    measure(runners + ([ref_runner] if ref_runner else []), frames, args.frames, args.warmup)
    load_after = _loadavg()
    rows = [r.result() for r in runners]
    ref = ref_runner.result() if ref_runner else None
    if ref_runner is not None:
        del ref_runner.model, ref_runner.inputs
    if ref is not None:
        for r in rows:
            r["speedup"] = ref["total"]["mean"] / r["total"]["mean"]
    return rows, ref, [load_before, load_after]


def _print_table(meta: Dict[str, Any], frames: List[np.ndarray], rows: List[Dict[str, Any]],
                 ref: Optional[Dict[str, Any]], loads: List[float], device: str) -> Dict[str, Any]:
    h, w = meta["input"]["height"], meta["input"]["width"]
    fh, fw = frames[0].shape[:2]
    print()
    print(f"{meta['arch']} input {w}x{h}, frames {fw}x{fh}, device {device}; ms per frame (frame in -> labels out)")
    print(format_table(rows, ref))
    best = min(rows, key=lambda r: r["total"]["mean"])
    if ref is not None:
        print(f"best: {best['label']} {best['fps']:.1f} FPS = {best['speedup']:.2f}x the reference "
              f"({ref['fps']:.1f} FPS)")
    print(f"load average (1 min) {loads[0]:.2f} before, {loads[1]:.2f} after the timed part")
    return best


def _loop_video(args: argparse.Namespace, frames: List[np.ndarray], tmpdir: str) -> Path:
    from .demo import default_model_paths

    clip = default_model_paths()["clip"]
    if args.source and Path(args.source).is_file():
        return Path(args.source)
    if clip.is_file():
        return clip  # the bundled CamVid clip (mp4, 480x360)
    return _write_video(frames, Path(tmpdir) / "frames.avi")


def _loop_and_memory(args: argparse.Namespace, result: Dict[str, Any], best_seg: Any, best_label: str,
                     frames: List[np.ndarray]) -> None:
    """Camera-loop overhead and RSS growth, on a file source, with the fastest backend."""
    from ..runtime import Segmenter

    if args.loop_frames <= 0 and args.memory_frames <= 0:
        return
    with tempfile.TemporaryDirectory(prefix="pvtseg_bench_") as tmpdir:
        video = _loop_video(args, frames, tmpdir)
        result["loop_source"] = str(video)
        if args.loop_frames > 0:
            lo = bench_loop_overhead(best_seg, video, args.loop_frames, min(args.warmup, 10))
            result["loop_overhead"] = dict(lo, backend=best_label)
            print(f"camera loop ({best_label}, file source {video.name}, render on, no display): "
                  f"{lo['loop_ms']:.1f} ms/frame "
                  f"vs bare Segmenter {lo['bare_ms']:.1f} ms/frame: overhead {lo['overhead_pct']:+.1f}% "
                  f"(render {lo['render_ms']:.1f} ms, waiting for frames {lo['wait_ms']:.2f} ms)")
        if args.memory_frames > 0:
            mseg = Segmenter(args.memory_model, device=args.device) if args.memory_model else best_seg
            mem = bench_memory(mseg, video, args.memory_frames)
            result["memory"] = dict({k: v for k, v in mem.items()}, model=str(mseg.path))
            print(f"memory ({mseg.path.name}, {mem['frames']} frames of a looped file, {mem['seconds']:.0f} s): "
                  f"RSS {mem['rss_after_warmup_mb']:.1f} MB after warm-up -> {mem['rss_end_mb']:.1f} MB "
                  f"(growth {mem['growth_mb']:+.2f} MB, max {mem['rss_max_mb']:.1f} MB)")


def _write_outputs(args: argparse.Namespace, result: Dict[str, Any], title: str) -> None:
    from ..io_utils import atomic_write_text

    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.markdown:
        atomic_write_text(args.markdown, format_markdown(result))
        print(f"wrote {args.markdown}")
    if args.plot:
        write_plot(Path(args.plot), result["backends"], result["reference"], title)
        print(f"wrote {args.plot}")


def _run(args: argparse.Namespace) -> int:
    log = lambda s: print(s, flush=True)  # noqa: E731
    variants = _collect_variants(args, log)
    frames, frames_desc = load_frames(args.source, max(args.frames, 16))
    import cv2

    host = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "processor": _cpu_name(), "numpy": np.__version__, "opencv": cv2.__version__, "device": args.device}
    log(f"{PROG}: {frames_desc}; {args.frames} timed + {args.warmup} warm-up frames per backend; "
        f"{host['processor']} ({host['cpus']} CPUs)")
    kept = _open_segmenters(variants, args, log)
    meta = next(iter(kept.values())).meta
    rows, ref, loads = _timed_rows(args, kept, frames, log)
    best = _print_table(meta, frames, rows, ref, loads, args.device)
    h, w = meta["input"]["height"], meta["input"]["width"]
    result: Dict[str, Any] = {"host": host, "frames_source": frames_desc, "arch": meta["arch"],
                              "loadavg_1min": loads, "timed_frames": args.frames, "warmup_frames": args.warmup,
                              "input": [h, w], "frame": list(frames[0].shape[:2]), "backends": rows,
                              "reference": ref, "best": best["label"]}
    from ..platform_info import collect_facts

    result["platform"] = collect_facts()  # what `pvtseg doctor` shows: Jetson / JetPack, power, clocks, versions
    for label, seg in kept.items():
        if label != best["label"]:
            seg.close()
    _loop_and_memory(args, result, kept[best["label"]], best["label"], frames)
    _write_outputs(args, result, f"{meta['arch']} {w}x{h} on {host['processor']} ({args.device})")
    return 0


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def _output_tag(path: Path) -> str:
    from .. import meta as meta_mod

    try:
        meta = meta_mod.read(meta_mod.sidecar_path(path))  # the .json alone: no hash of the artifact here
    except PvtsegError:
        return path.stem
    out = meta["output"]
    tag = "labels" if out["kind"] == "labels" else f"logits/{out['stride']}"
    # an FP32 ONNX and its Q/DQ INT8 copy differ only in precision: keep both rows
    return tag if meta.get("precision", "fp32") == "fp32" else f"{tag} {meta['precision']}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
