"""`pvtseg train`: the loop learns (overfits 4 frames), resumes exactly, schedules and losses behave."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from _camvid_synth import REAL_CAMVID, make_synth_camvid
from pvtseg.training import train as T

needs_camvid = pytest.mark.skipif(not (REAL_CAMVID / "train" / "images").is_dir(),
                                  reason="../shared/data/camvid is not present")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _args(out, data, *extra):
    return T.build_parser().parse_args([
        "--data", str(data), "--out", str(out), "--threads", "1", "--no-progress", "--cache-dir",
        str(out) + "_cache", "--ckpt-every-min", "0", *extra])


# ---------------------------------------------------------------------------------------------
# the loop learns


@needs_camvid
def test_overfits_four_frames(tmp_path):
    out = tmp_path / "run"
    t0 = time.time()
    rc = T.main(["--data", str(REAL_CAMVID), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--limit-train", "4", "--val-split", "train", "--base-size", "96", "128", "--crop", "96", "128",
                 "--scale-range", "1", "1", "--no-flip", "--no-jitter", "--batch", "4", "--iters", "100",
                 "--lr", "2e-3", "--warmup-iters", "5", "--loss", "ce", "--val-every", "0", "--save-every", "1000",
                 "--ckpt-every-min", "0", "--threads", "1", "--no-progress", "--seed", "0"])
    assert rc == 0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = recs[-1]
    # evaluated on the same 4 frames at full label resolution (360x480)
    assert final["val_pixel_acc"] > 0.90, final
    assert recs[0]["loss"] > 3 * final["loss"]
    ck = torch.load(out / "last.pth", weights_only=True)
    assert ck["global_iter"] == 100 and (out / "best.pth").is_file()
    assert "val mIoU" in (out / "train.log").read_text()
    print(f"overfit: pixel acc {final['val_pixel_acc']:.3f} in {time.time() - t0:.0f} s")


# ---------------------------------------------------------------------------------------------
# resume


def _tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_resume_restores_exact_state(tmp_path):
    data = make_synth_camvid(tmp_path / "camvid", n=6, h=64, w=96)
    out = tmp_path / "run"
    common = ["--limit-train", "6", "--base-size", "64", "96", "--crop", "64", "64", "--scale-range", "0.75", "1.5",
              "--batch", "2", "--iters", "12", "--warmup-iters", "3", "--ema", "0.9", "--val-every", "0"]
    a = T.Trainer(_args(out, data, *common))
    for _ in range(4):  # crosses an epoch boundary (3 it/epoch)
        a.step()
    a.save()
    saved_opt = torch.load(out / "last.pth", weights_only=True)["optimizer"]
    saved_sched = dict(a.scheduler.state_dict())
    loss_a = a.step()  # the uninterrupted run's 5th step

    b = T.Trainer(_args(out, data, *common, "--resume"))
    assert _tensors_equal(b.optimizer.state_dict(), saved_opt)
    assert b.scheduler.state_dict() == saved_sched
    assert b.scheduler.get_last_lr() == [saved_sched["base_lrs"][i] * b.scheduler.factor() for i in range(2)]
    assert (b.epoch, b.iter_in_epoch, b.global_iter) == (1, 1, 4)
    assert b.ema is not None and b.ema.updates == 4
    loss_b = b.step()
    assert loss_b == loss_a  # same weights, optimizer moments, LR, batch, augmentation and dropout RNG
    assert _tensors_equal(a.model.state_dict(), b.model.state_dict())
    assert b.scheduler.state_dict() == a.scheduler.state_dict()


def test_cli_stop_after_then_resume_finishes(tmp_path):
    data = make_synth_camvid(tmp_path / "camvid", n=4, h=64, w=64)
    out = tmp_path / "run"
    base = ["--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--base-size", "64", "64",
            "--crop", "32", "32", "--batch", "2", "--iters", "6", "--val-every", "0", "--val-frames", "2",
            "--threads", "1", "--no-progress", "--ckpt-every-min", "0"]
    assert T.main(base + ["--stop-after", "3"]) == 0
    ck = torch.load(out / "last.pth", weights_only=True)
    assert ck["global_iter"] == 3 and ck["epoch"] == 1 and ck["iter_in_epoch"] == 1
    assert "paused" in (out / "train.log").read_text()
    # a second start without --resume must not silently overwrite the run
    assert T.main(base) == 2
    assert T.main(base + ["--resume"]) == 0
    ck = torch.load(out / "last.pth", weights_only=True)
    assert ck["global_iter"] == 6
    assert ck["scheduler"]["last_iter"] == 6 and ck["scheduler"]["last_iter"] / ck["scheduler"]["total_iters"] == 1
    for key in ("model", "optimizer", "scheduler", "scaler", "ema", "rng", "epoch", "best_miou"):
        assert key in ck
    assert (out / "best.pth").is_file()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # atomic writes leave no debris


def test_init_from_takes_ema_weights_with_a_fresh_schedule(tmp_path):
    data = make_synth_camvid(tmp_path / "camvid", n=4, h=64, w=64)
    common = ["--limit-train", "4", "--base-size", "64", "64", "--crop", "32", "32", "--batch", "2",
              "--iters", "8", "--warmup-iters", "2", "--ema", "0.9", "--val-every", "0"]
    a = T.Trainer(_args(tmp_path / "a", data, *common))
    for _ in range(3):
        a.step()
    a.save()
    assert not _tensors_equal(a.ema.module.state_dict(), a.model.state_dict())

    b = T.Trainer(_args(tmp_path / "b", data, *common, "--init-from", str(tmp_path / "a" / "last.pth")))
    assert _tensors_equal(b.model.state_dict(), a.ema.module.state_dict())  # EMA, not the raw weights
    assert b.global_iter == 0 and b.scheduler.state_dict()["last_iter"] == 0 and not b.optimizer.state
    assert "initialised from" in (tmp_path / "b" / "train.log").read_text()

    # plain weights files load too; a mismatched model and --resume together are refused clearly
    torch.save(a.model.state_dict(), tmp_path / "w.pth")
    c = T.Trainer(_args(tmp_path / "c", data, *common, "--init-from", str(tmp_path / "w.pth")))
    assert _tensors_equal(c.model.state_dict(), a.model.state_dict())
    with pytest.raises(T.CheckpointError, match="pvt_v2_b0_segformer"):
        T.Trainer(_args(tmp_path / "d", data, *common, "--model", "pvt_v2_b1_segformer",
                        "--init-from", str(tmp_path / "a" / "last.pth")))
    with pytest.raises(T.PvtsegError, match="--resume"):
        T.Trainer(_args(tmp_path / "b", data, *common, "--resume", "--init-from", str(tmp_path / "w.pth")))
    with pytest.raises(T.CheckpointError, match="no file"):
        T.Trainer(_args(tmp_path / "e", data, *common, "--init-from", str(tmp_path / "missing.pth")))


# ---------------------------------------------------------------------------------------------
# pieces


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_poly_schedule():
    opt = _opt(1.0)
    s = T.WarmupPolyLR(opt, total_iters=100, warmup_iters=10, warmup_ratio=0.1, power=1.0)
    assert s.get_last_lr()[0] == pytest.approx(0.1)  # warmup start
    for _ in range(5):
        s.step()
    assert s.get_last_lr()[0] == pytest.approx((0.1 + 0.9 * 0.5) * 0.95)
    for _ in range(45):
        s.step()
    assert s.get_last_lr()[0] == pytest.approx(0.5)  # poly, power 1, half way
    for _ in range(50):
        s.step()
    assert s.get_last_lr()[0] == 0.0 and s.done()


def test_schedule_follows_the_time_budget():
    opt = _opt(2.0)
    s = T.WarmupPolyLR(opt, total_iters=None, time_limit_s=100.0, power=1.0)
    s.step(elapsed_s=25.0)
    assert s.get_last_lr()[0] == pytest.approx(1.5) and not s.done()
    s.step(elapsed_s=100.0)
    assert s.done()
    s2 = T.WarmupPolyLR(_opt(2.0), total_iters=10, time_limit_s=1000.0)
    s2.step(elapsed_s=1.0)  # iteration share (0.1) dominates the time share (0.001)
    assert s2.get_last_lr()[0] == pytest.approx(1.8)


def test_losses_ignore_index_and_ohem():
    torch.manual_seed(0)
    logits = torch.randn(2, 11, 8, 8)
    target = torch.randint(0, 11, (2, 32, 32))
    target[:, :4] = 11
    ce = T.SegLoss("ce")(logits, target)
    up = torch.nn.functional.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)
    assert ce.item() == pytest.approx(torch.nn.functional.cross_entropy(up, target, ignore_index=11).item())
    # all-ignore target -> zero loss, not NaN
    assert T.SegLoss("ohem")(logits, torch.full((2, 32, 32), 11)).item() == 0.0
    ohem = T.SegLoss("ohem", thresh=0.7, min_kept=10)(logits, target)
    assert ohem.item() >= ce.item() * 0.99  # hard pixels only: at least the mean loss
    w = torch.ones(11)
    w[0] = 5.0
    assert T.SegLoss("balanced", w)(logits, target).item() != pytest.approx(ce.item())


def test_no_decay_groups_and_ema():
    from pvtseg.models import create_model

    m = create_model("pvt_v2_b0_segformer", num_classes=11)
    g = T.param_groups(m, 0.01)
    assert g[0]["weight_decay"] == 0.01 and g[1]["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in g[0]["params"])
    assert sum(p.numel() for grp in g for p in grp["params"]) == sum(p.numel() for p in m.parameters())
    ema = T.ModelEMA(m, decay=0.5)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    ema.update(m)  # decay warms up: min(0.5, 2/11)
    d = 2 / 11
    p0 = next(iter(m.parameters()))
    e0 = next(iter(ema.module.parameters()))
    assert torch.allclose(e0, (p0 - 1) * d + p0 * (1 - d), atol=1e-6)


def test_bad_data_path_gives_clear_error(tmp_path, capsys):
    rc = T.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--iters", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope" in err and "does not exist" in err and "--data" in err


def test_deterministic_batches(tmp_path):
    data = make_synth_camvid(tmp_path / "camvid", n=4, h=64, w=64)
    args = _args(tmp_path / "run", data, "--base-size", "64", "64", "--crop", "32", "32", "--batch", "2",
                 "--iters", "4")
    t1 = T.Trainer(args)
    x1, y1 = t1.next_batch()
    args.overwrite = True
    t2 = T.Trainer(args)
    x2, y2 = t2.next_batch()
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (2, 3, 32, 32) and y1.dtype == torch.int64
    assert np.isin(y1.numpy(), np.arange(12)).all()


def test_ship_model_writes_weights_and_sidecar(tmp_path):
    from pvtseg import meta
    from pvtseg.models import create_model
    from pvtseg.training.ship_model import ship

    data = make_synth_camvid(tmp_path / "camvid", n=2, h=64, w=64)
    out = tmp_path / "run"
    assert T.main(["--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--base-size", "64", "64",
                   "--crop", "32", "32", "--batch", "2", "--iters", "1", "--ema", "0.9", "--val-frames", "1",
                   "--threads", "1", "--no-progress"]) == 0
    pth = ship(out / "last.pth", tmp_path / "models" / "m.pth", size=(384, 480))
    m = meta.read(pth)
    assert m["arch"] == "pvt_v2_b0_segformer" and m["input"]["height"] == 384 and m["input"]["width"] == 480
    assert m["output"] == {"name": "logits", "kind": "logits", "dtype": "float32", "stride": 4}
    assert m["class_names"][3] == "Road" and m["palette"][3] == [128, 64, 128]
    import hashlib

    assert m["checkpoint_sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()
    sd = torch.load(pth, weights_only=True)
    ck = torch.load(out / "last.pth", weights_only=True)
    assert all(torch.equal(sd[k], v) for k, v in ck["ema"]["module"].items())  # EMA weights shipped
    create_model("pvt_v2_b0_segformer", num_classes=11).load_state_dict(sd)


def test_ship_model_takes_the_classes_the_run_recorded(tmp_path):
    from pvtseg import meta
    from pvtseg.models import create_model
    from pvtseg.models.formats.reader import TRAINING_FORMAT
    from pvtseg.training.ship_model import ship

    sd = create_model("pvt_v2_b0_segformer", num_classes=3).state_dict()
    ck = {"format": TRAINING_FORMAT, "model_name": "pvt_v2_b0_segformer", "model": sd, "ema": None,
          "classes": {"names": ["floor", "wall", "person"], "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                      "ignore_index": 255},
          "dataset": {"layout": "folder", "root": "/data/x"}}
    torch.save(ck, tmp_path / "last.pth")
    m = meta.read(ship(tmp_path / "last.pth", tmp_path / "m.pth", size=(64, 96)))
    assert m["num_classes"] == 3 and m["class_names"] == ["floor", "wall", "person"]
    assert m["palette"][2] == [7, 8, 9] and m["ignore_index"] == 255 and m["dataset"] == "folder"


# ---------------------------------------------------------------------------------------------
# your own data: classes travel, fine-tuning across class counts


@needs_camvid
def test_generic_folder_run_records_its_classes_and_export_takes_them(tmp_path):
    import onnxruntime as ort

    import _tiny_datasets as TD
    from pvtseg import meta
    from pvtseg.export import cli as export_cli
    from pvtseg.models import create_model

    data = TD.make_generic(tmp_path / "mine", 2, 1)
    out = tmp_path / "run"
    assert T.main(["--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--base-size", "64", "64",
                   "--crop", "64", "64", "--batch", "2", "--iters", "1", "--val-frames", "1", "--threads", "1",
                   "--no-progress"]) == 0
    log = (out / "train.log").read_text()
    assert "data: generic layout" in log and "start: model pvt_v2_b0_segformer, 5 classes" in log
    ck = torch.load(out / "last.pth", weights_only=True)  # plain containers only
    assert ck["classes"] == {"names": TD.MERGED_NAMES, "palette": TD.MERGED_PALETTE, "ignore_index": 255}
    assert ck["dataset"]["layout"] == "generic" and ck["model"]["head.linear_pred.weight"].shape[0] == 5

    # export with neither --model nor --num-classes nor --sidecar: the checkpoint names them
    base = tmp_path / "export" / "mine"
    assert export_cli.main(["--checkpoint", str(out / "last.pth"), "--out", str(base), "--height", "64",
                            "--width", "64", "--formats", "onnx", "--no-verify"]) == 0
    m = meta.read(base.with_suffix(".onnx"))
    assert (m["arch"], m["num_classes"]) == ("pvt_v2_b0_segformer", 5)
    assert m["class_names"] == TD.MERGED_NAMES and m["palette"] == TD.MERGED_PALETTE
    # ... and the graph holds the trained weights: ONNX Runtime agrees with the checkpoint in PyTorch
    model = create_model("pvt_v2_b0_segformer", num_classes=5, output="logits").eval()
    model.load_state_dict(ck["model"])
    x = torch.randn(1, 3, 64, 64)
    sess = ort.InferenceSession(str(base.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    labels = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).argmax(1).numpy()
    assert (labels == ref).mean() > 0.99


@needs_camvid
def test_init_from_a_head_with_another_class_count_drops_it(tmp_path):
    import _tiny_datasets as TD

    common = ["--base-size", "64", "64", "--crop", "32", "32", "--batch", "2", "--iters", "2", "--val-every", "0"]
    a = T.Trainer(_args(tmp_path / "a", make_synth_camvid(tmp_path / "camvid", n=2, h=64, w=64), *common))
    a.step()
    a.save()
    b = T.Trainer(_args(tmp_path / "b", TD.make_generic(tmp_path / "mine", 2, 1), *common,
                        "--init-from", str(tmp_path / "a" / "last.pth")))
    log = (tmp_path / "b" / "train.log").read_text()
    assert "predicts 11 classes, this run 5 (generic classes): its final classification layer is dropped" in log
    sa, sb = a.model.state_dict(), b.model.state_dict()
    kept = [k for k in sa if not k.startswith("head.linear_pred.")]
    assert len(kept) > 100 and all(torch.equal(sa[k], sb[k]) for k in kept)
    assert sb["head.linear_pred.weight"].shape[0] == 5 and b.criterion.ignore_index == 255
    # a resume of this 5-class run on the 11-class data is refused, naming both class lists
    b.save()
    with pytest.raises(T.CheckpointError, match="was trained on classes"):
        T.Trainer(_args(tmp_path / "b", tmp_path / "camvid", *common, "--resume"))
