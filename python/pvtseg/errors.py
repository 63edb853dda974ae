"""Typed errors. Every message says what went wrong *and* how to fix it.

All inherit from PvtsegError so callers can catch one type; each also inherits the
closest built-in (ValueError, FileNotFoundError, ...) so generic handlers still work.
"""


class PvtsegError(Exception):
    """Base class of every error pvtseg raises on purpose."""


class ModelNotFoundError(PvtsegError, KeyError):
    """Unknown model name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(PvtsegError, ValueError):
    """A model, layer or option was given a value it cannot take (a programming-time mistake)."""


class InputShapeError(PvtsegError, ValueError):
    """An input tensor or frame has a shape the model cannot take."""


class CheckpointError(PvtsegError, ValueError):
    """A checkpoint cannot be read, recognised or loaded into the model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path does not exist."""


class MetaError(PvtsegError, ValueError):
    """A sidecar JSON file is missing, unreadable or does not match the schema."""


class ArtifactMismatchError(MetaError):
    """An artifact's graph / engine does not match its sidecar (names, shapes, dtypes, classes)."""


class ExportError(PvtsegError, RuntimeError):
    """Export failed or the exported artifact disagrees with PyTorch."""


class EngineError(PvtsegError, RuntimeError):
    """A TensorRT engine cannot be built or loaded (no TensorRT, no GPU, wrong version)."""


class OperatorTableError(PvtsegError, ValueError):
    """An onnx-tensorrt operators.md support table cannot be read."""


class FrameError(PvtsegError, ValueError):
    """A frame handed to the runtime is not an image it can segment."""


class SourceError(PvtsegError, RuntimeError):
    """A camera / video / stream source cannot be opened or read."""


class SourceTimeoutError(SourceError, TimeoutError):
    """No frame arrived within the time the caller gave FrameSource.read()."""


class DataError(PvtsegError, ValueError):
    """A dataset folder is missing or malformed."""


class DownloadError(CheckpointError, ConnectionError):
    """Official weights could not be downloaded (offline, HTTP error, incomplete file)."""


class DeviceError(PvtsegError, ValueError):
    """A device string or backend option is invalid, or the device is not available."""


class UnknownArtifactError(PvtsegError, ValueError):
    """The artifact's extension names no backend, or the backend name is unknown."""


class QuantizationError(PvtsegError, ValueError):
    """An ONNX graph, calibration set or quantization policy cannot give a valid Q/DQ INT8 model."""


class AccuracyGateError(QuantizationError):
    """The INT8 model lost more mIoU than --max-drop allows; nothing was written."""


class RosError(PvtsegError, RuntimeError):
    """ROS 2 (rclpy / a middleware) is not usable here, or a node parameter is invalid."""


class WriteError(PvtsegError, OSError):
    """A file could not be written (disk full, read-only, no permission); the previous version is intact.

    Constructed as WriteError(errno, message, filename): `errno` and `filename` keep the cause
    for callers, str() is the whole one-line message.
    """

    def __str__(self) -> str:
        return str(self.strerror if self.strerror is not None else (self.args[0] if self.args else ""))


class DiskSpaceError(WriteError):
    """Not enough free space for what is about to be written (checked before writing)."""


class ExportMemoryError(ExportError, MemoryError):
    """The export would need more memory than the machine has available."""
