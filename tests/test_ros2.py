"""pvtseg ros2: the node as a subprocess over real rclpy + Fast DDS (the PyPI ROS 2 wheels).

Discovery is loopback only (ROS_LOCALHOST_ONLY=1, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) on a
random private ROS_DOMAIN_ID. Real CamVid frames are published from this process and the node's
labels must equal pvtseg.runtime.Segmenter's on the same frames, bit for bit. Every wait is
bounded; the node is killed in a finally. vision_msgs/LabelInfo publishing is not exercised:
vision_msgs has no PyPI wheel (only its message filling is checked, on a stand-in type).
The message conversion, mailbox, throttle and launch-file checks at the top need no ROS.
"""

from __future__ import annotations

import array
import json
import os
import random
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest

from _runtime_artifacts import cached_artifacts, camvid_frames

from pvtseg.apps import ros2 as ros2_cli
from pvtseg.apps import ros2_convert as conv
from pvtseg.apps.ros2_bench import loopback_env, stop_node
from pvtseg.errors import FrameError
from pvtseg.models import camvid
from pvtseg.runtime import Segmenter

ROOT = Path(__file__).resolve().parents[1]

try:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    from pvtseg.apps.ros2_node import LatestSlot, Throttle, latched_qos, sensor_qos
    ROS_SKIP = ""
except ImportError as _e:  # pragma: no cover - the ros2 wheels are in the dev extra
    ROS_SKIP = f"rclpy / ROS 2 messages not importable ({_e}); pip install -e '.[ros2]'"
    print(f"test_ros2: skipping the ROS 2 tests: {ROS_SKIP}", file=sys.stderr)

needs_ros = pytest.mark.skipif(bool(ROS_SKIP), reason=ROS_SKIP or "ok")


class Msg(types.SimpleNamespace):
    """Stand-in for sensor_msgs/Image / CompressedImage in the conversion tests."""


def _image_msg(img: np.ndarray, encoding: str, pad: int = 0) -> Msg:
    h, w = img.shape[:2]
    row = img.reshape(h, -1)
    step = row.shape[1] + pad
    buf = np.full((h, step), 0xAB, np.uint8)  # padding bytes that must be ignored
    buf[:, :row.shape[1]] = row
    return Msg(encoding=encoding, height=h, width=w, step=step, data=array.array("B", buf.tobytes()))


# -- conversion, no ROS needed -----------------------------------------------------------------

def test_image_to_array_encodings_and_padding():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    rgb, gray = bgr[:, :, ::-1].copy(), bgr[:, :, 1].copy()
    bgra = np.dstack([bgr, np.full((7, 5), 9, np.uint8)])
    for pad in (0, 3):
        np.testing.assert_array_equal(conv.image_to_array(_image_msg(bgr, "bgr8", pad)), bgr)
        np.testing.assert_array_equal(conv.image_to_array(_image_msg(rgb, "rgb8", pad)), bgr)
        np.testing.assert_array_equal(conv.image_to_array(_image_msg(gray, "mono8", pad)), gray)
        np.testing.assert_array_equal(conv.image_to_array(_image_msg(bgra, "bgra8", pad)), bgra)
        rgba = bgra[:, :, [2, 1, 0, 3]].copy()
        np.testing.assert_array_equal(conv.image_to_array(_image_msg(rgba, "rgba8", pad)), bgr)
    # the last row's padding may be missing from data
    m = _image_msg(bgr, "bgr8", 4)
    m.data = m.data[:-4]
    np.testing.assert_array_equal(conv.image_to_array(m), bgr)


@pytest.mark.parametrize("change, words", [
    (dict(encoding="32FC1"), "unsupported image encoding"),
    (dict(step=14), "row step 14 is smaller"),
    (dict(height=0, width=0, step=0), "empty image"),
    (dict(data=array.array("B", bytes(20))), "truncated"),
])
def test_image_to_array_rejects_bad_messages(change, words):
    m = _image_msg(np.zeros((4, 5, 3), np.uint8), "bgr8")
    for k, v in change.items():
        setattr(m, k, v)
    with pytest.raises(FrameError, match=words):
        conv.image_to_array(m)


