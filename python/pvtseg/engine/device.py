"""The CUDA device TensorRT will build for, read through the CUDA driver with ctypes.

No torch, no cuda-python needed: libcuda ships with every NVIDIA driver and JetPack.
"""

from __future__ import annotations

import ctypes
from typing import Optional, Tuple

_ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_ATTR_CC_MINOR = 76


def _libcuda() -> Optional[ctypes.CDLL]:
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def gpu_info(device: int = 0) -> Tuple[Optional[str], Optional[str], str]:
    """(name, compute capability 'M.m', reason) of a CUDA device; name is None if there is none."""
    lib = _libcuda()
    if lib is None:
        return None, None, "no NVIDIA driver (libcuda) found"
    if lib.cuInit(0) != 0:
        return None, None, "the NVIDIA driver found no usable GPU (cuInit failed)"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value <= device:
        return None, None, f"CUDA device {device} does not exist ({count.value} found)"
    dev = ctypes.c_int(0)
    lib.cuDeviceGet(ctypes.byref(dev), device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, dev)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, dev)
    buf = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(buf, 256, dev)
    return buf.value.decode(errors="replace"), f"{major.value}.{minor.value}", ""
