"""`pvtseg ros2-bench`: what the ROS 2 node adds on top of a bare Segmenter, on the same frames.

    pvtseg ros2-bench --frames 100 --threads 1                 # the bundled CamVid model
    pvtseg ros2-bench --model models/build/x.onnx --encoding rgb8 --json ros2_bench.json

The node runs as its own process (`pvtseg ros2`, loopback-only discovery on a private
ROS_DOMAIN_ID). For each frame, this process
- times a bare `Segmenter(frame)` call (the same artifact, device and thread count), then
- publishes the frame as sensor_msgs/Image and times until the node's `labels` with that
  frame's stamp arrive: serialization, DDS transport both ways, the node's conversion,
  segmentation and publishing, and deserialization here.
The two are interleaved frame by frame so load changes on the machine hit both alike. The
message is built before the clock starts (a camera driver builds its own). Both sides use
best-effort keep-last-1 QoS, so a lost frame is retried with a new stamp (counted as lost).
Output: p50 / p90 / p99 / mean ms of both, node p50 / bare p50 (the overhead ratio), and
whether the node's labels equal the bare Segmenter's on every frame.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import PvtsegError, RosError
from .bench import percentiles

PROG = "pvtseg ros2-bench"


def default_images_dir() -> Path:
    """../shared/data/camvid/test/images beside the source checkout."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "camvid" / "test" / "images"


def load_frames(folder: Path, n: int) -> List[np.ndarray]:
    import cv2

    paths = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise PvtsegError(f"no .jpg / .png images in {folder}; pass --images with a folder of frames")
    frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[:n]]
    return [f for f in frames if f is not None]


def loopback_env(domain_id: Optional[int]) -> Dict[str, str]:
    """Discovery on this machine only, on a domain nobody else is likely to use."""
    dom = domain_id if domain_id is not None else random.randint(30, 99)
    return {"ROS_LOCALHOST_ONLY": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(dom),
            "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}


def large_image_profile() -> Dict[str, str]:
    """The checkout's Fast DDS profile for images over 512 KiB, unless the user set one: the bench
    measures the node's overhead, not Fast DDS dropping large best-effort samples."""
    if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        return {}
    xml = Path(__file__).resolve().parents[3] / "examples" / "ros2" / "fastdds_large_images.xml"
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(xml), "FASTRTPS_DEFAULT_PROFILES_FILE": str(xml)} if xml.is_file() else {}


def start_node(model: Path, args: argparse.Namespace, env: Dict[str, str], log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pvtseg", "ros2", "--model", str(model), "--device", args.device,
           "--threads", str(args.threads), "--ros-args", "-r", "__node:=pvtseg_bench_node"]
    with open(log_path, "w") as log:
        return subprocess.Popen(cmd, env=dict(os.environ, **env), stdout=log, stderr=subprocess.STDOUT)


