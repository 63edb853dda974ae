"""`pvtseg ros2`: a ROS 2 node that segments camera images with any exported pvtseg artifact.

    pvtseg ros2 --model models/build/x.engine --device cuda
    pvtseg ros2 --model x.onnx --color --overlay --ros-args -r image:=/camera/image_raw
    pvtseg ros2 --ros-args -p model:=x.onnx -p alpha:=0.4 -r __node:=front_seg -r __ns:=/front

Topics (relative names: remap them with `-r old:=new`, push them under a namespace with `-r __ns:=/x`):
  in   image              sensor_msgs/Image (bgr8, rgb8, mono8, bgra8, rgba8; any row step)
  in   image/compressed   sensor_msgs/CompressedImage (JPEG / PNG)
  out  labels             sensor_msgs/Image mono8, class ids at the input's size, the input's header
  out  color              sensor_msgs/Image rgb8 palette mask (publish_color, when subscribed)
  out  overlay            sensor_msgs/Image bgr8 blend of frame and mask (publish_overlay, when subscribed)
  out  labels/info        std_msgs/String JSON: class names, palette, model (transient local)
  out  label_info         vision_msgs/LabelInfo (transient local; only where vision_msgs is installed)
  out  /diagnostics       diagnostic_msgs/DiagnosticArray once per stats_period (when installed)

Inputs use best-effort keep-last-1 QoS and the node segments only the newest frame, so a slow
model skips frames instead of queueing them. The command-line flags set the parameters'
defaults; `--ros-args -p name:=value` and `--params-file` override them.

ROS 2 itself: `pip install "pvtseg[ros2]"` on x86-64 Linux desktops (rclpy + Fast DDS wheels),
or on a Jetson the distribution in /opt/ros (source /opt/ros/humble/setup.bash first).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

from ..errors import PvtsegError, RosError

PROG = "pvtseg ros2"


def split_ros_args(argv: List[str]) -> Tuple[List[str], List[str]]:
    """(our options, ['--ros-args', ...]): everything from the first --ros-args on belongs to ROS."""
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        return argv[:i], argv[i:]
    return argv, []


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="ROS 2 node: sensor_msgs/Image in, per-pixel class ids (mono8) out.",
        epilog="Anything after --ros-args goes to ROS 2: -r image:=/camera/image_raw, -p alpha:=0.4, "
               "-r __node:=name, --params-file f.yaml. Flags here only set the parameters' defaults.")
    p.add_argument("--model", default="", help="exported .onnx / .ts / .engine with its .json (or a .pth with a "
                                               ".json, exported once). Default: the bundled CamVid model")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (TensorRT engines always use the GPU)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the backend (0: all cores)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay mask opacity, 0..1 (default 0.5)")
    p.add_argument("--color", action="store_true", help="publish `color` (rgb8 palette mask)")
    p.add_argument("--overlay", action="store_true", help="publish `overlay` (bgr8 frame + mask blend)")
    p.add_argument("--input", choices=("both", "raw", "compressed"), default="both",
                   help="subscribe `image`, `image/compressed` or both (default)")
    p.add_argument("--reliable-input", action="store_true",
                   help="reliable input QoS: only matches reliable publishers, but big images survive Fast DDS "
                        "without a larger shared-memory segment (default best effort, keep last 1)")
    p.add_argument("--best-effort-output", action="store_true",
                   help="publish with best-effort QoS (default reliable, keep last 1)")
    p.add_argument("--stats-period", type=float, default=1.0, help="seconds between timing logs (default 1)")
    p.add_argument("--warn-period", type=float, default=5.0,
                   help="at most one warning per kind of bad input every this many seconds (default 5)")
    return p


def parameter_defaults(args: argparse.Namespace) -> Dict[str, Any]:
    return {"model": args.model or "", "device": args.device, "threads": int(args.threads),
            "alpha": float(args.alpha), "publish_color": bool(args.color), "publish_overlay": bool(args.overlay),
            "input": args.input, "reliable_input": bool(args.reliable_input),
            "reliable_output": not args.best_effort_output,
            "stats_period": float(args.stats_period), "warn_period": float(args.warn_period)}


def import_rclpy() -> Any:
    """rclpy (with sensor_msgs / std_msgs), or RosError saying how to install them here."""
    try:
        import rclpy
        import sensor_msgs.msg  # noqa: F401
        import std_msgs.msg  # noqa: F401
    except ImportError as e:
        raise RosError(f"ROS 2 is not importable ({e}). On an x86-64 Linux desktop: pip install 'pvtseg[ros2]'. "
                       "With ROS 2 from /opt/ros (e.g. JetPack + Humble): `source /opt/ros/humble/setup.bash` "
                       "first and use a venv made with --system-site-packages.") from e
    return rclpy


def init_rclpy(rclpy: Any, ros_args: List[str], own_signals: bool = False) -> None:
    """rclpy.init; `own_signals`: leave SIGINT / SIGTERM to us (see `_spin`) where rclpy allows it."""
    opts: Dict[str, Any] = {}
    signals = getattr(getattr(rclpy, "signals", None), "SignalHandlerOptions", None)  # Humble and later
    if own_signals and signals is not None:
        opts["signal_handler_options"] = signals.NO
    try:
        rclpy.init(args=[PROG] + ros_args, **opts)
    except Exception as e:  # noqa: BLE001  rclpy raises its own RCLError (not importable without rclpy)
        text = str(e)
        hint = ""
        if "rmw" in text.lower():
            rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
            hint = (f" The middleware {rmw} did not load: pip install ros-rmw-fastrtps-cpp (or the `ros2` extra), "
                    "or set RMW_IMPLEMENTATION to one that is installed.")
        raise RosError(f"ROS 2 could not start: {text.strip()}.{hint} Check the --ros-args syntax "
                       "(-r from:=to, -p name:=value).") from e


def run(args: argparse.Namespace, ros_args: List[str]) -> int:
    rclpy = import_rclpy()
    init_rclpy(rclpy, ros_args, own_signals=True)
    node = None
    try:
        from .demo import resolve_model
        from .ros2_node import SegmenterNode

        node = SegmenterNode(parameter_defaults(args), resolve_model=resolve_model)
        _spin(rclpy, node)
        return 0
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def _spin(rclpy: Any, node: Any) -> None:
    """Spin until SIGINT / SIGTERM / ROS shutdown; those are normal ends, not errors.

    The signals only set a flag (checked every 0.1 s): the caller then stops the node's worker
    before ROS shuts down, instead of rclpy's own handler shutting ROS down under a worker that
    may be publishing at that moment."""
    import signal
    import threading

    from rclpy.executors import SingleThreadedExecutor

    ends = tuple(t for t in (KeyboardInterrupt, getattr(rclpy.executors, "ExternalShutdownException", None)) if t)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ends:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        executor.shutdown(timeout_sec=1.0)


def main(argv: Optional[List[str]] = None) -> int:
    ours, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(ours)
    if not 0.0 <= args.alpha <= 1.0:
        print(f"{PROG}: --alpha must be in 0..1, got {args.alpha}", file=sys.stderr)
        return 2
    try:
        return run(args, ros_args)
    except KeyboardInterrupt:
        return 0
    except PvtsegError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
