"""Checkpoint formats: detection, conversion round trips, strictness, and errors that say what to do."""

from __future__ import annotations

import argparse
import http.server
import pickle
import threading
from pathlib import Path

import pytest
import torch

from _pvt_helpers import backbone_part, randomize_, to_mmseg, to_official, to_timm
from pvtseg.errors import CheckpointError, CheckpointNotFoundError, DownloadError
from pvtseg.models import create_model, load_checkpoint
from pvtseg.models import zoo
from pvtseg.models.formats import FORMATS, detect_format, read_checkpoint

X64 = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _model(name, seed, **kw):
    return randomize_(create_model(name, **kw).eval(), seed=seed)


def _same_outputs(a, b, x=X64):
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def _save(obj, tmp_path, name="ckpt.pth", **kw):
    path = tmp_path / name
    torch.save(obj, path, **kw)
    return path


# ----------------------------------------------------------------------------------------------
# Round trips: write each format from a model's weights, load it, identical outputs
# ----------------------------------------------------------------------------------------------
ROUND_TRIPS = [
    # (id, model name, model kwargs, writer(state_dict) -> checkpoint object, expected format)
    ("pvtseg-classifier", "pvt_v2_b0", {}, lambda sd: sd, "pvtseg"),
    ("pvtseg-segmentor", "pvt_v2_b0_fpn", {"num_classes": 7}, lambda sd: {"model": sd, "epoch": 3}, "pvtseg"),
    ("pvtseg-v1-segmentor", "pvt_v1_tiny_segformer", {"num_classes": 5}, lambda sd: sd, "pvtseg"),
    ("official-v2", "pvt_v2_b0", {}, lambda sd: to_official(sd), "pvt-official"),
    ("official-v2-li", "pvt_v2_b2_li", {}, lambda sd: {"model": to_official(sd)}, "pvt-official"),
    ("official-v1", "pvt_v1_tiny", {}, lambda sd: {"model": to_official(sd)}, "pvt-official"),
    ("official-mit", "mit_b0", {}, lambda sd: to_official(sd), "pvt-official"),
    ("mmseg-fpn-v1", "pvt_v1_tiny_fpn", {"num_classes": 150},
     lambda sd: {"meta": {"CLASSES": ("wall",) * 150}, "state_dict": to_mmseg(sd)}, "mmseg"),
    ("mmseg-fpn-v2", "pvt_v2_b0_fpn", {"num_classes": 150}, lambda sd: {"state_dict": to_mmseg(sd)}, "mmseg"),
    ("mmseg-segformer", "mit_b0_segformer", {"num_classes": 150},
     lambda sd: {"state_dict": to_mmseg(sd), "optimizer": {}}, "mmseg"),
    ("timm", "pvt_v2_b0", {}, lambda sd: to_timm(sd), "timm-pvt-v2"),
    ("ddp-prefix", "pvt_v2_b0", {}, lambda sd: {"model": {"module." + k: v for k, v in sd.items()}}, "pvtseg"),
]


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=[c[0] for c in ROUND_TRIPS])
def test_format_round_trip(case, tmp_path):
    _, name, kw, writer, fmt = case
    src = _model(name, seed=1, **kw)
    path = _save(writer(src.state_dict()), tmp_path)
    dst = _model(name, seed=2, **kw)
    assert not _same_outputs(src, dst)
    report = load_checkpoint(dst, path)
    assert report.format == fmt
    assert report.ok, str(report)
    assert _same_outputs(src, dst)
    if "segformer" in name and fmt == "mmseg":
        assert [k for k, _ in report.dropped] == ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]


def test_formats_are_detected_from_keys_alone():
    sd = create_model("pvt_v2_b0").state_dict()
    assert detect_format(sd) == "pvtseg"
    assert detect_format(to_official(sd)) == "pvt-official"
    assert detect_format(to_timm(sd)) == "timm-pvt-v2"
    assert set(FORMATS) >= {"pvtseg", "pvt-official", "mmseg", "hf-pvt", "hf-pvt-v2", "hf-segformer",
                            "hf-segformer-5", "timm-pvt-v2"}


