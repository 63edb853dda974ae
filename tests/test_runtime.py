"""pvtseg.runtime: Segmenter, backends, frame checks, visualize; runs on CPU without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from _runtime_artifacts import CAMVID, cached_artifacts, camvid_frames

from pvtseg.errors import EngineError, FrameError, MetaError, PvtsegError
from pvtseg.runtime import Segmenter, Visualizer, argmax_channels, as_bgr, blend, colorize, palette_lut
from pvtseg.runtime.backends import DeviceError, UnknownArtifactError, backend_for, parse_device

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def labels_art():
    return cached_artifacts("tiny", height=128, width=160, output="labels")


@pytest.fixture(scope="module")
def logits_art():
    return cached_artifacts("tiny", height=128, width=160, output="logits_4x")


@pytest.fixture(scope="module")
def onnx_seg(labels_art):
    return Segmenter(labels_art["onnx"])


def _frame(h=120, w=150, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)


# -- backend parity ---------------------------------------------------------------------------

def test_torchscript_vs_onnxruntime_parity_on_camvid(labels_art):
    frames = camvid_frames(8, "test") + camvid_frames(4, "val")
    if not frames:
        pytest.skip(f"CamVid not found at {CAMVID}: parity needs real frames")
    ts, ox = Segmenter(labels_art["torchscript"]), Segmenter(labels_art["onnx"])
    agree = total = 0
    for f in frames:
        a, b = ts(f), ox(f)
        assert a.shape == b.shape == f.shape[:2] and a.dtype == b.dtype == np.uint8
        agree += int((a == b).sum())
        total += a.size
    assert agree / total >= 0.999, f"TorchScript vs ONNX Runtime label agreement {agree / total:.5f} < 0.999"


def test_logits_artifact_parity_and_exact_upsampling(logits_art):
    frames = camvid_frames(4, "test") or [_frame(360, 480)]
    ts, ox = Segmenter(logits_art["torchscript"]), Segmenter(logits_art["onnx"])
    assert ox.output_kind == "logits" and ox.output_stride == 4
    import torch
    import torch.nn.functional as F

    for f in frames:
        a, b = ts(f), ox(f)
        assert (a == b).mean() >= 0.999
        # post-processing == torch's "bilinear upsample logits to the frame, then argmax"
        logits = ox.backend.infer(ox.preprocess(f))
        ref = F.interpolate(torch.from_numpy(logits), size=f.shape[:2], mode="bilinear",
                            align_corners=False).argmax(1)[0].numpy()
        assert (b == ref).mean() >= 0.9999


def test_logits_nearest_mode_is_close(logits_art):
    f = (camvid_frames(1) or [_frame(360, 480)])[0]
    exact = Segmenter(logits_art["onnx"])(f)
    fast = Segmenter(logits_art["onnx"], logits_upsample="nearest")(f)
    assert fast.shape == exact.shape and (fast == exact).mean() > 0.8


def test_argmax_channels_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 7, 9)).astype(np.float32)
    assert np.array_equal(argmax_channels(x), x.argmax(0).astype(np.uint8))
    assert argmax_channels(x.astype(np.float16)).dtype == np.uint8
    up = argmax_channels(x, (28, 36))
    assert up.shape == (28, 36)
    ref = np.stack([cv2.resize(x[c], (36, 28), interpolation=cv2.INTER_LINEAR) for c in range(5)]).argmax(0)
    assert np.array_equal(up, ref)
    assert np.array_equal(x, x.copy())  # input untouched


# -- frames -----------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(128, 160), (37, 53), (360, 480), (1, 1)])
def test_output_at_frame_size(onnx_seg, h, w):
    lab = onnx_seg(_frame(h, w))
    assert lab.shape == (h, w) and lab.dtype == np.uint8 and lab.flags.c_contiguous
    assert lab.max() < onnx_seg.num_classes


def test_timings(onnx_seg):
    onnx_seg(_frame())
    t = onnx_seg.timings
    assert t.pre > 0 and t.infer > 0 and t.post >= 0
    assert abs(t.total - (t.pre + t.infer + t.post)) < 1e-9
    assert set(t.as_dict()) == {"pre", "infer", "post", "total"} and "infer" in str(t)


def test_gray_and_bgra_are_converted(onnx_seg):
    bgr = _frame()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    as3 = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    ref = onnx_seg(as3)
    assert np.array_equal(onnx_seg(gray), ref)
    assert np.array_equal(onnx_seg(gray[:, :, None]), ref)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 7
    assert np.array_equal(onnx_seg(bgra), onnx_seg(bgr))
    # non-contiguous views are fine
    assert onnx_seg(_frame(120, 300)[:, ::2]).shape == (120, 150)


@pytest.mark.parametrize("bad,why", [
    (np.zeros((64, 64, 3), np.float32), "dtype"),
    (np.zeros((64, 64, 3), np.uint16), "dtype"),
    (np.zeros((0, 64, 3), np.uint8), "empty"),
    (np.zeros((64, 0), np.uint8), "empty"),
    (np.zeros((64, 64, 0), np.uint8), "empty"),
    (np.zeros((1, 64, 64, 3), np.uint8), "HxW"),
    (np.zeros((64,), np.uint8), "HxW"),
    (np.zeros((64, 64, 2), np.uint8), "channels"),
    ([[0, 1], [2, 3]], "numpy"),
    (None, "numpy"),
])
def test_bad_frames_raise_frame_error(onnx_seg, bad, why):
    with pytest.raises(FrameError, match=why):
        onnx_seg(bad)
    assert issubclass(FrameError, ValueError) and issubclass(FrameError, PvtsegError)


def test_as_bgr_passthrough():
    f = _frame()
    assert as_bgr(f) is f


# -- construction errors ----------------------------------------------------------------------

def test_backend_from_extension():
    assert backend_for("a/b.engine") == "tensorrt"
    assert backend_for("b.ts") == "torchscript"
    assert backend_for("b.onnx") == "onnxruntime"
    with pytest.raises(UnknownArtifactError, match="extension"):
        backend_for("b.pkl")


def test_devices():
    assert parse_device("cpu") == ("cpu", 0)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("cuda:2") == ("cuda", 2)
    with pytest.raises(DeviceError):
        parse_device("tpu")


def test_missing_file_and_sidecar(tmp_path, labels_art):
    with pytest.raises(MetaError, match="no model file"):
        Segmenter(tmp_path / "nope.onnx")
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(labels_art["onnx"].read_bytes())
    with pytest.raises(MetaError, match="sidecar"):
        Segmenter(lone)


def test_onnx_cuda_without_cuda_provider(labels_art):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        Segmenter(labels_art["onnx"], device="cuda")


def test_sidecar_drives_preprocessing(tmp_path, labels_art):
    """Changing mean/std in the sidecar changes the input the backend sees."""
    base = Segmenter(labels_art["onnx"])
    x0 = base.preprocess(_frame()).copy()
    meta = json.loads(labels_art["json"].read_text())
    meta["input"]["mean"] = [0.0, 0.0, 0.0]
    meta["input"]["std"] = [1.0, 1.0, 1.0]
    art = tmp_path / "m.onnx"
    art.write_bytes(labels_art["onnx"].read_bytes())
    (tmp_path / "m.json").write_text(json.dumps(meta))
    x1 = Segmenter(art).preprocess(_frame())
    f = _frame()
    r = cv2.resize(f, (160, 128), interpolation=cv2.INTER_LINEAR)
    assert np.allclose(x1[0, 0], r[:, :, 2] / 255.0, atol=1e-6)  # channel 0 = R
    assert np.allclose(x1[0, 2], r[:, :, 0] / 255.0, atol=1e-6)
    assert not np.allclose(x0, x1)


# -- import hygiene: a Jetson without torch --------------------------------------------------

def test_runtime_runs_without_torch(labels_art):
    code = textwrap.dedent(f"""
        import sys
        sys.modules['torch'] = None            # any `import torch` now raises ImportError
        sys.path.insert(0, {str(ROOT / 'python')!r})
        import numpy as np
        import pvtseg.runtime
        from pvtseg.runtime import Segmenter, Visualizer
        seg = Segmenter({str(labels_art['onnx'])!r})
        lab = seg(np.zeros((90, 120, 3), np.uint8))
        assert lab.shape == (90, 120), lab.shape
        Visualizer(seg.meta).render(np.zeros((90, 120, 3), np.uint8), lab, 10.0, seg.timings)
        bad = [m for m in sys.modules if m.startswith(('pvtseg.models', 'torch', 'pvtseg.export', 'transformers'))
               and sys.modules[m] is not None]
        assert not bad, bad
        print('ok', seg.backend_name)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok onnxruntime" in r.stdout


