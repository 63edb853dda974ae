"""Export: a PyTorch segmentor -> TorchScript / ONNX + sidecar, checked against PyTorch.

    from pvtseg.export import export_model
    paths = export_model(model, "models/build/camvid_b0", height=384, width=480)

artifacts.py  export_model and its self-check     fuse.py  exact inference rewrites
cli.py        `pvtseg export` (= python/export_model.py)
"""

from .artifacts import export_model, find_sample_image, preprocess_image, sha256_file  # noqa: F401

__all__ = ["export_model", "find_sample_image", "preprocess_image", "sha256_file"]
