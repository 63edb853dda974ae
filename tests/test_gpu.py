"""Checks that need an NVIDIA GPU; each skips with its reason elsewhere (CI has no GPU).

Run them all, with the C++ CUDA checks and the GPU bench rows, through `bash tests/run_gpu.sh`.
- ONNX Runtime's CUDA provider agrees with its CPU provider;
- TorchScript on CUDA in FP32 / FP16 / CUDA graph agrees with the CPU;
- the FP16 island policy keeps >= 99.5% of FP32 labels on 32 CamVid val frames (shipped model);
- TensorRT (when importable): engines at FP32 and FP16 build, load and agree with ONNX Runtime;
  the engine cache builds once and reuses.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from _runtime_artifacts import camvid_frames, cached_artifacts

ROOT = Path(__file__).resolve().parents[1]
TRAINED = ROOT / "models" / "camvid_pvt_v2_b0_segformer.pth"
VAL = ROOT.parent / "shared" / "data" / "camvid" / "val" / "images"


def _cuda_reason() -> str:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    return "" if torch.cuda.is_available() else f"no CUDA GPU visible to torch {torch.__version__}"


pytestmark = pytest.mark.skipif(bool(_cuda_reason()), reason=_cuda_reason() or "GPU present")


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


def frames(n=4):
    got = camvid_frames(n, "val")
    return got or [np.random.default_rng(i).integers(0, 255, (360, 480, 3), np.uint8) for i in range(n)]


def test_onnxruntime_cuda_provider_matches_cpu():
    import onnxruntime as ort

    from pvtseg.runtime import Segmenter

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDA provider ({ort.get_available_providers()})")
    onnx = cached_artifacts("gpu_logits", output="logits")["onnx"]
    cpu, gpu = Segmenter(onnx), Segmenter(onnx, device="cuda")
    assert "CUDAExecutionProvider" in gpu.describe()
    agree = [agreement(cpu(f), gpu(f)) for f in frames()]
    print(f"ONNX Runtime CUDA vs CPU: {min(agree) * 100:.3f}% labels agree (min over {len(agree)} frames)")
    assert min(agree) >= 0.999


@pytest.mark.parametrize("opts,bar", [({}, 0.999), ({"cuda_graph": True}, 0.999), ({"fp16": True}, 0.99),
                                      ({"fp16": True, "cuda_graph": True}, 0.99)])
def test_torchscript_cuda_variants_match_cpu(opts, bar):
    from pvtseg.runtime import Segmenter

    ts = cached_artifacts("gpu_logits", output="logits")["torchscript"]
    cpu, gpu = Segmenter(ts), Segmenter(ts, device="cuda", **opts)
    agree = [agreement(cpu(f), gpu(f)) for f in frames()]
    print(f"TorchScript CUDA {opts or 'fp32'} vs CPU: {min(agree) * 100:.3f}% labels agree")
    assert min(agree) >= bar


def test_fp16_policy_on_32_val_frames():
    import torch

    from pvtseg.engine.fp16_torch import half_model, run_fp32, run_half_with_fp32_islands
    from pvtseg.export import preprocess_image
    from pvtseg.models import camvid, create_model

    files = sorted(glob.glob(str(VAL / "*.jpg")))
    if not files or not TRAINED.is_file():
        pytest.skip("needs ../shared/data/camvid/val and the shipped model")
    model = create_model("pvt_v2_b0_segformer", num_classes=11, checkpoint=str(TRAINED)).eval().cuda()
    half = half_model(model)
    agree = []
    for f in files[:: max(1, len(files) // 32)][:32]:
        x = torch.from_numpy(preprocess_image(f, 320, 416, camvid.MEAN, camvid.STD)).cuda()
        agree.append(float((run_fp32(model, x) == run_half_with_fp32_islands(model, x, half=half)).float().mean()))
    mean = sum(agree) / len(agree)
    print(f"FP16 + FP32 islands vs FP32, {len(agree)} CamVid val frames on CUDA: {mean * 100:.3f}% "
          f"(min {min(agree) * 100:.3f}%)")
    assert mean >= 0.995


def _tensorrt_reason() -> str:
    from pvtseg.runtime.backends.tensorrt import tensorrt_available

    ok, why = tensorrt_available()
    return "" if ok else why


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_builds_and_agrees_with_onnxruntime(tmp_path, precision):
    why = _tensorrt_reason()
    if why:
        pytest.skip(f"TensorRT engine build not run: {why}")
    import shutil

    from pvtseg.runtime import Segmenter

    arts = cached_artifacts("gpu_trt", output="logits")
    onnx = tmp_path / "m.onnx"
    shutil.copy(arts["onnx"], onnx)
    shutil.copy(arts["json"], tmp_path / "m.json")
    ref = Segmenter(onnx)
    trt_seg = Segmenter(onnx, backend="tensorrt", precision=precision)
    again = Segmenter(onnx, backend="tensorrt", precision=precision)  # from the cache
    assert trt_seg.path == again.path and trt_seg.path.suffix == ".engine"
    agree = [agreement(ref(f), trt_seg(f)) for f in frames()]
    print(f"TensorRT {precision} vs ONNX Runtime: {min(agree) * 100:.3f}% labels agree")
    assert min(agree) >= (0.999 if precision == "fp32" else 0.99)


def test_gpu_environment_is_described():
    """Prints what the device machine has (quoted in closing notes)."""
    import torch

    print(f"GPU {torch.cuda.get_device_name(0)} cc {torch.cuda.get_device_capability(0)}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, TensorRT: {_tensorrt_reason() or 'importable'}, "
          f"PVTSEG_CAMVID={os.environ.get('PVTSEG_CAMVID', '-')}")