def test_deit_style_checkpoint_with_argparse_namespace_loads(tmp_path):
    """The official v1 releases come from a DeiT-style trainer that also pickles its args."""
    src = _model("pvt_v2_b0", seed=1)
    path = _save({"model": to_official(src.state_dict()), "args": argparse.Namespace(lr=1e-3, model="x"),
                  "epoch": 299}, tmp_path)
    dst = _model("pvt_v2_b0", seed=2)
    assert load_checkpoint(dst, path).ok
    assert _same_outputs(src, dst)


def test_legacy_torch_save_format_loads(tmp_path):
    src = _model("pvt_v2_b0", seed=1)
    path = _save(to_official(src.state_dict()), tmp_path, _use_new_zipfile_serialization=False)
    dst = _model("pvt_v2_b0", seed=2)
    load_checkpoint(dst, path)
    assert _same_outputs(src, dst)


def test_safetensors_file_loads(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    src = _model("pvt_v2_b0", seed=1)
    path = tmp_path / "w.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in to_official(src.state_dict()).items()}, str(path))
    dst = _model("pvt_v2_b0", seed=2)
    assert load_checkpoint(dst, path).format == "pvt-official"
    assert _same_outputs(src, dst)


# ----------------------------------------------------------------------------------------------
# Backbone-only checkpoints into segmentors (the common case)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,head", [("pvt_v2_b0", "fpn"), ("pvt_v1_tiny", "segformer"), ("mit_b0", "segformer")])
def test_classification_checkpoint_into_segmentor(name, head, tmp_path):
    cls = _model(name, seed=1)
    path = _save({"model": to_official(cls.state_dict())}, tmp_path)
    seg = create_model(f"{name}_{head}", num_classes=11).eval()
    report = load_checkpoint(seg, path)  # strict: the absent head is expected, reported, not an error
    dropped = {k for k, _ in report.dropped}
    assert {"head.weight", "head.bias"} <= dropped
    if name.startswith("pvt_v1"):
        assert {"cls_token", "norm.weight", "norm.bias"} <= dropped
    assert report.missing and all(k.startswith("head.") for k in report.missing)
    assert ("head.linear_pred.weight" if head == "segformer" else "head.head.conv_seg.weight") in report.missing
    assert not report.unexpected
    assert any("backbone-only" in n for n in report.notes)
    with torch.no_grad():
        for a, b in zip(cls.forward_features(X64), seg.backbone.forward_features(X64)):
            assert torch.equal(a, b)


def test_segmentation_checkpoint_into_classifier_drops_the_head(tmp_path):
    seg = _model("pvt_v2_b0_fpn", seed=1, num_classes=150)
    path = _save({"state_dict": to_mmseg(seg.state_dict())}, tmp_path)
    cls = create_model("pvt_v2_b0").eval()
    report = load_checkpoint(cls, path)
    assert any(k.startswith("decode_head.") for k, _ in report.dropped)
    assert report.missing == ["head.weight", "head.bias"]
    with torch.no_grad():
        for a, b in zip(seg.backbone.forward_features(X64), cls.forward_features(X64)):
            assert torch.equal(a, b)


def test_create_model_with_checkpoint(tmp_path):
    src = _model("pvt_v2_b0_segformer", seed=1, num_classes=11)
    path = _save(src.state_dict(), tmp_path)
    dst = create_model("pvt_v2_b0_segformer", num_classes=11, checkpoint=path).eval()
    assert _same_outputs(src, dst)


# ----------------------------------------------------------------------------------------------
# PVT v1 position embeddings on another grid
# ----------------------------------------------------------------------------------------------
def test_v1_checkpoint_grid_is_adopted(tmp_path):
    """224-trained weights into an img_size=512 model: the model takes the checkpoint's 56x56 grid,
    so at 512 input it interpolates exactly like the official model does at run time."""
    ref = _model("pvt_v1_tiny_fpn", seed=1, num_classes=11)  # img_size 224: grid 56x56
    path = _save({"state_dict": to_mmseg(ref.state_dict())}, tmp_path)
    big = create_model("pvt_v1_tiny_fpn", num_classes=11, img_size=512).eval()
    assert big.backbone.stages[0].pos_embed.shape == (1, 128 * 128, 64)
    report = load_checkpoint(big, path)
    assert big.backbone.stages[0].pos_embed.shape == (1, 56 * 56, 64)
    assert big.backbone.stages[3].pos_embed.shape == (1, 7 * 7 + 1, 512)
    assert any("56x56" in n for n in report.notes)
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        assert torch.equal(ref(x), big(x))


def test_v1_pos_embed_interpolation_matches_official_rule():
    """Official segmentation code: F.interpolate(pos.reshape(1, H0, W0, C).permute(0, 3, 1, 2),
    size=(H, W), mode='bilinear') for every stage, the class slot of stage 4 excluded."""
    import torch.nn.functional as F

    m = _model("pvt_v1_tiny", seed=3)
    stage = m.stages[1]
    pos = stage.pos_embed
    ref = F.interpolate(pos.reshape(1, 28, 28, -1).permute(0, 3, 1, 2), size=(12, 20), mode="bilinear",
                        align_corners=False).reshape(1, -1, 240).permute(0, 2, 1)
    assert torch.equal(stage.spatial_pos_embed(12, 20), ref)


# ----------------------------------------------------------------------------------------------
# Mismatches and strictness
# ----------------------------------------------------------------------------------------------
def test_num_classes_mismatch_says_how_to_fix(tmp_path):
    src = _model("pvt_v2_b0_fpn", seed=1, num_classes=150)
    path = _save({"state_dict": to_mmseg(src.state_dict())}, tmp_path)
    dst = create_model("pvt_v2_b0_fpn", num_classes=11).eval()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(dst, path)
    msg = str(e.value)
    assert "head.head.conv_seg.weight" in msg and "(150, 128, 1, 1)" in msg and "(11, 128, 1, 1)" in msg
    assert "num_classes=150" in msg and "drop_head=True" in msg
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())  # untouched

    report = load_checkpoint(dst, path, drop_head=True)
    assert {k for k, _ in report.dropped} == {"decode_head.conv_seg.weight", "decode_head.conv_seg.bias"}
    assert report.missing == ["head.head.conv_seg.weight", "head.head.conv_seg.bias"]
    with torch.no_grad():
        assert torch.equal(src.head.neck(src.backbone.forward_features(X64))[0],
                           dst.head.neck(dst.backbone.forward_features(X64))[0])

    dst2 = create_model("pvt_v2_b0_fpn", num_classes=11, checkpoint=path, drop_head=True)
    assert dst2.num_classes == 11


