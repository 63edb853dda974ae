"""Generate the C++ tests' inputs: a TorchScript artifact + sidecar, real CamVid frames
(saved losslessly as PNG so both sides see the same pixels) and the Python reference labels.

    python3 cpp/tests/make_test_data.py --out build/cpp/test_data

The reference is `pvtseg.runtime.Segmenter` when that module exists; otherwise (and as a
cross-check) the preprocessing contract of python/pvtseg/meta.py computed here:
BGR uint8 -> cv2.resize(INTER_LINEAR) to (width, height) -> RGB -> /255 -> (x - mean) / std
-> NCHW float32 -> model -> labels at input size -> cv2.resize(INTER_NEAREST_EXACT, as the
runtime does) to the frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

import cv2  # noqa: E402
import torch  # noqa: E402

from pvtseg import meta as meta_mod  # noqa: E402
from pvtseg.models import create_model  # noqa: E402

# The Python runtime maps labels back with pixel-centre nearest (INTER_NEAREST_EXACT).
NEAREST = getattr(cv2, "INTER_NEAREST_EXACT", cv2.INTER_NEAREST)

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
CAMVID_PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
                  [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]


def export_artifact(out_base: Path, arch: str, height: int, width: int, seed: int) -> Path:
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=len(CAMVID_CLASSES), output="labels").eval()
    try:
        from pvtseg.export import export_model  # the export issue's API, when present
    except ImportError:
        export_model = None
    if export_model is not None:
        paths = export_model(model, out=str(out_base), arch=arch, height=height, width=width,
                             formats=("torchscript",), output="labels", verify=False)
        ts = Path(paths["torchscript"])
        # Give the test model CamVid's names/colours if export wrote defaults.
        m = meta_mod.read(ts)
        if m["num_classes"] == len(CAMVID_CLASSES):
            m["class_names"], m["palette"] = CAMVID_CLASSES, CAMVID_PALETTE
            meta_mod.write(ts, m)
        print(f"make_test_data: exported {ts} with pvtseg.export.export_model")
        return ts
    ts = out_base.with_suffix(".ts")
    with torch.no_grad():
        torch.jit.script(model).save(str(ts))
    m = meta_mod.make_meta(arch=arch, num_classes=len(CAMVID_CLASSES), height=height, width=width,
                           output_kind="labels", output_dtype="uint8", class_names=CAMVID_CLASSES,
                           palette=CAMVID_PALETTE)
    meta_mod.write(ts, m)
    print(f"make_test_data: exported {ts} with torch.jit.script (pvtseg.export not present yet)")
    return ts


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
    with torch.inference_mode():
        out = module(t)
    if m["output"]["kind"] == "logits":
        if out.shape[-2:] != (h, w):
            out = torch.nn.functional.interpolate(out.float(), size=(h, w), mode="bilinear", align_corners=False)
        out = out.argmax(1)
    labels = out.reshape(out.shape[-2], out.shape[-1]).to(torch.uint8).numpy()
    fh, fw = frame_bgr.shape[:2]
    if labels.shape != (fh, fw):
        labels = cv2.resize(labels, (fw, fh), interpolation=NEAREST)
    return labels


def runtime_segmenter(ts: Path):
    try:
        from pvtseg.runtime import Segmenter
    except ImportError:
        return None
    try:
        return Segmenter(str(ts), device="cpu")
    except TypeError:
        return Segmenter(str(ts))


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
    (out / "ref").mkdir(parents=True, exist_ok=True)
    ts = export_artifact(out / "model", args.arch, args.height, args.width, args.seed)
    m = meta_mod.read(ts)

    images = sorted((args.camvid / "test" / "images").glob("*.jpg"))
    if not images:
        print(f"make_test_data: no CamVid frames under {args.camvid}/test/images", file=sys.stderr)
        return 1
    # Spread the picks over both sequences (0001TP and Seq05VD).
    step = max(1, len(images) // args.frames)
    picks = images[::step][: args.frames]
    frames: dict[str, np.ndarray] = {}
    for p in picks:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            print(f"make_test_data: cannot read {p}", file=sys.stderr)
            return 1
        frames[p.stem] = img
    # Two geometries per CamVid frame:
    #  - a centre crop of 2x the network input (320x256 for 160x128): the nearest-neighbour
    #    way back has no ties, so every OpenCV build maps it the same -> asserted >= 99.9%;
    #  - the full 480x360 frame (non-integer scale back; both runtimes use INTER_NEAREST,
    #    which every OpenCV build computes the same way) -> asserted >= 99.9%.
    # Plus one odd size (333x251, INTER_AREA-downscaled) -> asserted >= 99.9%.
    cases: list[tuple[str, np.ndarray, float]] = []
    for name, img in frames.items():
        h, w = img.shape[:2]
        ch, cw = min(h, 2 * args.height), min(w, 2 * args.width)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        cases.append((f"{name}_crop{cw}x{ch}", np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw]), 0.999))
        cases.append((name, img, 0.999))
    first = next(iter(frames.values()))
    cases.append(("odd_size_333x251", cv2.resize(first, (333, 251), interpolation=cv2.INTER_AREA), 0.999))
    # The clip for the demo test: consecutive frames (Seq05VD plays as a driving clip).
    clip = [p for p in images if p.name.startswith("Seq05VD")][:12] or images[:12]

    module = torch.jit.load(str(ts)).eval()
    seg = runtime_segmenter(ts)
    ref_name = "pvtseg.runtime.Segmenter" if seg is not None else "the preprocessing contract (meta.py)"
    lines = []
    for name, img, min_agree in cases:
        contract = contract_reference(module, m, img)
        ref = contract
        if seg is not None:
            ref = np.asarray(seg(img), dtype=np.uint8)
            agree = float((ref == contract).mean())
            print(f"make_test_data: {name}: runtime vs contract agreement {agree:.4%}")
        cv2.imwrite(str(out / "frames" / f"{name}.png"), img)
        cv2.imwrite(str(out / "ref" / f"{name}.png"), ref)
        classes = np.unique(ref).tolist()
        print(f"make_test_data: {name}: {img.shape[1]}x{img.shape[0]}, reference classes {classes}")
        lines.append(f"{name} {min_agree}")
    (out / "cases.txt").write_text("\n".join(lines) + "\n")
    (out / "clip.txt").write_text("\n".join(str(p) for p in clip) + "\n")
    (out / "reference.txt").write_text(ref_name + "\n")
    print(f"make_test_data: {len(lines)} cases, reference = {ref_name}, artifact {ts}, "
          f"{time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