def test_compressed_to_array():
    frame = camvid_frames(1)[0] if camvid_frames(1) else np.full((36, 48, 3), 90, np.uint8)
    ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    got = conv.compressed_to_array(Msg(format="bgr8; jpeg compressed bgr8", data=array.array("B", jpg.tobytes())))
    np.testing.assert_array_equal(got, cv2.imdecode(jpg, cv2.IMREAD_COLOR))
    ok, png = cv2.imencode(".png", frame)
    got = conv.compressed_to_array(Msg(format="rgb8; png compressed rgb8", data=png.tobytes()))
    np.testing.assert_array_equal(got, frame[:, :, ::-1])  # the payload said it stored RGB
    for fmt, data, words in (("jpeg", b"not a jpeg", "cannot decode"), ("jpeg", b"", "empty"),
                             ("16UC1; compressedDepth png", png.tobytes(), "depth")):
        with pytest.raises(FrameError, match=words):
            conv.compressed_to_array(Msg(format=fmt, data=data))


def test_fill_image_and_label_info():
    lab = np.arange(12, dtype=np.uint8).reshape(3, 4)
    m = conv.fill_image(Msg(), lab[:, ::-1], "mono8", header="h")  # a non-contiguous view is packed
    assert (m.height, m.width, m.step, m.encoding, m.header) == (3, 4, 4, "mono8", "h")
    assert isinstance(m.data, array.array) and bytes(m.data) == lab[:, ::-1].tobytes()
    meta = {"class_names": camvid.CLASS_NAMES, "palette": camvid.PALETTE, "num_classes": 11, "arch": "a",
            "input": {"height": 8, "width": 16}}
    info = json.loads(conv.label_info_json(meta, "m.onnx"))
    assert info["class_names"] == list(camvid.CLASS_NAMES) and info["palette"] == [list(c) for c in camvid.PALETTE]
    # vision_msgs/LabelInfo filling, on stand-in types (vision_msgs itself is not on PyPI)
    label_info = conv.fill_vision_label_info(Msg(), lambda **kw: Msg(**kw), ["sky", "road"], threshold=0.5)
    assert [(c.class_id, c.class_name) for c in label_info.class_map] == [(0, "sky"), (1, "road")]
    assert label_info.threshold == 0.5


@needs_ros
def test_latest_slot_and_throttle():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0.01) == 4 and slot.skipped == 4 and slot.take(0.01) is None
    slot.close()
    assert slot.take(1.0) is None
    now = [0.0]
    th = Throttle(5.0, clock=lambda: now[0])
    assert th("a") == 0 and th("a") is None and th("a") is None and th("b") == 0
    now[0] = 5.5
    assert th("a") == 2  # let through again, with the count of what it held back


def test_split_ros_args_and_parser():
    ours, ros = ros2_cli.split_ros_args(["--model", "x.onnx", "--ros-args", "-r", "image:=/cam", "-p", "a:=1"])
    assert ours == ["--model", "x.onnx"] and ros == ["--ros-args", "-r", "image:=/cam", "-p", "a:=1"]
    d = ros2_cli.parameter_defaults(ros2_cli.build_parser().parse_args(["--model", "m.onnx", "--overlay"]))
    assert d["model"] == "m.onnx" and d["publish_overlay"] and not d["publish_color"] and d["reliable_output"]


def _fake_launch_modules() -> Dict[str, types.ModuleType]:
    """Stand-ins for ROS 2 `launch` (not on PyPI) that record what the launch file builds."""
    class Rec:
        def __init__(self, *args: Any, **kw: Any):
            self.args, self.kw = args, kw

    class LaunchConfiguration(Rec):
        pass

    mods = {n: types.ModuleType(n) for n in ("launch", "launch.actions", "launch.substitutions")}
    mods["launch"].LaunchDescription = lambda entities: list(entities)
    mods["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument", (Rec,), {})
    mods["launch.actions"].ExecuteProcess = type("ExecuteProcess", (Rec,), {})
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    return mods