def test_torchscript_without_torch_says_how_to_fix(labels_art):
    code = textwrap.dedent(f"""
        import sys
        sys.modules['torch'] = None
        sys.path.insert(0, {str(ROOT / 'python')!r})
        from pvtseg.runtime import Segmenter
        from pvtseg.errors import PvtsegError
        try:
            Segmenter({str(labels_art['torchscript'])!r})
        except PvtsegError as e:
            print('err', e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "needs PyTorch" in r.stdout and ".onnx" in r.stdout


# -- TensorRT backend (no TensorRT here: the checks that need none) -----------------------------

def test_engine_without_tensorrt_raises_engine_error(tmp_path, labels_art):
    from pvtseg.runtime.backends import tensorrt as trt_backend

    ok, why = trt_backend.tensorrt_available()
    if ok:
        pytest.skip("TensorRT is installed: covered by test_runtime_trt_typecheck.py")
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"not an engine")
    (tmp_path / "m.json").write_text(labels_art["json"].read_text())
    with pytest.raises(EngineError, match="cannot run a TensorRT engine"):
        Segmenter(eng, device="cuda")


def test_engine_version_and_gpu_mismatch_tell_to_rebuild(monkeypatch, labels_art, tmp_path):
    """The sidecar's tensorrt_version / compute_capability are checked before deserializing."""
    from pvtseg.runtime.backends import tensorrt as tb

    class Err:
        cudaSuccess = 0

    props = SimpleNamespace(major=8, minor=7, name=b"Orin")
    fake_cudart = SimpleNamespace(cudaError_t=Err, cudaGetDeviceProperties=lambda i: (0, props),
                                  cudaGetErrorString=lambda e: (0, b"err"), cudaSetDevice=lambda i: (0,))
    monkeypatch.setattr(tb, "trt", SimpleNamespace(__version__="10.3.0.30"))
    monkeypatch.setattr(tb, "cudart", fake_cudart)
    meta = json.loads(labels_art["json"].read_text())
    be = tb.TensorRTBackend.__new__(tb.TensorRTBackend)
    be.path = tmp_path / "m.engine"
    be.device_index = 0
    with pytest.raises(EngineError, match=r"TensorRT 8\.6\.2.*build_engine\.py"):
        be._check_build_target(dict(meta, tensorrt_version="8.6.2", compute_capability="8.7"))
    with pytest.raises(EngineError, match=r"compute capability 7\.2.*\(Orin\) is 8\.7.*build_engine\.py"):
        be._check_build_target(dict(meta, tensorrt_version="10.3.0", compute_capability="7.2"))
    be._check_build_target(dict(meta, tensorrt_version="10.3.0.30", compute_capability="8.7"))  # match: fine
    be._check_build_target(meta)  # no fields: nothing to check


# -- visualize ----------------------------------------------------------------------------------

def test_colorize_uses_sidecar_palette(onnx_seg):
    lab = np.array([[0, 1], [2, 10]], np.uint8)
    col = colorize(lab, onnx_seg.palette)
    for (y, x), c in np.ndenumerate(lab):
        r, g, b = onnx_seg.palette[c]
        assert tuple(col[y, x]) == (b, g, r)
    assert colorize(lab, palette_lut(onnx_seg.palette)).tobytes() == col.tobytes()


def test_blend_alpha():
    f = np.full((4, 4, 3), 100, np.uint8)
    c = np.full((4, 4, 3), 200, np.uint8)
    assert (blend(f, c, 0.0) == 100).all() and (blend(f, c, 1.0) == 200).all()
    assert (blend(f, c, 0.5) == 150).all()


@pytest.mark.parametrize("mode,width", [("overlay", 150), ("mask", 150), ("side-by-side", 300)])
def test_visualizer_modes(onnx_seg, mode, width):
    f = _frame(120, 150)
    lab = onnx_seg(f)
    v = Visualizer(onnx_seg.meta, mode=mode)
    out = v.render(f, lab, fps=12.3, timings=onnx_seg.timings)
    assert out.shape == (120, width, 3) and out.dtype == np.uint8
    assert v.next_mode() != mode
    plain = Visualizer(onnx_seg.meta, mode=mode, legend=False).render(f, lab)
    assert plain.shape == out.shape and not np.array_equal(plain, out)  # legend / text drawn
