"""Plain-PyTorch PVT models: no TensorRT / OpenCV imports here."""

from .registry import create_model, list_models, model_kind, register_model  # noqa: F401
from .formats import load_checkpoint  # noqa: F401
from .segmentor import Segmentor  # noqa: F401