def stop_node(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Pinger:
    """Publishes a frame on `image` and waits for the `labels` carrying its stamp."""

    def __init__(self, encoding: str):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image

        from .ros2_node import sensor_qos

        self.Image, self.encoding = Image, encoding
        self.node = Node("pvtseg_ros2_bench")
        self.pub = self.node.create_publisher(Image, "image", sensor_qos())
        self.node.create_subscription(Image, "labels", self._on_labels, sensor_qos())
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._got: Dict[int, Any] = {}
        self._seq = 0

    def _on_labels(self, msg: Any) -> None:
        self._got[msg.header.stamp.nanosec + 1_000_000_000 * msg.header.stamp.sec] = (time.perf_counter(), msg)

    def message(self, frame: np.ndarray) -> Any:
        import cv2

        from . import ros2_convert as conv

        img = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if self.encoding == "rgb8" else frame
        msg = conv.fill_image(self.Image(), img, self.encoding)
        self._seq += 1
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1, self._seq  # a unique stamp per ping
        msg.header.frame_id = "bench_camera"
        return msg

    def ping(self, frame: np.ndarray, timeout: float) -> Optional[tuple]:
        """(ms, labels) for one round trip, or None when no answer came within `timeout` s."""
        msg = self.message(frame)
        key = 1_000_000_000 + msg.header.stamp.nanosec
        t0 = time.perf_counter()
        self.pub.publish(msg)
        deadline = t0 + timeout
        while key not in self._got and time.perf_counter() < deadline:
            self.executor.spin_once(timeout_sec=min(0.05, max(deadline - time.perf_counter(), 0.0)))
        got = self._got.pop(key, None)
        self._got.clear()
        if got is None:
            return None
        t1, reply = got
        labels = np.frombuffer(reply.data, np.uint8).reshape(reply.height, reply.step)[:, :reply.width]
        return (t1 - t0) * 1e3, labels

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


def wait_ready(pinger: Pinger, proc: subprocess.Popen, frame: np.ndarray, timeout: float, log: Path) -> None:
    """Ping until the node answers (discovery + model load), or fail with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RosError(f"the node exited with code {proc.returncode} before answering:\n{log.read_text()[-2000:]}")
        if pinger.ping(frame, 1.0) is not None:
            return
    raise RosError(f"the node did not answer within {timeout:.0f} s (discovery blocked? another ROS_DOMAIN_ID?):\n"
                   f"{log.read_text()[-2000:]}")


def measure(pinger: Pinger, seg: Any, frames: List[np.ndarray], warmup: int, timeout: float) -> Dict[str, Any]:
    for f in frames[:warmup]:
        seg(f)
        pinger.ping(f, timeout)
    bare: List[float] = []
    node: List[float] = []
    lost = same = 0
    for f in frames:
        t0 = time.perf_counter()
        ref = seg(f)
        bare.append((time.perf_counter() - t0) * 1e3)
        for _ in range(3):  # best effort: a frame lost on the way is sent again
            r = pinger.ping(f, timeout)
            if r is not None:
                break
            lost += 1
        if r is None:
            raise RosError("three pings in a row got no labels back; is the node still running?")
        node.append(r[0])
        same += int(np.array_equal(r[1], ref))
    diff = [n - b for n, b in zip(node, bare)]
    return {"bare_ms": percentiles(bare), "node_ms": percentiles(node), "paired_overhead_ms": percentiles(diff),
            "frames": len(frames), "lost": lost, "labels_identical": same}


def _row(p: Dict[str, float]) -> str:
    return f"p50 {p['p50']:7.2f}  p90 {p['p90']:7.2f}  p99 {p['p99']:7.2f}  mean {p['mean']:7.2f} ms"


def report(res: Dict[str, Any], describe: str) -> str:
    b, n, d = res["bare_ms"], res["node_ms"], res["paired_overhead_ms"]
    ratio = n["p50"] / b["p50"] if b["p50"] > 0 else float("nan")
    res["ratio_p50"] = ratio
    res["overhead_ms_p50"] = n["p50"] - b["p50"]
    lines = [f"{PROG}: {describe}; {res['frames']} frames, {res['encoding']}, lost {res['lost']}",
             f"  bare Segmenter   {_row(b)}",
             f"  ROS 2 node       {_row(n)}  (publish image -> labels received)",
             f"  node / bare p50: {ratio:.3f}  ({res['overhead_ms_p50']:+.2f} ms, {100 * (ratio - 1):+.1f}%); "
             f"per-frame node - bare: p50 {d['p50']:+.2f}  p90 {d['p90']:+.2f} ms",
             f"  labels identical on {res['labels_identical']}/{res['frames']} frames"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Latency of the ROS 2 node (publish image -> labels "
                                                       "received) against a bare Segmenter on the same frames.")
    p.add_argument("--model", help="exported .onnx / .ts / .engine (default: the bundled CamVid model, exported "
                                   "once)")
    p.add_argument("--images", type=Path, help="folder of .jpg / .png frames (default: CamVid test)")
    p.add_argument("--frames", type=int, default=100, help="frames to time (default 100)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first (default 5)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads, both sides (default 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--encoding", choices=("bgr8", "rgb8"), default="bgr8", help="image encoding sent")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: random in 30..99)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one answer (default 10)")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..runtime import Segmenter
    from .demo import resolve_model
    from .ros2 import import_rclpy, init_rclpy

    model = resolve_model(args.model)
    frames = load_frames(args.images or default_images_dir(), args.frames + args.warmup)
    env = dict(loopback_env(args.domain_id), **large_image_profile())
    os.environ.update(env)  # before rclpy.init: this process discovers on the same domain
    rclpy = import_rclpy()
    seg = Segmenter(model, device=args.device, **({"threads": args.threads} if args.threads > 0 else {}))
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"pvtseg_ros2_bench_{os.getpid()}.log"
    proc = start_node(model, args, env, log)
    init_rclpy(rclpy, [])
    pinger = None
    try:
        pinger = Pinger(args.encoding)
        wait_ready(pinger, proc, frames[0], 120.0, log)
        res = measure(pinger, seg, frames[args.warmup:], args.warmup, args.timeout)
    finally:
        if pinger is not None:
            pinger.close()
        stop_node(proc)
        if rclpy.ok():
            rclpy.shutdown()
        log.unlink(missing_ok=True)  # errors above quote its tail
    res.update(encoding=args.encoding, model=str(model), threads=args.threads, device=args.device,
               describe=seg.describe())
    seg.close()
    return res


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        res = run(args)
    except PvtsegError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(report(res, res["describe"]), flush=True)
    if args.json:
        from ..io_utils import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
