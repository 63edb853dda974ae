"""`pvtseg train`: train a segmentor on CamVid (GPU or CPU), resumable and deterministic.

    pvtseg train --data ../shared/data/camvid --model pvt_v2_b0_segformer --out runs/b0 \
        [--resume] [--epochs 200] [--crop 256 320] [--batch 8] [--lr 6e-4] [--time-limit-min 90]

- augmentation: resize to --base-size, random scale (--scale-range, default 0.5-2.0), pad,
  random crop (--crop), horizontal flip, photometric jitter (numpy + OpenCV, data.py);
- loss: cross-entropy with ignore index 11; `--loss balanced` (default) weights classes by
  softened median-frequency balancing, `--loss ohem` keeps the hard pixels only;
- AdamW (no decay on norms / biases / position embeddings), linear warmup, then poly decay
  to 0 at the end of the schedule: --epochs / --iters, or --time-limit-min when given
  (progress = max(iteration share, time share), so a time-boxed run still anneals);
- AMP (fp16) + channels-last on CUDA only; optional EMA of the weights (--ema DECAY);
- a tqdm bar, `OUT/train.log` + `OUT/metrics.jsonl` with loss / LR / val mIoU per epoch;
- checkpoints `OUT/last.pth` (each epoch and every --ckpt-every-min minutes) and
  `OUT/best.pth` (best val mIoU), written atomically, holding model / optimizer /
  scheduler / scaler / EMA / RNG states and the position in the epoch, so `--resume`
  continues exactly where it stopped (same batches, same augmentations).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.camvid import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from ..errors import CheckpointError, PvtsegError
from ..io_utils import atomic_path

# ---------------------------------------------------------------------------------------------
# schedule, loss, EMA


class WarmupPolyLR:
    """Linear warmup then poly decay; progress may be driven by iterations and/or seconds.

    lr(t) = base * warm(t) * max(1 - p, 0) ** power (floored at base * min_lr_ratio), where
    p = max(iter / total_iters, seconds / time_limit_s) and warm ramps from warmup_ratio to 1
    over warmup_iters iterations.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_iters: Optional[int], warmup_iters: int = 0,
                 warmup_ratio: float = 1e-2, power: float = 1.0, min_lr_ratio: float = 0.0,
                 time_limit_s: Optional[float] = None):
        if not total_iters and not time_limit_s:
            raise ValueError("WarmupPolyLR needs total_iters or time_limit_s")
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.total_iters = int(total_iters) if total_iters else None
        self.warmup_iters, self.warmup_ratio = int(warmup_iters), float(warmup_ratio)
        self.power, self.min_lr_ratio = float(power), float(min_lr_ratio)
        self.time_limit_s = float(time_limit_s) if time_limit_s else None
        self.last_iter = 0
        self.elapsed_s = 0.0
        self._apply()

    def progress(self, it: Optional[int] = None, elapsed_s: Optional[float] = None) -> float:
        it = self.last_iter if it is None else it
        elapsed_s = self.elapsed_s if elapsed_s is None else elapsed_s
        p = 0.0
        if self.total_iters:
            p = max(p, it / self.total_iters)
        if self.time_limit_s:
            p = max(p, elapsed_s / self.time_limit_s)
        return p

    def factor(self) -> float:
        f = max(1.0 - self.progress(), 0.0) ** self.power
        f = max(f, self.min_lr_ratio)
        if self.warmup_iters and self.last_iter < self.warmup_iters:
            a = self.last_iter / self.warmup_iters
            f *= self.warmup_ratio + (1.0 - self.warmup_ratio) * a
        return f

    def _apply(self) -> None:
        f = self.factor()
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f

    def step(self, elapsed_s: Optional[float] = None) -> None:
        """Advance one iteration (call after optimizer.step()); sets the next iteration's LR."""
        self.last_iter += 1
        if elapsed_s is not None:
            self.elapsed_s = float(elapsed_s)
        self._apply()

    def done(self) -> bool:
        return self.progress() >= 1.0

    def get_last_lr(self) -> List[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._apply()


class SegLoss(nn.Module):
    """Cross-entropy over stride-4 logits upsampled to the label size; ignore index 11.

    mode "ce": plain; "balanced": per-class weights; "ohem": mean over the hard pixels only
    (true-class probability below `thresh`, at least `min_kept` pixels), as mmseg's OHEM sampler.
    """

    def __init__(self, mode: str = "balanced", weight: Optional[torch.Tensor] = None, ignore_index: int = IGNORE_INDEX,
                 thresh: float = 0.7, min_kept: int = 100_000):
        super().__init__()
        if mode not in ("ce", "balanced", "ohem"):
            raise ValueError(f"loss must be ce, balanced or ohem, got {mode!r}")
        self.mode, self.ignore_index, self.thresh, self.min_kept = mode, ignore_index, thresh, min_kept
        self.register_buffer("weight", weight if mode == "balanced" else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        logits = logits.float()
        if self.mode != "ohem":
            weight: Optional[torch.Tensor] = self.weight  # type: ignore[assignment]
            return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
        pix = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        valid = target != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0
        with torch.no_grad():
            prob = torch.softmax(logits, 1).gather(1, target.clamp(0, logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
            p = prob[valid]
            k = min(self.min_kept, p.numel()) - 1
            th = max(self.thresh, float(p.sort().values[k])) if k >= 0 else self.thresh
            keep = valid & (prob < th)
            if not keep.any():
                keep = valid
        return pix[keep].mean()


class ModelEMA:
    """Exponential moving average of weights (+ copied buffers); decay warms up as (1+n)/(10+n)."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = float(decay), 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        msd = model.state_dict()
        for k, v in self.module.state_dict().items():
            src = msd[k].detach()
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src, alpha=1 - d)
            else:
                v.copy_(src)

    def state_dict(self) -> Dict[str, Any]:
        return {"module": self.module.state_dict(), "decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.decay, self.updates = state["decay"], state["updates"]


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on biases, norm weights, position embeddings / 1-D params."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "norm" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------
# RNG + checkpoints


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> Dict[str, Any]:
    st: Dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Dict[str, Any]) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_checkpoint(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint {path}. Start without --resume, or point --out at the "
                              "run folder that holds last.pth.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read {path}: {e}. Delete it to start over.") from e


# ---------------------------------------------------------------------------------------------
# trainer


class Trainer:
    def __init__(self, args: argparse.Namespace):
        from .datasets import DEFAULT_CACHE, CamVidTrain, TrainTransform, balanced_weights, find_camvid, load_split
        from ..models import create_model

        self.args = a = args
        if a.threads:
            torch.set_num_threads(a.threads)
        try:
            import cv2

            cv2.setNumThreads(1)
        except ImportError:
            pass
        self.device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.cuda = self.device.type == "cuda"
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(a.seed)

        root = find_camvid(a.data)
        cache = None if a.no_cache else (Path(a.cache_dir) if a.cache_dir else DEFAULT_CACHE)
        train = load_split(root, "train", cache_dir=cache, limit=a.limit_train)
        if a.val_split == "train":
            val = train
        else:
            val = load_split(root, a.val_split, cache_dir=cache)
        if a.val_frames and a.val_frames < len(val):
            val = val.subset(np.linspace(0, len(val) - 1, a.val_frames).round().astype(int).tolist())
        self.val = val
        self.ds = CamVidTrain(train, TrainTransform(tuple(a.crop), tuple(a.base_size), tuple(a.scale_range),
                                                    flip=not a.no_flip, jitter=not a.no_jitter))
        if len(self.ds) < a.batch:
            raise PvtsegError(f"--batch {a.batch} is larger than the {len(self.ds)} training frames.")
        self.iters_per_epoch = len(self.ds) // a.batch
        self.total_iters = a.iters or (a.epochs * self.iters_per_epoch if a.epochs else None)
        self.time_limit_s = a.time_limit_min * 60.0 if a.time_limit_min else None
        if not self.total_iters and not self.time_limit_s:
            raise PvtsegError("give --epochs, --iters or --time-limit-min so the schedule has an end.")

        self.model = create_model(a.model, num_classes=NUM_CLASSES).to(self.device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        weight = torch.from_numpy(balanced_weights(train.labels, power=a.balance_power)) if a.loss == "balanced" else None
        self.class_weight = weight
        self.criterion = SegLoss(a.loss, weight, thresh=a.ohem_thresh, min_kept=a.ohem_min_kept).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, a.wd), lr=a.lr, betas=(0.9, 0.999))
        self.scheduler = WarmupPolyLR(self.optimizer, self.total_iters, warmup_iters=a.warmup_iters,
                                      power=a.power, time_limit_s=self.time_limit_s)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)
        self.log_path = self.out / "train.log"
        if a.init_from:
            if a.resume:
                raise PvtsegError("--init-from starts a new run from given weights; --resume continues OUT's own "
                                  "run. Pass one of them.")
            self._init_weights(Path(a.init_from))
        self.ema = ModelEMA(self.model, a.ema) if a.ema > 0 else None

        self.epoch, self.iter_in_epoch, self.global_iter = 0, 0, 0
        self.train_seconds, self.best_miou = 0.0, -1.0
        self.history: List[Dict[str, Any]] = []
        if a.resume:
            self._resume(self.out / "last.pth")
        elif (self.out / "last.pth").exists() and not a.overwrite:
            raise PvtsegError(f"{self.out / 'last.pth'} exists: pass --resume to continue that run, or "
                              "--overwrite to start it over.")

    # -- logging -------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        print(line, flush=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        return {
            "format": "pvtseg-train-v1",
            "model_name": self.args.model,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "rng": rng_state(),
            "epoch": self.epoch,
            "iter_in_epoch": self.iter_in_epoch,
            "global_iter": self.global_iter,
            "train_seconds": self.train_seconds,
            "best_miou": self.best_miou,
            "history": self.history,
            "args": vars(self.args),
        }

    def _resume(self, path: Path) -> None:
        st = load_training_checkpoint(path)
        if st.get("model_name") != self.args.model:
            raise CheckpointError(f"{path} was trained as {st.get('model_name')!r}, not --model {self.args.model!r}.")
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        # the CLI may extend a run: new --epochs / --time-limit-min win over the stored ones
        self.scheduler.total_iters = self.total_iters
        self.scheduler.time_limit_s = self.time_limit_s
        self.scheduler._apply()
        self.scaler.load_state_dict(st["scaler"])
        if self.ema is not None and st.get("ema"):
            self.ema.load_state_dict(st["ema"])
        set_rng_state(st["rng"])
        self.epoch, self.iter_in_epoch = st["epoch"], st["iter_in_epoch"]
        self.global_iter, self.train_seconds = st["global_iter"], st["train_seconds"]
        self.best_miou, self.history = st["best_miou"], st["history"]
        old_args = st.get("args", {})
        changed = {k: (old_args.get(k), v) for k, v in vars(self.args).items()
                   if k not in ("resume", "overwrite") and old_args.get(k) != v}
        if changed:
            self.log("resume with changed options: " + ", ".join(f"{k} {o} -> {n}" for k, (o, n) in changed.items()))
        self.log(f"resumed {path}: epoch {self.epoch} iter {self.iter_in_epoch}/{self.iters_per_epoch}, "
                 f"step {self.global_iter}, {self.train_seconds / 60:.1f} min trained, best val mIoU "
                 f"{100 * max(self.best_miou, 0):.2f}")

    def _init_weights(self, path: Path) -> None:
        """Start from given weights with a fresh optimizer and schedule (fine-tuning, or a new LR
        cycle after a finished run). A pvtseg training checkpoint gives its EMA weights when it has
        them; any other format goes through load_checkpoint (ImageNet backbones included)."""
        from ..models.checkpoints import load_checkpoint, read_checkpoint

        if not path.is_file():
            raise CheckpointError(f"--init-from: no file {path}.")
        try:
            raw: Any = read_checkpoint(path)  # weights_only: any plain weights file
        except CheckpointError:
            # our training checkpoints hold RNG states that weights_only refuses; read them the
            # way --resume does (a file of your own run)
            raw = load_training_checkpoint(path)
        if isinstance(raw, dict) and raw.get("format") == "pvtseg-train-v1":
            if raw.get("model_name") != self.args.model:
                raise CheckpointError(f"--init-from {path} was trained as {raw.get('model_name')!r}, "
                                      f"not --model {self.args.model!r}.")
            raw = raw["ema"]["module"] if raw.get("ema") else raw["model"]
        report = load_checkpoint(self.model, raw)
        self.log(f"initialised from {path}" + (f" ({report})" if str(report) else ""))

    def save(self, name: str = "last.pth") -> None:
        save_checkpoint(self.out / name, self.state())

    # -- steps ---------------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        a = self.args
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.cuda):
            logits = self.model(x)
        loss = self.criterion(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if a.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return float(loss.detach())

    def batch_indices(self, epoch: int, it: int) -> np.ndarray:
        perm = np.random.default_rng([self.args.seed, epoch]).permutation(len(self.ds))
        return perm[it * self.args.batch:(it + 1) * self.args.batch]

    def next_batch(self):
        idx = self.batch_indices(self.epoch, self.iter_in_epoch)
        return self.ds.batch(idx, seed=(self.args.seed, self.epoch))

    def step(self, clock=None) -> float:
        """One training step on the next batch of the epoch; advances counters and the LR."""
        if self.iter_in_epoch >= self.iters_per_epoch:
            self.epoch += 1
            self.iter_in_epoch = 0
        x, y = self.next_batch()
        loss = self.train_step(x, y)
        self.iter_in_epoch += 1
        self.global_iter += 1
        if clock is not None:
            self.train_seconds = clock()
        self.scheduler.step(self.train_seconds)
        return loss

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> Dict[str, Any]:
        from .evaluate import evaluate_split, metrics_from_confusion

        size = tuple(self.args.val_size or self.args.base_size)
        cm = evaluate_split(self.eval_model(), self.val.images, self.val.labels, size, device=self.device,
                            batch_size=self.args.val_batch)
        return metrics_from_confusion(cm, CLASS_NAMES)

    # -- loop ----------------------------------------------------------------------------------
    def fit(self) -> Dict[str, Any]:
        a = self.args
        if self.global_iter == 0:
            self.log(f"start: model {a.model}, {len(self.ds)} train frames, crop {a.crop[0]}x{a.crop[1]} from "
                     f"{a.base_size[0]}x{a.base_size[1]} scaled {a.scale_range[0]}-{a.scale_range[1]}, batch {a.batch}, "
                     f"{self.iters_per_epoch} it/epoch, total {self.total_iters or '-'} it, time limit "
                     f"{a.time_limit_min or '-'} min, lr {a.lr}, loss {a.loss}, ema {a.ema}, device {self.device}, "
                     f"threads {torch.get_num_threads()}, host {platform.node()} ({platform.processor() or platform.machine()})")
            if self.class_weight is not None:
                self.log("class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(CLASS_NAMES, self.class_weight.tolist())))
        t_start = time.time()
        base_seconds = self.train_seconds
        last_ckpt = time.time()
        stop = self.scheduler.done()
        first_iter = self.global_iter
        from tqdm import tqdm

        while not stop:
            bar = tqdm(total=self.iters_per_epoch, initial=self.iter_in_epoch, desc=f"epoch {self.epoch}",
                       unit="it", disable=a.no_progress, dynamic_ncols=True, file=sys.stderr,
                       mininterval=1.0 if sys.stderr.isatty() else 60.0)
            losses: List[float] = []
            t_epoch = time.time()
            while self.iter_in_epoch < self.iters_per_epoch:
                loss = self.step(lambda: base_seconds + (time.time() - t_start))
                if not math.isfinite(loss):
                    self.log(f"loss is {loss} at step {self.global_iter}: stopping; last.pth holds the last good state")
                    return {"status": "diverged"}
                losses.append(loss)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                if a.log_every and self.global_iter % a.log_every == 0:
                    self.log(f"step {self.global_iter} epoch {self.epoch} loss {np.mean(losses[-a.log_every:]):.4f} "
                             f"lr {self.scheduler.get_last_lr()[0]:.3e} {self.train_seconds / 60:.1f} min")
                if self.scheduler.done() or (a.stop_after and self.global_iter - first_iter >= a.stop_after):
                    stop = True
                    break
                if a.ckpt_every_min and time.time() - last_ckpt > a.ckpt_every_min * 60:
                    self.save()
                    last_ckpt = time.time()
            bar.close()
            epoch_done = self.iter_in_epoch >= self.iters_per_epoch
            ep = self.epoch
            if epoch_done:
                self.epoch += 1
                self.iter_in_epoch = 0
            rec: Dict[str, Any] = {"epoch": ep, "step": self.global_iter,
                                   "loss": float(np.mean(losses)) if losses else None,
                                   "lr": self.scheduler.get_last_lr()[0],
                                   "minutes": round(self.train_seconds / 60, 2),
                                   "sec_per_it": round((time.time() - t_epoch) / max(len(losses), 1), 3)}
            if self.scheduler.done() or (a.val_every and epoch_done and self.epoch % a.val_every == 0):
                m = self.validate()
                rec.update(val_miou=m["miou"], val_pixel_acc=m["pixel_acc"])
                if m["miou"] > self.best_miou:
                    self.best_miou = m["miou"]
                    rec["best"] = True
                self.train_seconds = base_seconds + (time.time() - t_start)
                self.scheduler.elapsed_s = self.train_seconds
            self.history.append(rec)
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            val_txt = (f", val mIoU {100 * rec['val_miou']:.2f} pixel acc {100 * rec['val_pixel_acc']:.2f}"
                       f"{' (best)' if rec.get('best') else ''}") if "val_miou" in rec else ""
            self.log(f"epoch {ep}{'' if epoch_done else ' (partial)'}: loss {rec['loss'] if rec['loss'] is None else round(rec['loss'], 4)}, "
                     f"lr {rec['lr']:.3e}, {rec['sec_per_it']} s/it, {rec['minutes']} min{val_txt}")
            if stop or not epoch_done or self.epoch % max(a.save_every, 1) == 0:
                self.save()
                last_ckpt = time.time()
            if rec.get("best"):
                self.save("best.pth")
            if self.scheduler.done():
                stop = True
        if not self.scheduler.done():
            self.log(f"paused after {self.global_iter} steps (--stop-after); continue with --resume")
            return {"status": "paused", "steps": self.global_iter, "best_miou": self.best_miou}
        self.log(f"done: {self.global_iter} steps, {self.epoch} epochs, {self.train_seconds / 60:.1f} min, "
                 f"best val mIoU {100 * self.best_miou:.2f}")
        return {"status": "done", "steps": self.global_iter, "best_miou": self.best_miou,
                "minutes": self.train_seconds / 60}


# ---------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pvtseg train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default=None, help="CamVid folder (default ../shared/data/camvid)")
    ap.add_argument("--model", default="pvt_v2_b0_segformer")
    ap.add_argument("--out", required=True, help="run folder (train.log, metrics.jsonl, last.pth, best.pth)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    ap.add_argument("--overwrite", action="store_true", help="start over even if OUT/last.pth exists")
    ap.add_argument("--init-from", default=None, metavar="CKPT",
                    help="start from these weights (training checkpoint: its EMA; or any supported format) "
                         "with a fresh optimizer and LR schedule")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--iters", type=int, default=0, help="total iterations (overrides --epochs)")
    ap.add_argument("--time-limit-min", type=float, default=0.0,
                    help="stop (and end the LR decay) after this many minutes of training in total")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="leave after N steps in this call (schedule unchanged; continue with --resume)")
    ap.add_argument("--crop", type=int, nargs=2, default=[288, 384], metavar=("H", "W"))
    ap.add_argument("--base-size", type=int, nargs=2, default=[384, 480], metavar=("H", "W"),
                    help="frames are resized to this before random scaling (= inference size)")
    ap.add_argument("--scale-range", type=float, nargs=2, default=[0.5, 2.0], metavar=("LO", "HI"))
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--no-jitter", action="store_true")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--warmup-iters", type=int, default=100)
    ap.add_argument("--power", type=float, default=1.0, help="poly decay power")
    ap.add_argument("--clip-grad", type=float, default=1.0, help="max grad norm (0: off)")
    ap.add_argument("--loss", choices=("ce", "balanced", "ohem"), default="balanced")
    ap.add_argument("--balance-power", type=float, default=0.5, help="median-frequency weights ** this")
    ap.add_argument("--ohem-thresh", type=float, default=0.7)
    ap.add_argument("--ohem-min-kept", type=int, default=100_000)
    ap.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights (0: off), e.g. 0.995")
    ap.add_argument("--val-split", choices=("train", "val", "test"), default="val")
    ap.add_argument("--val-every", type=int, default=1, help="validate every N epochs (0: only at the end)")
    ap.add_argument("--val-frames", type=int, default=0, help="validate on N evenly spaced frames (0: all)")
    ap.add_argument("--val-size", type=int, nargs=2, default=None, metavar=("H", "W"), help="default: --base-size")
    ap.add_argument("--val-batch", type=int, default=4)
    ap.add_argument("--limit-train", type=int, default=None, help="use only the first N training frames")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--save-every", type=int, default=1, help="save last.pth every N epochs (and at the end)")
    ap.add_argument("--ckpt-every-min", type=float, default=10.0, help="also save last.pth this often mid-epoch")
    ap.add_argument("--log-every", type=int, default=0, help="log the running loss every N steps (0: per epoch)")
    ap.add_argument("--cache-dir", default=None, help="decoded-frames cache (default runs/cache)")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for v in list(args.base_size) + list(args.val_size or []):
        if v % 32:
            print(f"pvtseg train: --base-size/--val-size {v} is not a multiple of 32 (the model's stride)",
                  file=sys.stderr)
            return 2
    try:
        result = Trainer(args).fit()
    except PvtsegError as e:
        print(f"pvtseg train: {e}", file=sys.stderr)
        return 2
    return 0 if result.get("status") in ("done", "paused") else 1


if __name__ == "__main__":
    sys.exit(main())