def test_launch_example_builds_a_valid_command(monkeypatch):
    import importlib.util

    for name, mod in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("pvtseg_launch", ROOT / "examples" / "ros2" / "pvtseg.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    defaults = {e.args[0]: e.kw["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    proc = [e for e in entities if type(e).__name__ == "ExecuteProcess"][0]

    def text(part: Any) -> str:
        if isinstance(part, list):
            return "".join(text(p) for p in part)
        return defaults[part.args[0]] if type(part).__name__ == "LaunchConfiguration" else part

    argv = [text(p) for p in proc.kw["cmd"]]
    assert argv[:2] == ["pvtseg", "ros2"]
    ours, ros = ros2_cli.split_ros_args(argv[2:])
    args = ros2_cli.build_parser().parse_args(ours)  # exits (SystemExit) on an option the CLI lacks
    assert args.model == defaults["model"] and args.overlay
    assert ros[0] == "--ros-args" and len(ros) % 2 == 1 and all(f in ("-r", "-p") for f in ros[1::2])
    rules = [ros[i + 1] for i in range(1, len(ros), 2) if ros[i] == "-r"]
    assert "image:=/camera/image_raw" in rules and "image/compressed:=/camera/image_raw/compressed" in rules
    assert "__ns:=/segmentation" in rules and all(re.fullmatch(r"[\w/]+:=[\w/.]+", r) for r in rules)


# -- the node over real ROS 2 ------------------------------------------------------------------

@pytest.fixture(scope="module")
def art():
    return cached_artifacts("tiny", height=128, width=160, output="labels")


@pytest.fixture(scope="module")
def frames():
    fs = camvid_frames(4)
    if not fs:
        pytest.skip("CamVid frames not found at ../shared/data/camvid (see shared/README.md)")
    return fs


@pytest.fixture(scope="module")
def ref(art):
    seg = Segmenter(art["onnx"], threads=1)
    yield seg
    seg.close()


@pytest.fixture(scope="module")
def ros_env():
    """Loopback discovery on a private domain, for this process and the node's. The Fast DDS
    profile shipped for images over 512 KiB is loaded: bgra8 CamVid frames are 675 KiB, and
    without it best-effort samples that size are nearly all lost (README, ROS 2 section)."""
    profile = str(ROOT / "examples" / "ros2" / "fastdds_large_images.xml")
    env = dict(loopback_env(random.randint(1, 100)),
               FASTDDS_DEFAULT_PROFILES_FILE=profile, FASTRTPS_DEFAULT_PROFILES_FILE=profile)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class RosPeer:
    """This process's side: publishes images, collects what the node publishes, by stamp."""

    def __init__(self, env: Dict[str, str]):
        self.ctx = rclpy.Context()
        opts = {}
        if hasattr(rclpy, "signals"):  # keep pytest's own Ctrl-C handling
            opts["signal_handler_options"] = rclpy.signals.SignalHandlerOptions.NO
        rclpy.init(context=self.ctx, domain_id=int(env["ROS_DOMAIN_ID"]), **opts)
        self.node = Node("pvtseg_test", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.pub = self.node.create_publisher(Image, "image", sensor_qos())
        self.pub_c = self.node.create_publisher(CompressedImage, "image/compressed", sensor_qos())
        self.got: Dict[str, Dict[int, Any]] = {"labels": {}, "color": {}, "overlay": {}}
        self.arrivals: List[tuple] = []
        for topic in self.got:
            self.node.create_subscription(Image, topic, self._store(topic), sensor_qos())
        self.stamp = 1000

    def _store(self, topic: str):
        def cb(msg: Any) -> None:
            key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.got[topic][key] = msg
            if topic == "labels":
                self.arrivals.append((time.monotonic(), key))
        return cb

    def stamped(self, msg: Any, frame_id: str = "camera_optical") -> tuple:
        self.stamp += 1
        msg.header.stamp.sec, msg.header.stamp.nanosec = self.stamp, 123456
        msg.header.frame_id = frame_id
        return msg, self.stamp * 1_000_000_000 + 123456

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.02, max(end - time.monotonic(), 0.0)))

    def request(self, msg: Any, topics=("labels",), timeout: float = 20.0, compressed: bool = False) -> Dict[str, Any]:
        """Publish `msg` (again every 0.5 s: best effort may drop it) until every topic answered its stamp."""
        msg, key = self.stamped(msg)
        pub = self.pub_c if compressed else self.pub
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pub.publish(msg)
            end = min(time.monotonic() + 0.5, deadline)
            while time.monotonic() < end and not all(key in self.got[t] for t in topics):
                self.executor.spin_once(timeout_sec=0.02)
            if all(key in self.got[t] for t in topics):
                return {t: self.got[t].pop(key) for t in topics}
        raise AssertionError(f"no {topics} for stamp {key} within {timeout} s")

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def _start_node(art: Dict[str, Path], env: Dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pvtseg", "ros2", "--model", str(art["onnx"]), "--threads", "1", *extra]
    with open(log, "w") as f:
        return subprocess.Popen(cmd, env=dict(os.environ, **env), stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)


@pytest.fixture(scope="module")
def node(art, ros_env, tmp_path_factory, frames):
    log = tmp_path_factory.mktemp("ros2") / "node.log"
    proc = _start_node(art, ros_env, log, "--color", "--overlay", "--warn-period", "60", "--stats-period", "0.3")
    tester = None
    try:
        tester = RosPeer(ros_env)
        tester.request(conv.fill_image(Image(), frames[0], "bgr8"), timeout=60.0)  # discovery + model load
        yield types.SimpleNamespace(proc=proc, log=log, t=tester)
    finally:
        if tester is not None:
            tester.close()
        stop_node(proc)  # SIGINT, then kill after 10 s
        print(f"node log ({log}):\n{log.read_text()[-1500:]}")


def _labels(msg: Any) -> np.ndarray:
    assert msg.encoding == "mono8" and msg.step == msg.width
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width)


