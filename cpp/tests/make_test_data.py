"""Generate the C++ tests' inputs: TorchScript artifacts + sidecars, real CamVid frames
(saved losslessly as PNG so both sides see the same pixels) and the Python reference labels.

    python3 cpp/tests/make_test_data.py --out build/cpp/test_data

One random-weights model (pvt_v2_b0_segformer at 128x160), exported with
pvtseg.export.export_model three ways:
    model.ts          output "labels"     (argmax in the graph, uint8 ids at the input size)
    model_logits.ts   output "logits"     (float32 logits at the input size, stride 1)
    model_logits4.ts  output "logits_4x"  (float32 logits at 1/4 of the input size, stride 4)
The reference labels (ref/, ref_logits/, ref_logits4/) come from pvtseg.runtime.Segmenter,
the runtime the C++ library must agree with, and are cross-checked here against an
independent statement of the output contract (../shared/ARCHITECTURE.md) in torch:
    BGR uint8 -> cv2.resize(INTER_LINEAR) to (width, height) -> RGB -> /255 -> (x - mean) / std
    -> NCHW float32 -> model; labels: cv2.resize(INTER_NEAREST) to the frame (the runtime's
    choice: identical in every OpenCV build); logits: F.interpolate(bilinear,
    align_corners=False) to the frame, then argmax.
Also writes, for the engine cache's ctest: model_sha256.txt (hashlib) and
engine_cache_ref.txt, the key and file name python/pvtseg/runtime/engine_cache.py gives
model.ts standing in for an .onnx (the key hashes the file's bytes), so the C++ cache is
checked against the Python one it shares engines with.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

import cv2  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pvtseg import meta as meta_mod  # noqa: E402
from pvtseg.export import export_model  # noqa: E402
from pvtseg.models import camvid, create_model  # noqa: E402
from pvtseg.runtime import Segmenter  # noqa: E402

# artifact base name -> (export output mode, reference folder)
ARTIFACTS = {"model": ("labels", "ref"), "model_logits": ("logits", "ref_logits"),
             "model_logits4": ("logits_4x", "ref_logits4")}
MIN_CONTRACT_AGREEMENT = 0.999


def export_artifacts(out: Path, arch: str, height: int, width: int, seed: int) -> Dict[str, Path]:
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=camvid.NUM_CLASSES).eval()
    paths = {}
    for name, (output, _) in ARTIFACTS.items():
        written = export_model(model, out=str(out / name), arch=arch, height=height, width=width,
                               formats=("torchscript",), output=output, verify=False, log=lambda *_: None)
        paths[name] = Path(written["torchscript"])
        print(f"make_test_data: exported {paths[name]} (output {output})")
    return paths


def contract_reference(module: torch.jit.ScriptModule, m: dict, frame_bgr: np.ndarray) -> np.ndarray:
    inp = m["input"]
    h, w = inp["height"], inp["width"]
    x = frame_bgr
    if x.shape[:2] != (h, w):
        x = cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)
    if inp["channel_order"] == "RGB":
        x = x[:, :, ::-1]
    x = x.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(inp["mean"], np.float32)) / np.asarray(inp["std"], np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    fh, fw = frame_bgr.shape[:2]
    with torch.inference_mode():
        out = module(t)
        if m["output"]["kind"] == "logits":
            out = F.interpolate(out.float(), size=(fh, fw), mode="bilinear", align_corners=False).argmax(1)
    labels = out.reshape(out.shape[-2], out.shape[-1]).to(torch.uint8).numpy()
    if labels.shape != (fh, fw):
        labels = cv2.resize(labels, (fw, fh), interpolation=cv2.INTER_NEAREST)
    return labels


def load_frames(camvid_root: Path, count: int) -> Tuple[Dict[str, np.ndarray], List[Path]]:
    images = sorted((camvid_root / "test" / "images").glob("*.jpg"))
    if not images:
        raise SystemExit(f"make_test_data: no CamVid frames under {camvid_root}/test/images")
    # Spread the picks over both sequences (0001TP and Seq05VD).
    step = max(1, len(images) // count)
    frames = {}
    for p in images[::step][:count]:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"make_test_data: cannot read {p}")
        frames[p.stem] = img
    # The clip for the demo test: consecutive frames (Seq05VD plays as a driving clip).
    clip = [p for p in images if p.name.startswith("Seq05VD")][:12] or images[:12]
    return frames, clip


def make_cases(frames: Dict[str, np.ndarray], height: int, width: int) -> List[Tuple[str, np.ndarray]]:
    """Per CamVid frame: a centre crop of 2x the network input (320x256) and the full
    480x360 frame; plus two odd sizes, one downscaled (333x251) and one upscaled (641x479)."""
    cases = []
    for name, img in frames.items():
        h, w = img.shape[:2]
        ch, cw = min(h, 2 * height), min(w, 2 * width)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        cases.append((f"{name}_crop{cw}x{ch}", np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw])))
        cases.append((name, img))
    first = next(iter(frames.values()))
    cases.append(("odd_size_333x251", cv2.resize(first, (333, 251), interpolation=cv2.INTER_AREA)))
    cases.append(("odd_size_641x479", cv2.resize(first, (641, 479), interpolation=cv2.INTER_LINEAR)))
    return cases


def write_references(out: Path, paths: Dict[str, Path], cases: List[Tuple[str, np.ndarray]]) -> None:
    for name, path in paths.items():
        ref_dir = out / ARTIFACTS[name][1]
        ref_dir.mkdir(parents=True, exist_ok=True)
        m = meta_mod.read(path)
        module = torch.jit.load(str(path)).eval()
        seg = Segmenter(str(path), device="cpu")
        for case, img in cases:
            ref = np.asarray(seg(img), dtype=np.uint8)
            agree = float((ref == contract_reference(module, m, img)).mean())
            print(f"make_test_data: {name} {case} {img.shape[1]}x{img.shape[0]}: runtime vs contract "
                  f"{agree:.4%}, classes {np.unique(ref).tolist()}")
            if agree < MIN_CONTRACT_AGREEMENT:
                raise SystemExit(f"make_test_data: pvtseg.runtime.Segmenter disagrees with the output contract on "
                                 f"{name} / {case} ({agree:.4%}); fix the Python runtime first")
            cv2.imwrite(str(ref_dir / f"{case}.png"), ref)


# The target the engine cache reference is computed for (no TensorRT needed for the key).
CACHE_TARGET = {"trt": "10.3.0.30", "cc": "8.7", "precision": "fp16"}
CACHE_DYNAMIC = {"batch": [1, 8], "height": [64, 256], "width": [96, 320]}


def write_engine_cache_reference(out: Path, stand_in: Path) -> None:
    """Lines "<case> <key> <engine file name>" for a static and a dynamic sidecar."""
    from pvtseg.runtime import engine_cache as ec

    lines = []
    for case, dynamic in (("static", None), ("dynamic", CACHE_DYNAMIC)):
        m = copy.deepcopy(meta_mod.read(stand_in))
        m["input"]["dynamic"] = dynamic
        key = ec.cache_key(ec.onnx_digest(stand_in), CACHE_TARGET["trt"], CACHE_TARGET["cc"],
                           CACHE_TARGET["precision"], ec.shape_profile(m))
        name = ec.engine_path_for(stand_in, key, CACHE_TARGET["trt"], CACHE_TARGET["cc"], CACHE_TARGET["precision"]).name
        lines.append(f"{case} {key} {name}\n")
    (out / "engine_cache_ref.txt").write_text("".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--camvid", type=Path, default=ROOT.parent / "shared" / "data" / "camvid",
                    help="CamVid root (default ../shared/data/camvid beside the project)")
    ap.add_argument("--arch", default="pvt_v2_b0_segformer")
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--frames", type=int, default=4, help="CamVid test frames to use")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out: Path = args.out
    (out / "frames").mkdir(parents=True, exist_ok=True)
    paths = export_artifacts(out, args.arch, args.height, args.width, args.seed)
    frames, clip = load_frames(args.camvid, args.frames)
    cases = make_cases(frames, args.height, args.width)
    for case, img in cases:
        cv2.imwrite(str(out / "frames" / f"{case}.png"), img)
    write_references(out, paths, cases)
    (out / "cases.txt").write_text("".join(f"{case} {MIN_CONTRACT_AGREEMENT}\n" for case, _ in cases))
    (out / "clip.txt").write_text("\n".join(str(p) for p in clip) + "\n")
    (out / "reference.txt").write_text("pvtseg.runtime.Segmenter (cross-checked against the output contract)\n")
    (out / "model_sha256.txt").write_text(hashlib.sha256(paths["model"].read_bytes()).hexdigest() + "\n")
    write_engine_cache_reference(out, paths["model"])
    print(f"make_test_data: {len(cases)} cases x {len(paths)} artifacts in {out}, {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