def test_wrong_architecture_suggests_the_right_one(tmp_path):
    path = _save({"model": to_official(create_model("pvt_v2_b1").state_dict())}, tmp_path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(create_model("pvt_v2_b0_segformer"), path)
    assert "pvt_v2_b1_segformer" in str(e.value) and "shape mismatch" in str(e.value)
    # MiT vs PVT v2: same dims and depths, other MLP ratios.
    path = _save({"model": to_official(create_model("mit_b0").state_dict())}, tmp_path, "mit.pth")
    with pytest.raises(CheckpointError, match="mit_b0"):
        load_checkpoint(create_model("pvt_v2_b0"), path)


def test_head_kind_mismatch(tmp_path):
    src = _model("pvt_v2_b0_fpn", seed=1, num_classes=11)
    path = _save(src.state_dict(), tmp_path)
    dst = create_model("pvt_v2_b0_segformer", num_classes=11).eval()
    with pytest.raises(CheckpointError, match="Semantic FPN head.*_fpn"):
        load_checkpoint(dst, path)
    report = load_checkpoint(dst, path, strict=False)
    assert any("SegFormer" in n or "backbone only" in n for n in report.notes)
    assert "head.linear_pred.weight" in report.missing


def test_strict_missing_and_unexpected_keys_are_named(tmp_path):
    sd = to_official(_model("pvt_v2_b0", seed=1).state_dict())
    del sd["block2.1.attn.kv.weight"]
    sd["block9.0.extra.weight"] = torch.zeros(1)
    path = _save(sd, tmp_path)
    dst = create_model("pvt_v2_b0").eval()
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(dst, path)
    assert "stages.1.blocks.1.attn.kv.weight" in str(e.value) and "block9.0.extra.weight" in str(e.value)
    assert "strict=False" in str(e.value)
    report = load_checkpoint(dst, path, strict=False)
    assert report.missing == ["stages.1.blocks.1.attn.kv.weight"]
    assert report.unexpected == ["block9.0.extra.weight"]
    assert not report.ok and "missing 1" in str(report)


def test_deeper_checkpoint_is_named(tmp_path):
    path = _save(create_model("pvt_v2_b3").state_dict(), tmp_path)
    with pytest.raises(CheckpointError, match="look like pvt_v2_b3"):
        load_checkpoint(create_model("pvt_v2_b2"), path)


# ----------------------------------------------------------------------------------------------
# Bad files
# ----------------------------------------------------------------------------------------------
class NotAStateDict:
    def __init__(self):
        self.x = 1


def test_missing_file():
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_checkpoint(create_model("pvt_v2_b0"), "/nonexistent/pvt_v2_b0.pth")
    with pytest.raises(FileNotFoundError):  # also a built-in FileNotFoundError
        create_model("pvt_v2_b0", checkpoint="/nonexistent/pvt_v2_b0.pth")


def test_folder_without_checkpoint(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="model.safetensors"):
        load_checkpoint(create_model("pvt_v2_b0"), tmp_path)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_file(tmp_path, zip_format):
    path = _save(create_model("pvt_v2_b0").state_dict(), tmp_path, _use_new_zipfile_serialization=zip_format)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(create_model("pvt_v2_b0"), path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(create_model("pvt_v2_b0"), path)


def test_truncated_safetensors(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    path = tmp_path / "w.safetensors"
    safetensors.save_file(dict(create_model("pvt_v2_b0").state_dict()), str(path))
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(path)


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump(NotAStateDict(), f, protocol=2)
    with pytest.raises(CheckpointError, match="NotAStateDict"):
        load_checkpoint(create_model("pvt_v2_b0"), path)
    path.write_bytes(pickle.dumps(NotAStateDict(), protocol=4))  # opcodes torch's unpickler rejects first
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(create_model("pvt_v2_b0"), path)
    path2 = _save({"model": NotAStateDict()}, tmp_path, "evil2.pth")
    with pytest.raises(CheckpointError, match="NotAStateDict.*weights_only"):
        load_checkpoint(create_model("pvt_v2_b0"), path2)


@pytest.mark.parametrize("obj,match", [([1, 2, 3], "found list"), ({"epoch": 3, "lr": 0.1}, "keys epoch, lr"),
                                       ({"state_dict": {"a": 1}}, "not a checkpoint")])
def test_not_a_state_dict(tmp_path, obj, match):
    path = _save(obj, tmp_path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(create_model("pvt_v2_b0"), path)


def test_plain_pickle_and_text_are_not_checkpoints(tmp_path):
    p1 = tmp_path / "list.pkl"
    p1.write_bytes(pickle.dumps([1, 2, 3]))
    p2 = tmp_path / "notes.txt"
    p2.write_text("hello, not a checkpoint\n")
    for p in (p1, p2):
        with pytest.raises(CheckpointError, match="checkpoint"):
            load_checkpoint(create_model("pvt_v2_b0"), p)


def test_unrecognised_layout_lists_the_formats():
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(create_model("pvt_v2_b0"), {"conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(1)})
    msg = str(e.value)
    assert "unrecognised checkpoint layout" in msg and "conv1.weight" in msg
    for fmt in ("pvt-official", "mmseg", "hf-segformer", "timm-pvt-v2"):
        assert fmt in msg


# ----------------------------------------------------------------------------------------------
# Official weights registry and download
# ----------------------------------------------------------------------------------------------
def test_weights_registry_matches_the_models():
    from pvtseg.models.complexity import model_complexity

    assert set(zoo.WEIGHTS) == {f"pvt_v2_b{i}" for i in range(6)} | {"pvt_v2_b2_li"} | {
        f"pvt_v1_{s}" for s in ("tiny", "small", "medium", "large")}
    for name, w in zoo.WEIGHTS.items():
        assert w.url.startswith("https://github.com/whai362/PVT/releases/download/")
        assert w.params == model_complexity(name, with_flops=False).params, name
        mib = float(w.readme_size.rstrip("M"))
        assert abs(w.size_bytes / 2**20 - mib) <= 1.0, (name, w.size_bytes, mib)
    assert zoo.weights_for("pvt_v2_b2_fpn") is zoo.WEIGHTS["pvt_v2_b2"]
    assert zoo.weights_for("mit_b0") is None


def test_download_unknown_name_suggests():
    with pytest.raises(KeyError, match="pvt_v2_b2"):
        zoo.download("pvt_v2_b22")


def test_download_offline_fails_clearly(tmp_path, monkeypatch):
    w = zoo.WEIGHTS["pvt_v2_b0"]
    monkeypatch.setitem(zoo.WEIGHTS, "pvt_v2_b0", zoo.Weights(w.model, "http://127.0.0.1:9/pvt_v2_b0.pth",
                                                              w.params, w.top1, w.readme_size))
    with pytest.raises(DownloadError) as e:
        zoo.download("pvt_v2_b0", tmp_path, timeout=5)
    msg = str(e.value)
    assert "127.0.0.1:9" in msg and "by hand" in msg and "checkpoint=" in msg
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
    monkeypatch.setenv("PVTSEG_OFFLINE", "1")
    with pytest.raises(DownloadError, match="PVTSEG_OFFLINE"):
        zoo.download("pvt_v2_b0", tmp_path)


def _serve(directory: Path):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(directory), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_then_load(tmp_path, monkeypatch):
    """A local server stands in for GitHub: download -> atomic rename -> load_checkpoint."""
    src = _model("pvt_v2_b0", seed=1)
    served = tmp_path / "served"
    served.mkdir()
    _save(to_official(src.state_dict()), served, "pvt_v2_b0.pth")
    server = _serve(served)
    try:
        w = zoo.WEIGHTS["pvt_v2_b0"]
        url = f"http://127.0.0.1:{server.server_address[1]}/pvt_v2_b0.pth"
        monkeypatch.setitem(zoo.WEIGHTS, "pvt_v2_b0", zoo.Weights(w.model, url, w.params, w.top1, w.readme_size))
        seen = []
        path = zoo.download("pvt_v2_b0", tmp_path / "cache", progress=lambda done, total: seen.append(done))
        assert path == tmp_path / "cache" / "pvt_v2_b0.pth" and seen
        assert sorted(p.name for p in path.parent.iterdir()) == ["pvt_v2_b0.pth"]
        dst = create_model("pvt_v2_b0_segformer", checkpoint=path).eval()
        with torch.no_grad():
            assert torch.equal(src.forward_features(X64)[3], dst.backbone.forward_features(X64)[3])
        # A second call reuses the file; a wrong-sized answer is refused.
        assert zoo.download("pvt_v2_b0", tmp_path / "cache") == path
        (served / "pvt_v2_b0.pth").write_bytes(b"<html>login</html>")
        with pytest.raises(DownloadError, match="not the checkpoint"):
            zoo.download("pvt_v2_b0", tmp_path / "other", overwrite=True)
        assert not (tmp_path / "other" / "pvt_v2_b0.pth").exists()
    finally:
        server.shutdown()


# ----------------------------------------------------------------------------------------------
# Other layouts: any model's own state_dict(), and formats registered by other backbone families
# ----------------------------------------------------------------------------------------------
def test_own_layout_of_any_model_loads():
    """A model whose keys no built-in format knows (another backbone family) still loads its own
    state_dict(), recognised from the model's keys."""
    def make(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()

    src, dst = make(1), make(2)
    report = load_checkpoint(dst, src.state_dict())
    assert report.format == "pvtseg" and report.ok
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_register_format_plugs_in_a_layout():
    from pvtseg.models import formats as ck

    def detect(sd):
        return any(k.startswith("toy::") for k in sd)

    def convert(sd):
        return {"backbone." + k[len("toy::"):]: v for k, v in sd.items() if k.startswith("toy::")}, \
            [(k, "toy extra") for k in sd if not k.startswith("toy::")]

    ck.register_format("toy", "a test layout", detect, convert)
    try:
        src = _model("pvt_v2_b0", seed=1)
        sd = {"toy::" + k: v for k, v in src.state_dict().items()}
        sd["optimizer_step"] = torch.zeros(1)
        dst = _model("pvt_v2_b0", seed=2)
        report = load_checkpoint(dst, sd)
        assert report.format == "toy" and report.ok and report.dropped == [("optimizer_step", "toy extra")]
        assert _same_outputs(src, dst)
        assert "toy" in str(report)
    finally:
        ck.unregister_format("toy")