@needs_ros
@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "mono8", "bgra8", "rgba8"])
def test_labels_equal_segmenter(node, frames, ref, encoding):
    frame = frames[1]
    code = {"rgb8": cv2.COLOR_BGR2RGB, "mono8": cv2.COLOR_BGR2GRAY, "bgra8": cv2.COLOR_BGR2BGRA,
            "rgba8": cv2.COLOR_BGR2RGBA}.get(encoding)
    img = frame if code is None else cv2.cvtColor(frame, code)
    expected = ref(img if encoding in ("mono8", "bgra8") else frame)
    msg = conv.fill_image(Image(), img, encoding)
    sent_stamp = node.t.stamp + 1
    out = node.t.request(msg)["labels"]
    assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (sent_stamp, 123456,
                                                                                      "camera_optical")
    np.testing.assert_array_equal(_labels(out), expected)


@needs_ros
def test_padded_row_step(node, frames, ref):
    for frame, enc in ((frames[2], "bgr8"), (cv2.cvtColor(frames[2], cv2.COLOR_BGR2GRAY), "mono8")):
        m = _image_msg(frame, enc, pad=37)
        msg = Image(height=m.height, width=m.width, step=m.step, encoding=enc, data=m.data)
        np.testing.assert_array_equal(_labels(node.t.request(msg)["labels"]), ref(frame))


@needs_ros
def test_compressed_jpeg(node, frames, ref):
    ok, jpg = cv2.imencode(".jpg", frames[3], [cv2.IMWRITE_JPEG_QUALITY, 85])
    msg = CompressedImage(format="bgr8; jpeg compressed bgr8", data=array.array("B", jpg.tobytes()))
    out = node.t.request(msg, compressed=True)["labels"]
    assert out.header.frame_id == "camera_optical"
    np.testing.assert_array_equal(_labels(out), ref(cv2.imdecode(jpg, cv2.IMREAD_COLOR)))


