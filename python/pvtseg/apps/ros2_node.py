"""The rclpy node behind `pvtseg ros2`: camera images in, class-id images out.

Threading: the subscription callbacks only store the newest message in a one-slot mailbox
(`LatestSlot`) and return; one worker thread takes whatever is newest, segments it and
publishes. With best-effort depth-1 subscriptions this means a slow model never works
through a backlog: frames that arrive while a frame is being segmented replace each other
in the slot, and the next one processed is the newest (the replaced ones are counted as
`skipped`). The executor thread stays free for parameters and the stats timer, and
ONNX Runtime / TensorRT release the GIL while they run.

Imports rclpy and the message packages at module level: `pvtseg.apps.ros2` imports this
module only after checking that rclpy imports.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import rclpy.exceptions
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from ..errors import FrameError, PvtsegError, RosError
from ..runtime import Segmenter
from ..runtime.visualize import blend, colorize, palette_lut
from . import ros2_convert as conv
from .demo import Mean

NODE_NAME = "pvtseg_segmenter"
INPUTS = ("both", "raw", "compressed")
STAGES = ("wait", "convert", "pre", "infer", "post", "publish", "total")


def _optional_import(module: str, names: Tuple[str, ...]) -> Optional[Tuple[Any, ...]]:
    """(attr, ...) from an optional message package, or None when it is not installed."""
    try:
        mod = __import__(module, fromlist=list(names))
        return tuple(getattr(mod, n) for n in names)
    except (ImportError, AttributeError):
        return None


def sensor_qos(reliable: bool = False) -> QoSProfile:
    """Keep last 1: a late frame is replaced, never queued. Best effort by default, which
    matches both best-effort and reliable camera publishers; reliable (`reliable_input`) only
    matches reliable publishers but lets the middleware resend lost fragments of big images."""
    rel = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=rel, durability=DurabilityPolicy.VOLATILE)


def _event_callbacks_type() -> Any:
    """rclpy's SubscriptionEventCallbacks (rclpy.event_handler from Iron on, rclpy.qos_event before)."""
    for module in ("rclpy.event_handler", "rclpy.qos_event"):
        found = _optional_import(module, ("SubscriptionEventCallbacks",))
        if found:
            return found[0]
    return None


LOST_HINT = ("with Fast DDS, best-effort images larger than its 512 KiB shared-memory segment are mostly lost: "
             "load examples/ros2/fastdds_large_images.xml (FASTDDS_DEFAULT_PROFILES_FILE, "
             "FASTRTPS_DEFAULT_PROFILES_FILE on Humble) in every process, or use reliable_input with a reliable "
             "camera publisher")


def output_qos(reliable: bool) -> QoSProfile:
    """Keep last 1. Reliable by default: it matches both reliable subscribers (rviz2's default)
    and best-effort ones, and with depth 1 a slow subscriber never blocks the node."""
    rel = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=rel,
                      durability=DurabilityPolicy.VOLATILE)


