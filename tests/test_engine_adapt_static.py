"""Every backbone family's default export (static input), labels and logits, through
`build_engine.py --plan-only --save-onnx` for TensorRT 8.5, 8.6, 10.3, 10.13 and 11: each saved
graph passes its version's parser contract and agrees with the export in ONNX Runtime
(>= 99.9% labels, logits <= 1e-4). The exports as written fail the contract (ArgMax ->
Cast(UINT8) on every version, LayerNormalization on 8.5); see tests/_engine_exports.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).parent))
from _engine_exports import FAMILIES, check_family  # noqa: E402

from pvtseg.engine import builder  # noqa: E402
from pvtseg.engine.cli import main as build_main  # noqa: E402
from pvtseg.errors import EngineError  # noqa: E402


@pytest.fixture
def plan_all(monkeypatch, capsys):
    """build_engine.py --plan-only for every supported version (as on a machine without TensorRT)."""
    def no_tensorrt():
        raise EngineError("TensorRT is not installed (test)")

    monkeypatch.setattr(builder, "import_tensorrt", no_tensorrt)

    def run(onnx_path, save):
        rc = build_main(["--onnx", str(onnx_path), "--plan-only", "--save-onnx", str(save)])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert out.out.count("contract: the graph handed to the parser passes it") == 5, out.out
    return run


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_adapts_for_every_tensorrt(family, tmp_path, plan_all):
    for line in check_family(family, False, tmp_path, plan_all):
        print(line)