@needs_ros
def test_color_and_overlay(node, frames, ref):
    frame = frames[0]
    out = node.t.request(conv.fill_image(Image(), frame, "bgr8"), topics=("labels", "color", "overlay"))
    labels = _labels(out["labels"])
    np.testing.assert_array_equal(labels, ref(frame))
    pal = np.asarray(camvid.PALETTE, np.uint8)
    color = np.frombuffer(out["color"].data, np.uint8).reshape(labels.shape + (3,))
    assert out["color"].encoding == "rgb8"
    np.testing.assert_array_equal(color, pal[labels])
    over = np.frombuffer(out["overlay"].data, np.uint8).reshape(labels.shape + (3,))
    assert out["overlay"].encoding == "bgr8"
    mask_bgr = np.ascontiguousarray(pal[labels][:, :, ::-1])
    np.testing.assert_array_equal(over, cv2.addWeighted(mask_bgr, 0.5, frame, 0.5, 0))


@needs_ros
def test_label_info_is_latched(node, art):
    got: List[str] = []
    sub = node.t.node.create_subscription(String, "labels/info", lambda m: got.append(m.data), latched_qos())
    try:
        end = time.monotonic() + 10
        while not got and time.monotonic() < end:  # published once at start-up, long before this subscriber
            node.t.executor.spin_once(timeout_sec=0.05)
    finally:
        node.t.node.destroy_subscription(sub)
    assert got, "no label info on the transient-local topic labels/info"
    info = json.loads(got[0])
    sidecar = json.loads(art["json"].read_text())
    assert info["class_names"] == sidecar["class_names"] and info["palette"] == sidecar["palette"]
    assert info["num_classes"] == 11 and info["labels_encoding"] == "mono8"


def _bad_count(log: Path) -> int:
    """Bad frames the node has counted so far, from its periodic stats lines."""
    return sum(int(n) for n in re.findall(r"skipped \d+ stale, (\d+) bad", log.read_text()))


@needs_ros
def test_bad_input_is_skipped_with_throttled_warning(node, frames, ref):
    bad = [(node.t.pub, Image(height=4, width=4, step=16, encoding="32FC1", data=array.array("B", bytes(64)))),
           (node.t.pub, Image(height=4, width=4, step=5, encoding="bgr8", data=array.array("B", bytes(20)))),
           (node.t.pub, Image(height=4, width=4, step=12, encoding="bgr8", data=array.array("B", bytes(10)))),
           (node.t.pub, Image(height=0, width=0, step=0, encoding="bgr8")),
           (node.t.pub_c, CompressedImage(format="jpeg", data=array.array("B", b"garbage")))]
    start = _bad_count(node.log)
    for i, (pub, m) in enumerate(bad):  # one at a time, each until the node has counted it
        deadline = time.monotonic() + 10
        while _bad_count(node.log) < start + i + 1 and time.monotonic() < deadline:
            pub.publish(node.t.stamped(m)[0])  # again after 2 s: best effort may lose it
            resend = time.monotonic() + 2.0
            while _bad_count(node.log) < start + i + 1 and time.monotonic() < resend:
                time.sleep(0.05)
    good = frames[1]
    np.testing.assert_array_equal(_labels(node.t.request(conv.fill_image(Image(), good, "bgr8"))["labels"]), ref(good))
    assert node.proc.poll() is None
    log = node.log.read_text()
    assert _bad_count(node.log) >= start + len(bad), log[-2000:]
    warn_raw = [ln for ln in log.splitlines() if "skipped a frame from image:" in ln]
    warn_c = [ln for ln in log.splitlines() if "skipped a frame from image/compressed:" in ln]
    # throttled: one warning per input topic although 4 + 1 bad frames came within the period
    assert len(warn_raw) == 1 and "unsupported image encoding '32FC1'" in warn_raw[0], log[-2000:]
    assert len(warn_c) == 1 and "cannot decode" in warn_c[0], log[-2000:]