def latched_qos() -> QoSProfile:
    """Transient local: a subscriber that joins later still gets the label info once."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class LatestSlot:
    """One-item mailbox: put() replaces what is there (counting it as skipped), take() waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[Any] = None
        self._closed = False
        self.skipped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._item is not None:
                self.skipped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: Optional[float] = None) -> Optional[Any]:
        """The newest item (and empty the slot); None when closed or after `timeout` s."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Throttle:
    """Lets one message per key through every `period` s and counts the ones it held back."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic):
        self.period, self.clock = float(period), clock
        self._last: Dict[Any, float] = {}
        self._held: Dict[Any, int] = {}

    def __call__(self, key: Any) -> Optional[int]:
        """None: stay quiet. Else the number of messages held back since the last one let through."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class PeriodStats:
    """Per-stage means and counters since the last report (worker writes, timer reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.stages = {k: Mean() for k in STAGES}
        self.frames = 0
        self.bad = 0
        self.lost = 0
        self.t0 = time.monotonic()

    def add(self, ms: Dict[str, float]) -> None:
        with self._lock:
            self.frames += 1
            for k, v in ms.items():
                self.stages[k].add(v)

    def add_bad(self) -> None:
        with self._lock:
            self.bad += 1

    def add_lost(self, n: int) -> None:
        with self._lock:
            self.lost += n

    def take(self) -> Dict[str, Any]:
        with self._lock:
            snap = {"frames": self.frames, "bad": self.bad, "lost": self.lost,
                    "seconds": max(time.monotonic() - self.t0, 1e-9), "ms": {k: m.mean for k, m in self.stages.items()}}
            self._reset()
        return snap


def stats_line(snap: Dict[str, Any], skipped: int) -> str:
    ms = snap["ms"]
    fps = snap["frames"] / snap["seconds"]
    return (f"{fps:.1f} FPS | wait {ms['wait']:.1f} | convert {ms['convert']:.1f} | pre {ms['pre']:.1f} | "
            f"infer {ms['infer']:.1f} | post {ms['post']:.1f} | publish {ms['publish']:.1f} | "
            f"total {ms['total']:.1f} ms | skipped {skipped} stale, {snap['bad']} bad, "
            f"{snap['lost']} lost in transport")


class SegmenterNode(Node):
    """Subscribes `image` / `image/compressed`, publishes `labels` (+ `color`, `overlay`).

    `defaults` gives the parameters' defaults (from the command line); `--ros-args -p` and
    parameter files override them. Raises the Segmenter's typed error when the model fails
    to load, and RosError for an invalid parameter.
    """

    def __init__(self, defaults: Dict[str, Any], node_name: str = NODE_NAME,
                 resolve_model: Optional[Callable[..., Any]] = None):
        super().__init__(node_name)
        self._closed = False
        self._worker: Optional[threading.Thread] = None
        self._declare(defaults)
        self.seg = self._load_model(resolve_model)
        self._lut_bgr = palette_lut(self.seg.palette)
        self._lut_rgb = np.ascontiguousarray(self._lut_bgr[:, :, ::-1])
        self._slot = LatestSlot()
        self._stats = PeriodStats()
        self._throttle = Throttle(self._p("warn_period"))
        self._reported_skipped = 0
        self._make_publishers()
        self._publish_label_info()
        self._make_subscriptions()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._timer = self.create_timer(max(self._p("stats_period"), 0.05), self._report)
        self._worker = threading.Thread(target=self._work, name="pvtseg-segment", daemon=True)
        self._worker.start()

    # -- setup ------------------------------------------------------------------------------
    def _declare(self, defaults: Dict[str, Any]) -> None:
        ro = ParameterDescriptor(read_only=True)
        spec = [("model", str, ro), ("device", str, ro), ("threads", int, ro), ("input", str, ro),
                ("reliable_input", bool, ro), ("reliable_output", bool, ro), ("stats_period", float, ro),
                ("warn_period", float, ro), ("alpha", float, None), ("publish_color", bool, None),
                ("publish_overlay", bool, None)]
        for name, typ, desc in spec:
            try:
                if desc is None:
                    self.declare_parameter(name, typ(defaults[name]))
                else:
                    self.declare_parameter(name, typ(defaults[name]), desc)
            except rclpy.exceptions.ParameterException as e:
                raise RosError(f"parameter {name!r}: {e}. It takes a {typ.__name__} "
                               f"(e.g. -p {name}:={_example(typ)}).") from e
        self._alpha = self._p("alpha")
        self._color_on, self._overlay_on = self._p("publish_color"), self._p("publish_overlay")
        problem = _check_value("alpha", self._alpha) or _check_value("input", self._p("input"))
        if problem:
            raise RosError(problem)

    def _p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _load_model(self, resolve_model: Optional[Callable[..., Any]]) -> Segmenter:
        model = self._p("model") or None
        log = self.get_logger().info
        path = resolve_model(model, log=log) if resolve_model is not None else model
        if path is None:
            raise RosError("no model: pass --model (or -p model:=...) with an exported .onnx / .ts / .engine")
        opts = {"threads": self._p("threads")} if self._p("threads") > 0 else {}
        seg = Segmenter(path, device=self._p("device"), **opts)
        log(f"{seg.describe()}")
        return seg

    def _make_publishers(self) -> None:
        out = output_qos(self._p("reliable_output"))
        self._pub_labels = self.create_publisher(Image, "labels", out)
        self._pub_color = self.create_publisher(Image, "color", out)
        self._pub_overlay = self.create_publisher(Image, "overlay", out)
        self._pub_info = self.create_publisher(String, "labels/info", latched_qos())
        vision = _optional_import("vision_msgs.msg", ("LabelInfo", "VisionClass"))
        self._vision = vision
        self._pub_vision = self.create_publisher(vision[0], "label_info", latched_qos()) if vision else None
        diag = _optional_import("diagnostic_msgs.msg", ("DiagnosticArray", "DiagnosticStatus", "KeyValue"))
        self._diag = diag
        self._pub_diag = self.create_publisher(diag[0], "/diagnostics", 10) if diag else None

    def _publish_label_info(self) -> None:
        self._pub_info.publish(String(data=conv.label_info_json(self.seg.meta, str(self.seg.path))))
        if self._pub_vision is not None and self._vision is not None:
            # Not exercised by the tests: vision_msgs has no PyPI wheel (see tests/test_ros2.py).
            label_info_t, vision_class_t = self._vision
            msg = conv.fill_vision_label_info(label_info_t(), vision_class_t, self.seg.class_names)
            msg.header.stamp = self.get_clock().now().to_msg()
            self._pub_vision.publish(msg)

    def _make_subscriptions(self) -> None:
        which = self._p("input")
        wanted = [("image", Image, self._on_image), ("image/compressed", CompressedImage, self._on_compressed)]
        wanted = [w for w in wanted if which == "both" or (w[0] == "image") == (which == "raw")]
        self._subs = {topic: self._subscribe(t, topic, cb) for topic, t, cb in wanted}
        names = [_topic_name(s, t) for t, s in self._subs.items()]
        self.get_logger().info(f"waiting for images on {', '.join(names)}; labels on "
                               f"{_topic_name(self._pub_labels, 'labels')}")

    def _subscribe(self, msg_type: Any, topic: str, callback: Callable[[Any], None]) -> Any:
        """A keep-last-1 subscription that also counts (and warns about) messages lost in transport."""
        qos = sensor_qos(self._p("reliable_input"))
        callbacks_t = _event_callbacks_type()
        if callbacks_t is not None:
            try:
                events = callbacks_t(message_lost=lambda info: self._on_lost(topic, info))
                return self.create_subscription(msg_type, topic, callback, qos, event_callbacks=events)
            except Exception as e:  # noqa: BLE001  rmw without the event (UnsupportedEventTypeError), old rclpy
                if type(e).__name__ not in ("UnsupportedEventTypeError", "TypeError"):
                    raise
        return self.create_subscription(msg_type, topic, callback, qos)

    def _on_lost(self, topic: str, info: Any) -> None:
        n = int(getattr(info, "total_count_change", 1))
        self._stats.add_lost(n)
        sub = getattr(self, "_subs", {}).get(topic)
        name = _topic_name(sub, topic)
        self._warn(("lost", topic), f"{n} image(s) on {name} lost in transport; {LOST_HINT}")

    def _on_set_parameters(self, params: List[Any]) -> SetParametersResult:
        for p in params:
            problem = _check_value(p.name, p.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for p in params:
            if p.name == "alpha":
                self._alpha = float(p.value)
            elif p.name == "publish_color":
                self._color_on = bool(p.value)
            elif p.name == "publish_overlay":
                self._overlay_on = bool(p.value)
        return SetParametersResult(successful=True)

    # -- the data path ------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._slot.put(("image", msg, time.perf_counter()))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._slot.put(("image/compressed", msg, time.perf_counter()))

    def _work(self) -> None:
        while True:
            item = self._slot.take()
            if item is None:
                if self._closed:
                    return
                continue
            self._handle(*item)

    def _handle(self, kind: str, msg: Any, t_in: float) -> None:
        t0 = time.perf_counter()
        try:
            frame = conv.image_to_array(msg) if kind == "image" else conv.compressed_to_array(msg)
            t1 = time.perf_counter()
            labels = self.seg(frame)
            t2 = time.perf_counter()
            self._publish(msg.header, frame, labels)
        except FrameError as e:
            self._stats.add_bad()
            self._warn(("bad", kind), f"skipped a frame from {kind}: {e}")
            return
        except Exception as e:  # noqa: BLE001  one failed frame (e.g. a backend error) must not stop the node
            self._stats.add_bad()
            what = str(e) if isinstance(e, PvtsegError) else f"{type(e).__name__}: {e}"
            self._warn(("error", type(e).__name__), f"segmenting a frame from {kind} failed: {what}")
            return
        t3 = time.perf_counter()
        tm = self.seg.timings
        self._stats.add({"wait": (t0 - t_in) * 1e3, "convert": (t1 - t0) * 1e3, "pre": tm.pre, "infer": tm.infer,
                         "post": tm.post, "publish": (t3 - t2) * 1e3, "total": (t3 - t_in) * 1e3})

    def _publish(self, header: Any, frame: np.ndarray, labels: np.ndarray) -> None:
        self._pub_labels.publish(conv.fill_image(Image(), labels, "mono8", header))
        # Colour images cost a few ms at camera sizes: only made when enabled and someone listens.
        if self._color_on and self._pub_color.get_subscription_count() > 0:
            self._pub_color.publish(conv.fill_image(Image(), colorize(labels, self._lut_rgb), "rgb8", header))
        if self._overlay_on and self._pub_overlay.get_subscription_count() > 0:
            over = blend(conv.to_bgr(frame), colorize(labels, self._lut_bgr), self._alpha)
            self._pub_overlay.publish(conv.fill_image(Image(), over, "bgr8", header))

    def _warn(self, key: Any, text: str) -> None:
        held = self._throttle(key)
        if held is None:
            return
        more = f" ({held} more like it in the last {self._throttle.period:g} s)" if held else ""
        logger = self.get_logger()
        # `warning` is the spelling from Humble on; older rclpy only has `warn`.
        (getattr(logger, "warning", None) or logger.warn)(text + more)

    # -- reporting ----------------------------------------------------------------------------
    def _report(self) -> None:
        snap = self._stats.take()
        skipped_total = self._slot.skipped
        skipped, self._reported_skipped = skipped_total - self._reported_skipped, skipped_total
        if snap["frames"] or snap["bad"] or snap["lost"]:
            self.get_logger().info(stats_line(snap, skipped))
        if self._pub_diag is not None:
            self._pub_diag.publish(self._diagnostics(snap, skipped))

    def _diagnostics(self, snap: Dict[str, Any], skipped: int) -> Any:
        array_t, status_t, kv_t = self._diag  # type: ignore[misc]
        fps = snap["frames"] / snap["seconds"]
        level = status_t.WARN if snap["bad"] or snap["lost"] else status_t.OK
        message = (f"{fps:.1f} FPS" if snap["frames"] else "no images received") + \
            (f", {snap['bad']} bad frames" if snap["bad"] else "") + \
            (f", {snap['lost']} lost in transport" if snap["lost"] else "")
        values = [kv_t(key="fps", value=f"{fps:.2f}"), kv_t(key="skipped_stale", value=str(skipped)),
                  kv_t(key="bad_frames", value=str(snap["bad"])), kv_t(key="lost", value=str(snap["lost"])),
                  kv_t(key="model", value=str(self.seg.path)),
                  kv_t(key="backend", value=self.seg.backend_name)]
        values += [kv_t(key=f"{k}_ms", value=f"{v:.2f}") for k, v in snap["ms"].items()]
        status = status_t(level=level, name=f"{self.get_name()}: segmentation", message=message,
                          hardware_id=str(self.seg.device), values=values)
        msg = array_t(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    # -- shutdown -------------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (it finishes the frame in flight) and release the model."""
        if self._closed:
            return
        self._closed = True
        slot = getattr(self, "_slot", None)
        if slot is not None:
            slot.close()
        if self._worker is not None:
            self._worker.join(timeout)
        seg = getattr(self, "seg", None)
        if seg is not None:
            seg.close()


def _topic_name(endpoint: Any, fallback: str) -> str:
    """The resolved topic name (remapped, namespaced); Foxy's endpoints lack the property."""
    return str(getattr(endpoint, "topic_name", None) or fallback)


def _example(typ: type) -> str:
    return {str: "name", int: "2", float: "0.5", bool: "true"}[typ]


def _check_value(name: str, value: Any) -> Optional[str]:
    """Why a parameter value is invalid, or None."""
    if name == "alpha" and not 0.0 <= float(value) <= 1.0:
        return f"alpha must be in 0..1 (0: frame only, 1: mask only), got {value}"
    if name == "input" and value not in INPUTS:
        return f"input must be one of {', '.join(INPUTS)}, got {value!r}"
    return None

