"""sensor_msgs <-> numpy for the ROS 2 node, without importing rclpy.

Functions take and fill message objects by duck typing (fields `encoding`, `height`, `width`,
`step`, `data`, `format`, `header`), so they run on plain Python objects in unit tests and on
any ROS 2 distribution's generated classes (Humble's always-checked setters included).

Incoming images become OpenCV BGR (or gray / BGRA, which the Segmenter converts itself):
- sensor_msgs/Image: bgr8, rgb8, mono8, bgra8, rgba8 with any row `step` >= width * channels
  (padded rows are read through a strided view, not copied row by row);
- sensor_msgs/CompressedImage: whatever cv2.imdecode reads (JPEG, PNG, ...), decoded unchanged
  like compressed_image_transport does; its 8-bit colour output is BGR.
Anything else raises FrameError with the reason, which the node turns into a throttled warning.
"""

from __future__ import annotations

import array
import json
from typing import Any, Dict, Optional, Sequence

import cv2
import numpy as np

from ..errors import FrameError

# encoding -> (channels, OpenCV conversion to BGR or None when the Segmenter takes it as is)
ENCODINGS: Dict[str, tuple] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, None),
    "bgra8": (4, None),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
}


def as_uint8(data: Any) -> np.ndarray:
    """A message's uint8[] field (array.array / bytes / list) -> 1-D uint8 array, zero-copy when possible."""
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, np.uint8)
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype == np.uint8 else data.astype(np.uint8).reshape(-1)
    return np.asarray(data, np.uint8).reshape(-1)


def image_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> HxW / HxWxC uint8 BGR / gray / BGRA. Raises FrameError on bad input."""
    enc = str(msg.encoding).lower()
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if enc not in ENCODINGS:
        raise FrameError(f"unsupported image encoding {msg.encoding!r}; publish one of {', '.join(ENCODINGS)} "
                         "(or a sensor_msgs/CompressedImage on image/compressed)")
    if h <= 0 or w <= 0:
        raise FrameError(f"empty image ({w}x{h}): the camera published no pixels")
    ch, code = ENCODINGS[enc]
    row = w * ch
    if step < row:
        raise FrameError(f"row step {step} is smaller than width * channels = {w} * {ch} = {row} "
                         f"for {enc}; the publisher's step is wrong")
    buf = as_uint8(msg.data)
    need = step * (h - 1) + row  # the last row's padding may be left out
    if buf.size < need:
        raise FrameError(f"image data has {buf.size} bytes, a {w}x{h} {enc} image with step {step} "
                         f"needs {step * h}; the message is truncated")
    # A strided view: rows `step` bytes apart, padding skipped, nothing copied yet.
    img = np.lib.stride_tricks.as_strided(buf, shape=(h, w, ch), strides=(step, ch, 1), writeable=False)
    if ch == 1:
        img = img[:, :, 0]
    if code is not None:
        return cv2.cvtColor(np.ascontiguousarray(img), code)
    return img


def compressed_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage -> uint8 BGR / gray / BGRA. Raises FrameError on bad input."""
    fmt = str(getattr(msg, "format", "") or "").lower()
    if "compresseddepth" in fmt:
        raise FrameError(f"compressed depth images ({msg.format!r}) cannot be segmented; "
                         "subscribe the node to a colour camera topic")
    buf = as_uint8(msg.data)
    if buf.size == 0:
        raise FrameError("empty compressed image (no data bytes)")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameError(f"cannot decode the compressed image ({buf.size} bytes, format {msg.format!r}); "
                         "OpenCV reads JPEG / PNG / WebP / TIFF")
    if img.dtype != np.uint8:
        raise FrameError(f"compressed image decodes to {img.dtype}, the node segments 8-bit images only")
    # compressed_image_transport stores colour as BGR and says so ("... compressed bgr8"); an
    # encoder that stored RGB says "compressed rgb8".
    if img.ndim == 3 and img.shape[2] == 3 and fmt.rstrip().endswith("compressed rgb8"):
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    return img


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Gray / BGRA / strided BGR -> contiguous BGR (for the overlay; the Segmenter does its own)."""
    if frame.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


def fill_image(msg: Any, img: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Fill a sensor_msgs/Image from a uint8 HxW / HxWxC array (rows packed: step = width * C)."""
    img = np.ascontiguousarray(img)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(img.shape[1] * (img.shape[2] if img.ndim == 3 else 1))
    data = array.array("B")
    data.frombytes(img.data)  # one memcpy; array.array also passes the setter's fast path
    msg.data = data
    return msg


def label_info(meta: Dict[str, Any], model_path: str) -> Dict[str, Any]:
    """The JSON label info: class ids -> names and RGB palette, plus what produced the labels."""
    names = list(meta["class_names"])
    return {"model": str(model_path), "arch": meta.get("arch"), "num_classes": int(meta["num_classes"]),
            "class_names": names, "palette": [list(map(int, c)) for c in meta["palette"]],
            "input_size": [int(meta["input"]["height"]), int(meta["input"]["width"])],
            "labels_encoding": "mono8"}


def label_info_json(meta: Dict[str, Any], model_path: str) -> str:
    return json.dumps(label_info(meta, model_path), separators=(",", ":"))


def fill_vision_label_info(msg: Any, vision_class: Any, class_names: Sequence[str], header: Any = None,
                           threshold: Optional[float] = None) -> Any:
    """Fill a vision_msgs/LabelInfo (class_map of VisionClass id + name). `vision_class` is the
    VisionClass type, passed in so this module never imports vision_msgs itself."""
    if header is not None:
        msg.header = header
    msg.class_map = [vision_class(class_id=i, class_name=str(n)) for i, n in enumerate(class_names)]
    if threshold is not None:
        msg.threshold = float(threshold)
    return msg
