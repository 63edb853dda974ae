"""Every backbone family's export, labels and logits, static (1x3x64x64) and dynamic, adapted
for TensorRT 8.5, 8.6, 10.3, 10.13 and 11 by `build_engine.py --plan-only --save-onnx`: each
saved graph passes its version's parser contract and agrees with the export in ONNX Runtime
(dynamic graphs at 1x3x64x64 and at 2x3x128x128). The check is `adapt_for_every_tensorrt` in
tests/_engine_exports.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).parent))
from _engine_exports import FAMILIES, adapt_for_every_tensorrt  # noqa: E402


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_adapts_for_every_tensorrt(family, dynamic, tmp_path, monkeypatch, capsys):
    adapt_for_every_tensorrt(family, dynamic, tmp_path, monkeypatch, capsys)
