"""pvtseg: Pyramid Vision Transformer segmentation, from checkpoint to edge runtime."""

__version__ = "0.1.0"

from .errors import PvtsegError  # noqa: F401
