"""`pvtseg eval`: confusion matrix and mIoU against hand-computed numbers; the CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from _camvid_synth import REAL_CAMVID, colour_frame, make_synth_camvid
from pvtseg.training import evaluate as E
from pvtseg.models.camvid import MEAN, STD


def test_confusion_matrix_by_hand():
    target = np.array([[0, 0, 1, 1],
                       [2, 2, 11, 11]])
    pred = np.array([[0, 1, 1, 1],
                     [2, 0, 2, 0]])
    cm = E.confusion_matrix(pred, target, num_classes=3, ignore_index=11)
    # rows: truth, cols: prediction; the two ignore pixels are not counted
    assert cm.tolist() == [[1, 1, 0],
                           [0, 2, 0],
                           [1, 0, 1]]
    m = E.metrics_from_confusion(cm, ["a", "b", "c"])
    # IoU = TP / (TP + FP + FN): a 1/(1+1+1), b 2/(2+1+0), c 1/(1+0+1)
    assert m["per_class_iou"]["a"] == pytest.approx(1 / 3)
    assert m["per_class_iou"]["b"] == pytest.approx(2 / 3)
    assert m["per_class_iou"]["c"] == pytest.approx(1 / 2)
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["pixels"] == 6


def test_metrics_on_a_known_11_class_matrix():
    cm = np.zeros((11, 11), np.int64)
    np.fill_diagonal(cm, 90)
    cm[3, 4] = 10   # 10 road pixels called pavement
    cm[10, :] = 0   # bicyclist absent from labels and predictions -> left out of the mean
    m = E.metrics_from_confusion(cm)
    iou = [1.0] * 10
    iou[3] = 90 / 100          # road: FN 10
    iou[4] = 90 / 100          # pavement: FP 10
    assert m["per_class_iou"]["10"] is None
    assert m["miou"] == pytest.approx(sum(iou) / 10)
    assert m["pixel_acc"] == pytest.approx(900 / 910)
    # an absent class that is *predicted* counts with IoU 0
    cm[0, 10] = 5
    m = E.metrics_from_confusion(cm)
    assert m["per_class_iou"]["10"] == 0.0 and not math.isnan(m["miou"])


class ColourModel(nn.Module):
    """Recovers the class from the synthetic frame's colour; returns stride-4 logits like a segmentor."""

    def forward(self, x):
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        red = ((x * std + mean)[:, 0] * 255).round()
        cls = torch.stack([(red - (c * 20) % 256).abs() for c in range(11)], 1)
        logits = -cls
        return torch.nn.functional.avg_pool2d(logits, 4) if x.shape[-1] % 4 == 0 else logits


def test_evaluate_split_perfect_model_and_flip():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.repeat(rng.integers(0, 11, (3, 4, 6)), 16, 1), 16, 2).astype(np.uint8)
    labels[0, :16] = 11  # ignored
    images = np.stack([colour_frame(l) for l in labels])
    cm = E.evaluate_split(ColourModel(), images, labels, size=(64, 96), batch_size=2)
    assert cm.sum() == (labels != 11).sum()
    m = E.metrics_from_confusion(cm)
    assert m["pixel_acc"] > 0.97  # only block borders blur through the stride-4 upsampling
    cm_flip = E.evaluate_split(ColourModel(), images, labels, size=(64, 96), flip=True)
    assert E.metrics_from_confusion(cm_flip)["pixel_acc"] > 0.97
    cm_slide = E.evaluate_split(ColourModel(), images, labels, size=(64, 96), sliding=(32, 48))
    assert E.metrics_from_confusion(cm_slide)["pixel_acc"] > 0.97


def test_confusion_png(tmp_path):
    import cv2

    cm = np.arange(121).reshape(11, 11)
    p = E.confusion_png(cm, tmp_path / "cm.png", title="t")
    img = cv2.imread(str(p))
    assert img is not None and img.shape[0] > 11 * 40 and img.shape[1] > 11 * 40


def test_eval_cli_end_to_end(tmp_path, capsys):
    from pvtseg.models import create_model

    data = make_synth_camvid(tmp_path / "camvid", n=3, h=64, w=96)
    torch.manual_seed(0)
    model = create_model("pvt_v2_b0_segformer", num_classes=11)
    ck = tmp_path / "w.pth"
    torch.save(model.state_dict(), ck)
    out = tmp_path / "eval"
    rc = E.main(["--model", "pvt_v2_b0_segformer", "--checkpoint", str(ck), "--data", str(data), "--split", "val",
                 "--size", "64", "96", "--out", str(out), "--no-cache", "--threads", "1", "--flip"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["frames"] == 3 and m["size"] == [64, 96] and m["flip"] is True
    assert len(m["per_class_iou"]) == 11 and 0.0 <= m["miou"] <= 1.0
    assert np.array(m["confusion"]).sum() == m["pixels"]
    assert (out / "confusion.png").is_file()
    assert "mIoU" in capsys.readouterr().out


def test_eval_cli_clear_errors(tmp_path, capsys):
    rc = E.main(["--checkpoint", str(tmp_path / "missing.pth"), "--data", str(tmp_path / "nodata")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
    data = make_synth_camvid(tmp_path / "camvid", n=1, h=32, w=32)
    rc = E.main(["--checkpoint", str(tmp_path / "missing.pth"), "--data", str(data), "--size", "32", "32",
                 "--no-cache"])
    assert rc == 2
    assert "missing.pth does not exist" in capsys.readouterr().err
    rc = E.main(["--checkpoint", "x.pth", "--data", str(data), "--size", "30", "32"])
    assert rc == 2 and "multiples of 32" in capsys.readouterr().err


@pytest.mark.skipif(not (REAL_CAMVID / "train" / "images").is_dir(), reason="../shared/data/camvid is not present")
def test_eval_on_a_generic_folder_uses_the_runs_classes(tmp_path, capsys):
    import _tiny_datasets as TD
    from pvtseg.training import train as T

    data = TD.make_generic(tmp_path / "mine", 2, 2)
    run = tmp_path / "run"
    assert T.main(["--data", str(data), "--out", str(run), "--no-cache", "--base-size", "64", "64", "--crop", "64",
                   "64", "--batch", "2", "--iters", "1", "--val-frames", "1", "--threads", "1", "--no-progress"]) == 0
    capsys.readouterr()
    rc = E.main(["--checkpoint", str(run / "last.pth"), "--data", str(data), "--split", "val", "--size", "64", "64",
                 "--out", str(tmp_path / "ev"), "--no-cache", "--threads", "1"])  # no --model: the run's
    assert rc == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert list(m["per_class_iou"]) == TD.MERGED_NAMES and m["dataset"] == "generic"
    assert m["model"] == "pvt_v2_b0_segformer" and m["frames"] == 2
    # every labelled val pixel is counted once, the ignored ones (mask value 0 -> 255) not at all
    expected = TD.expected_labels("generic", "val", 2)
    assert m["pixels"] == sum(int((v != 255).sum()) for v in expected.values())
    assert "pvt_v2_b0_segformer on generic val (2 frames at 64x64" in capsys.readouterr().out
    # data with another number of classes is refused, not silently mis-scored
    cam = make_synth_camvid(tmp_path / "camvid", n=1, h=64, w=64)
    rc = E.main(["--checkpoint", str(run / "last.pth"), "--data", str(cam), "--split", "val", "--size", "64", "64",
                 "--no-cache"])
    assert rc == 2 and "was trained for 5 classes" in capsys.readouterr().err
