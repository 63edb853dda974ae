"""torch.jit.script works for every registered classifier and segmentor and matches eager (<= 1e-5).

Small inputs (64x64) keep this fast; weight init uses normal_ instead of trunc_normal_ (same
scale) because building the 80M-parameter models is otherwise most of the cost.
"""

from __future__ import annotations

import pytest
import torch

from _pvt_helpers import fast_init, randomize_
from pvtseg.models import create_model, list_models, load_checkpoint

TOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _script_and_compare(model: torch.nn.Module, x: torch.Tensor, calls: int = 1) -> torch.jit.ScriptModule:
    """Script, then compare `calls` scripted runs with eager (later calls run the optimised graph
    of the profiling executor; every extra call costs about a second on the big models)."""
    scripted = torch.jit.script(model)
    with torch.no_grad():
        ref = model(x)
        for _ in range(calls):
            got = scripted(x)
            assert got.shape == ref.shape and got.dtype == ref.dtype
            if ref.is_floating_point():
                assert float((got - ref).abs().max()) <= TOL
            else:
                assert torch.equal(got, ref)
    return scripted


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_scripts(name):
    with fast_init():
        model = create_model(name).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    _script_and_compare(model, x)


@pytest.mark.parametrize("name", ["pvt_v2_b0_segformer", "pvt_v1_tiny_fpn", "pvt_v2_b2_li_fpn", "mit_b0"])
def test_optimised_scripted_graph_matches(name):
    model = randomize_(create_model(name).eval())
    _script_and_compare(model, torch.randn(1, 3, 96, 64), calls=3)


@pytest.mark.parametrize("output", ["logits", "labels"])
def test_export_outputs_script(output):
    model = randomize_(create_model("pvt_v2_b0_segformer", num_classes=11, output=output).eval())
    x = torch.randn(2, 3, 64, 96)
    scripted = _script_and_compare(model, x, calls=2)
    with torch.no_grad():
        out = scripted(x)
    assert out.shape[-2:] == (64, 96)
    if output == "labels":
        assert out.dtype == torch.uint8 and out.shape == (2, 64, 96)


def test_scripted_v1_after_grid_adoption_runs_other_sizes():
    src = randomize_(create_model("pvt_v1_tiny_fpn", num_classes=5).eval())
    model = create_model("pvt_v1_tiny_fpn", num_classes=5, img_size=512).eval()
    load_checkpoint(model, src.state_dict())
    scripted = _script_and_compare(model, torch.randn(1, 3, 96, 64))
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)  # the checkpoint's own grid: no interpolation
        assert float((scripted(x) - src(x)).abs().max()) <= TOL