@needs_ros
def test_burst_answers_newest_not_backlog(node, frames, ref):
    msgs = [node.t.stamped(conv.fill_image(Image(), frames[i % len(frames)], "bgr8")) for i in range(24)]
    node.t.arrivals.clear()
    for m, _ in msgs:  # back to back, much faster than the node segments
        node.t.pub.publish(m)
    t_last = time.monotonic()
    last_key = msgs[-1][1]
    end = time.monotonic() + 15
    while last_key not in node.t.got["labels"] and time.monotonic() < end:
        node.t.executor.spin_once(timeout_sec=0.02)
    node.t.spin_for(0.5)  # anything still queued would show up now
    keys = [k for _, k in node.t.arrivals]
    assert last_key in keys, f"the newest frame of the burst was not answered (got {len(keys)} answers)"
    assert keys == sorted(keys) and keys[-1] == last_key  # nothing older after the newest
    assert len(keys) <= len(msgs) // 2, f"{len(keys)} of {len(msgs)} burst frames were answered: a backlog"
    waited = dict((k, t) for t, k in node.t.arrivals)[last_key] - t_last
    assert waited < 5.0
    np.testing.assert_array_equal(_labels(node.t.got["labels"][last_key]), ref(frames[23 % len(frames)]))
    for t in node.t.got.values():
        t.clear()


@needs_ros
def test_alpha_parameter_at_run_time(node, frames):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = node.t.node.create_client(SetParameters, "/pvtseg_segmenter/set_parameters")
    try:
        assert client.wait_for_service(timeout_sec=10.0)

        def set_alpha(v: float) -> Any:
            req = SetParameters.Request(parameters=[Parameter(name="alpha", value=ParameterValue(
                type=ParameterType.PARAMETER_DOUBLE, double_value=v))])
            fut = client.call_async(req)
            node.t.executor.spin_until_future_complete(fut, timeout_sec=10.0)
            assert fut.done()
            return fut.result().results[0]

        bad = set_alpha(1.5)
        assert not bad.successful and "alpha must be in 0..1" in bad.reason
        assert set_alpha(1.0).successful
        out = node.t.request(conv.fill_image(Image(), frames[0], "bgr8"), topics=("labels", "overlay"))
        labels = _labels(out["labels"])
        over = np.frombuffer(out["overlay"].data, np.uint8).reshape(labels.shape + (3,))
        np.testing.assert_array_equal(over, np.asarray(camvid.PALETTE, np.uint8)[labels][:, :, ::-1])  # mask only
        assert set_alpha(0.5).successful
    finally:
        node.t.node.destroy_client(client)


@needs_ros
def test_model_that_fails_to_load_exits_with_its_error(tmp_path, ros_env, art):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx file")
    (tmp_path / "broken.json").write_text(art["json"].read_text())
    cases = [(["--model", str(tmp_path / "missing.onnx")], "no model file"),
             (["--model", str(broken)], f"{broken}: ONNX Runtime cannot load this model"),
             (["--model", str(art["onnx"]), "--ros-args", "-p", "alpha:=3.0"], "alpha must be in 0..1")]
    for argv, words in cases:
        r = subprocess.run([sys.executable, "-m", "pvtseg", "ros2", *argv], env=dict(os.environ, **ros_env),
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert f"pvtseg ros2: error: {words}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


@needs_ros
def test_ros2_bench_runs_node_against_bare_segmenter(tmp_path, ros_env, art):
    out = tmp_path / "bench.json"
    env = dict(os.environ, **ros_env)
    r = subprocess.run([sys.executable, "-m", "pvtseg", "ros2-bench", "--model", str(art["onnx"]), "--frames", "3",
                        "--warmup", "1", "--domain-id", str((int(ros_env["ROS_DOMAIN_ID"]) + 50) % 100 + 1),
                        "--json", str(out)], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["frames"] == 3 and res["labels_identical"] == 3  # the node's labels are the bare Segmenter's
    assert res["node_ms"]["p50"] > 0 and res["bare_ms"]["p50"] > 0
    assert "node / bare p50:" in r.stdout and "labels identical on 3/3 frames" in r.stdout
