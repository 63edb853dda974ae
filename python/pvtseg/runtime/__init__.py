"""pvtseg.runtime: run exported artifacts on frames. No torch / pvtseg.models import here.

    from pvtseg.runtime import Segmenter
    seg = Segmenter("models/build/x.onnx", device="cpu")
    labels = seg(frame_bgr)          # uint8 HxW at the frame's size
    print(seg.timings)               # pre / infer / post ms

Backends: `.engine` TensorRT (tensorrt + cuda-python), `.ts` TorchScript (torch),
`.onnx` ONNX Runtime. Only the chosen backend's framework is imported.
"""

from .segmenter import Segmenter, Timings, argmax_channels, as_bgr  # noqa: F401
from .visualize import MODES, Visualizer, blend, colorize, legend_patch, overlay, palette_lut  # noqa: F401

__all__ = ["Segmenter", "Timings", "as_bgr", "argmax_channels", "Visualizer", "MODES", "blend", "colorize",
           "legend_patch", "overlay", "palette_lut"]
