"""`pvtseg train`: train a segmentor on your data (GPU(s) or CPU), resumable and deterministic.

    pvtseg train --data ../shared/data/camvid --model pvt_v2_b0_segformer --out runs/b0 \
        [--resume] [--epochs 200] [--crop 256 320] [--batch 8] [--lr 6e-4] [--time-limit-min 90]
    torchrun --nproc_per_node=4 -m pvtseg train --data DIR --batch 16 ...    # 4 processes, 4 frames each

- data: the layout of --data is detected and named in the log: CamVid, Cityscapes
  (labelIds -> 19 trainIds), ADE20K / mmseg folders, or images/ + masks/ + classes.json
  (training/datasets/); every pair is checked once, bad files listed in one error;
- classes: names, palette and ignore index come from the dataset and are stored in every
  checkpoint, so `pvtseg export` / `pvtseg eval` take them from there;
- --init-from: weights in any format load_checkpoint reads (ImageNet backbones, ADE20K
  SegFormer, ...); a head trained for another number of classes is dropped with a note;
- torchrun (training/distributed.py): nccl on GPUs, gloo on CPU; `--batch` is the GLOBAL
  batch (each of N processes takes batch/N of it), BatchNorm synchronised, the loss
  normalised over the global batch, so N processes compute the gradient of 1 process;
  rank 0 logs, validates and writes checkpoints; --resume is exact (per-rank RNG states);
- augmentation: resize to --base-size, random scale (--scale-range, default 0.5-2.0), pad,
  random crop (--crop), horizontal flip, photometric jitter (numpy + OpenCV, datasets/);
- loss: cross-entropy with the dataset's ignore index; `--loss balanced` (default) weights classes by
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

Debugging data-parallel runs: with PVTSEG_DEBUG_GRADS=FILE in the environment, rank 0 saves
the gradients of the first step (after the cross-process average) to FILE as {name: tensor}.
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
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.camvid import IGNORE_INDEX
from ..errors import CheckpointError, ConfigError, PvtsegError
from ..io_utils import atomic_path
from . import distributed as ddp

DEBUG_GRADS_ENV = "PVTSEG_DEBUG_GRADS"

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
            raise ConfigError("WarmupPolyLR needs total_iters or time_limit_s")
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
            raise ConfigError(f"loss must be ce, balanced or ohem, got {mode!r}")
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
        return pix[self._hard(logits, target, valid)].mean()

    @torch.no_grad()
    def _hard(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        prob = torch.softmax(logits, 1).gather(1, target.clamp(0, logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
        p = prob[valid]
        k = min(self.min_kept, p.numel()) - 1
        th = max(self.thresh, float(p.sort().values[k])) if k >= 0 else self.thresh
        keep = valid & (prob < th)
        return keep if keep.any() else valid

    def sum_and_norm(self, logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(sum of the pixel losses, their normaliser), forward() = sum / normaliser: the
        normaliser is the labelled-pixel count (the class-weight sum for "balanced"), so
        data-parallel training can divide by the normaliser of the whole global batch. OHEM's
        hard-pixel threshold stays per process, so there the split is close, not exact."""
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        logits = logits.float()
        valid = target != self.ignore_index
        if self.mode != "ohem":
            weight: Optional[torch.Tensor] = self.weight  # type: ignore[assignment]
            total = F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index, reduction="sum")
            norm = weight[target[valid]].sum() if weight is not None else valid.sum()
            return total, norm.to(total.dtype)
        if not valid.any():
            return logits.sum() * 0.0, logits.new_zeros(())
        keep = self._hard(logits, target, valid)
        pix = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        return pix[keep].sum(), keep.sum().to(pix.dtype)


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
    """Every RNG's state as tensors and plain containers, so a checkpoint holding it loads with
    torch.load(weights_only=True): python's is (version, tuple of ints, gauss), numpy's key
    array becomes an int64 tensor."""
    algorithm, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    st: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"algorithm": str(algorithm), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Dict[str, Any]) -> None:
    random.setstate(st["python"])
    npst = st["numpy"]
    if isinstance(npst, dict):
        npst = (npst["algorithm"], npst["key"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                npst["gauss"])
    np.random.set_state(npst)  # else numpy's own tuple (checkpoints from before RNG states were tensors)
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def plain_state(obj: Any, where: str = "checkpoint") -> Any:
    """`obj` in the types torch.load(weights_only=True) reads back: tensors, numbers, strings,
    None, lists / tuples / dicts of them (a state dict's `_metadata` kept); numpy arrays become
    tensors, numpy scalars Python numbers, paths strings. Anything else raises CheckpointError,
    so pvtseg never writes a checkpoint it could not read back safely."""
    from collections import OrderedDict

    if obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor, torch.dtype, torch.device, torch.Size)):
        return obj
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict, OrderedDict) else {}
        for k, v in obj.items():
            out[plain_state(k, where)] = plain_state(v, f"{where}[{k!r}]")
        if hasattr(obj, "_metadata"):  # module versions, read by load_state_dict
            out._metadata = plain_state(obj._metadata, where)  # type: ignore[attr-defined]
        return out
    if isinstance(obj, (list, tuple)):
        items = [plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise CheckpointError(f"{where} holds a {type(obj).__name__}, which torch.load(weights_only=True) cannot read "
                          "back: store it as tensors or plain Python values")


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    plain = plain_state(state)
    with atomic_path(path) as tmp:
        torch.save(plain, tmp)


def load_training_checkpoint(path: Path) -> Dict[str, Any]:
    """A `pvtseg train` checkpoint, read by the same safe reader as every file a user hands in
    (torch.load(weights_only=True); a file that needs more is refused, never unpickled)."""
    from ..models.formats import TRAINING_FORMAT, is_training_checkpoint, read_checkpoint

    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint {path}. Start without --resume, or point --out at the "
                              "run folder that holds last.pth.")
    try:
        st = read_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f"--resume: {e}. Or start the run over with --overwrite.") from None
    if not is_training_checkpoint(st):
        raise CheckpointError(f"--resume: {path} is not a `pvtseg train` checkpoint (no format {TRAINING_FORMAT!r}); "
                              f"start a new run from its weights with --init-from {path} instead.")
    return st


# ---------------------------------------------------------------------------------------------
# trainer


class Trainer:
    def __init__(self, args: argparse.Namespace):
        self.args = a = args
        self.dist = ddp.info()
        self.rank, self.world, self.is_main = self.dist.rank, self.dist.world, self.dist.main
        if a.threads:
            torch.set_num_threads(a.threads)
        try:
            import cv2

            cv2.setNumThreads(1)
        except ImportError:
            pass
        self.device = self._pick_device()
        self.cuda = self.device.type == "cuda"
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / "train.log"
        seed_everything(a.seed)  # the same seed on every rank: identical initial weights

        self._load_data()
        self._build_model()
        if a.init_from:
            if a.resume:
                raise PvtsegError("--init-from starts a new run from given weights; --resume continues OUT's own "
                                  "run. Pass one of them.")
            self._init_weights(Path(a.init_from))
        # the EMA is only read by validation and checkpoints, both on rank 0
        self.ema = ModelEMA(self.model, a.ema) if a.ema > 0 and self.is_main else None
        if self.rank > 0:  # its own dropout masks; rank 0 keeps the stream of a 1-process run
            torch.manual_seed(int(np.random.SeedSequence([a.seed, self.rank]).generate_state(1)[0]))

        self.epoch, self.iter_in_epoch, self.global_iter = 0, 0, 0
        self.train_seconds, self.best_miou = 0.0, -1.0
        self.history: List[Dict[str, Any]] = []
        if a.resume:
            self._resume(self.out / "last.pth")
        elif (self.out / "last.pth").exists() and not a.overwrite:
            raise PvtsegError(f"{self.out / 'last.pth'} exists: pass --resume to continue that run, or "
                              "--overwrite to start it over.")
        self.net = self._wrap()

    def _pick_device(self) -> torch.device:
        if self.world > 1:  # torchrun: nccl runs on this process's GPU, gloo on the CPU
            if torch.distributed.get_backend() == "nccl":
                return torch.device("cuda", self.dist.local_rank)
            return torch.device("cpu")
        return torch.device(self.args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def _load_data(self) -> None:
        from .datasets import DEFAULT_CACHE, SegTrain, TrainTransform, load_split, open_dataset

        a = self.args
        self.data = open_dataset(a.data)
        self.classes = self.data.classes
        cache = None if a.no_cache else (Path(a.cache_dir) if a.cache_dir else DEFAULT_CACHE)
        if not self.is_main:
            ddp.barrier()  # rank 0 checks every file and fills the cache first; the others read it
        try:
            train = load_split(self.data, "train", cache_dir=cache, limit=a.limit_train, max_decoded_gb=a.max_decoded_gb)
            val = train if a.val_split == "train" else load_split(self.data, a.val_split, cache_dir=cache,
                                                                  max_decoded_gb=a.max_decoded_gb)
        finally:
            if self.is_main:
                ddp.barrier()
        if a.val_frames and a.val_frames < len(val):
            val = val.subset(np.linspace(0, len(val) - 1, a.val_frames).round().astype(int).tolist())
        self.val = val
        self.class_pixels = train.class_pixels
        self.ds = SegTrain(train, TrainTransform(tuple(a.crop), tuple(a.base_size), tuple(a.scale_range),
                                                 flip=not a.no_flip, jitter=not a.no_jitter,
                                                 ignore_index=self.classes.ignore_index,
                                                 num_classes=self.classes.num_classes))
        if a.batch % self.world:
            raise PvtsegError(f"--batch {a.batch} is the global batch over all {self.world} processes: it must be a "
                              f"multiple of {self.world} (each process takes batch/{self.world} frames).")
        if len(self.ds) < a.batch:
            raise PvtsegError(f"--batch {a.batch} is larger than the {len(self.ds)} training frames.")
        self.iters_per_epoch = len(self.ds) // a.batch
        self.total_iters = a.iters or (a.epochs * self.iters_per_epoch if a.epochs else None)
        self.time_limit_s = a.time_limit_min * 60.0 if a.time_limit_min else None
        if not self.total_iters and not self.time_limit_s:
            raise PvtsegError("give --epochs, --iters or --time-limit-min so the schedule has an end.")

    def _build_model(self) -> None:
        from ..models import create_model
        from .datasets import weights_from_counts

        a = self.args
        self.model = create_model(a.model, num_classes=self.classes.num_classes, dropout=a.dropout).to(self.device)
        self.synced_bn = ddp.sync_batchnorm(self.model, self.device) if self.world > 1 else 0
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        weight = None
        if a.loss == "balanced" and self.class_pixels is not None:
            weight = torch.from_numpy(weights_from_counts(self.class_pixels, power=a.balance_power))
        self.class_weight = weight
        self.criterion = SegLoss(a.loss, weight, ignore_index=self.classes.ignore_index, thresh=a.ohem_thresh,
                                 min_kept=a.ohem_min_kept).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, a.wd), lr=a.lr, betas=(0.9, 0.999))
        self.scheduler = WarmupPolyLR(self.optimizer, self.total_iters, warmup_iters=a.warmup_iters,
                                      power=a.power, time_limit_s=self.time_limit_s)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)

    def _wrap(self) -> nn.Module:
        """The module train steps run: DistributedDataParallel under torchrun, else the model."""
        if self.world <= 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        # buffers need no sync at each forward: synchronised BatchNorm keeps running stats equal
        ids = [self.device.index] if self.cuda else None
        # depthwise conv weights (C, 1, 3, 3) get grads whose stride on the size-1 dim differs from
        # the bucket's; a size-1 dim's stride is never used, so DDP's copy is exact and the warning noise
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        try:
            return DistributedDataParallel(self.model, device_ids=ids, forward_sync_buffers=False)
        except TypeError:  # torch before forward_sync_buffers
            return DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)

    def _agree(self, *values: float) -> List[float]:
        """Rank 0's values everywhere (its clock, its validation): every rank takes the same
        decisions about LR, stopping and saving, so no process waits for a collective alone."""
        return ddp.broadcast_floats(values, self.device)

    # -- logging -------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        if not self.is_main:
            return
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
            # what export / eval / --init-from need to know about the classes (plain containers)
            "classes": self.classes.to_checkpoint(),
            "dataset": {"layout": self.data.name, "root": str(self.data.root)},
            "world_size": self.world,
        }

    def _resume(self, path: Path) -> None:
        st = load_training_checkpoint(path)
        if st.get("model_name") != self.args.model:
            raise CheckpointError(f"{path} was trained as {st.get('model_name')!r}, not --model {self.args.model!r}.")
        self._check_resume_classes(st, path)
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
        self._restore_rank_rng(st)
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
        from ..models.formats import load_checkpoint, read_checkpoint, trained_model_name

        if not path.is_file():
            raise CheckpointError(f"--init-from: no file {path}.")
        raw: Any = read_checkpoint(path)  # the safe reader: weights_only, never a pickle fallback
        trained_as = trained_model_name(raw)  # a training checkpoint unwraps to its EMA weights
        if trained_as is not None and trained_as != self.args.model:
            raise CheckpointError(f"--init-from {path} was trained as {trained_as!r}, not --model {self.args.model!r}.")
        report = self._load_init(raw, path, load_checkpoint)
        self.log(f"initialised from {path}" + (f" ({report})" if str(report) else ""))

    def _load_init(self, raw: Any, path: Path, load_checkpoint: Any) -> Any:
        """load_checkpoint, dropping the checkpoint's final layer when it predicts another
        number of classes (ADE20K's 150, a CamVid run's 11, ...) so fine-tuning starts from
        everything else."""
        from ..models.formats import convert_state_dict, unwrap_state_dict

        ours, theirs = self.classes.num_classes, None
        try:
            tensors = convert_state_dict(unwrap_state_dict(raw)).tensors
            for key in ("head.linear_pred.weight", "head.head.conv_seg.weight"):
                if key in tensors:
                    theirs = int(tensors[key].shape[0])
        except CheckpointError:
            pass  # load_checkpoint below says what does not fit
        drop = theirs is not None and theirs != ours
        report = load_checkpoint(self.model, raw, drop_head=drop)
        if drop:
            self.log(f"note: --init-from {path} predicts {theirs} classes, this run {ours} ({self.data.name} "
                     f"classes): its final classification layer is dropped and trained from scratch; the rest "
                     "of the weights are loaded")
        return report

    def _check_resume_classes(self, st: Dict[str, Any], path: Path) -> None:
        saved = st.get("classes")
        if saved and list(saved.get("names", [])) != list(self.classes.names):
            raise CheckpointError(f"{path} was trained on classes {saved.get('names')}, --data {self.data.root} has "
                                  f"{list(self.classes.names)}: resume with the run's dataset, or start a new run "
                                  "with --init-from to fine-tune on these classes.")

    def _restore_rank_rng(self, st: Dict[str, Any]) -> None:
        """Each rank's own RNG (dropout) from the checkpoint; a run resumed with another process
        count keeps its batches and augmentations but not its dropout masks."""
        ranks = st.get("rng_ranks")
        saved_world = int(st.get("world_size", 1))
        if saved_world == self.world:
            if ranks is not None and self.world > 1:
                set_rng_state(ranks[self.rank])
            return
        self.log(f"note: the run was saved with {saved_world} process(es), resumed with {self.world}: batches and "
                 "augmentations continue exactly, dropout randomness does not")
        if self.rank > 0:
            torch.manual_seed(int(np.random.SeedSequence([self.args.seed, self.rank, self.global_iter]).generate_state(1)[0]))

    def save(self, name: str = "last.pth") -> None:
        """Every rank joins (their RNG states go into the file); rank 0 writes."""
        ranks = ddp.gather_objects(rng_state()) if self.world > 1 else None
        if not self.is_main:
            return
        st = self.state()
        if ranks is not None:
            st["rng_ranks"] = ranks
        save_checkpoint(self.out / name, st)

    # -- steps ---------------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        a = self.args
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.cuda):
            logits = self.net(x)
        loss, shown = self._loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._debug_dump_grads()
        if a.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return shown

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, float]:
        """(loss to back-propagate, global-batch mean loss to report). Under torchrun each rank's
        loss is its pixel-loss sum over the global normaliser, times N (DDP averages the N
        gradients): the averaged gradient is the global batch's, whatever the per-rank share of
        labelled pixels."""
        if self.world <= 1:
            loss = self.criterion(logits, y)
            return loss, float(loss.detach())
        total, norm = self.criterion.sum_and_norm(logits, y)
        agg = ddp.all_reduce_sum(torch.stack([norm.detach(), total.detach()]).double())
        denom = max(float(agg[0]), 1e-12)
        return total * (self.world / denom), float(agg[1]) / denom

    def _debug_dump_grads(self) -> None:
        path = os.environ.get(DEBUG_GRADS_ENV)
        if not path or self.global_iter != 0 or not self.is_main:
            return
        scale = float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0
        grads = {n: (p.grad.detach().float() / scale).cpu() for n, p in self.model.named_parameters()
                 if p.grad is not None}
        with atomic_path(Path(path)) as tmp:
            torch.save(grads, tmp)

    def batch_indices(self, epoch: int, it: int) -> np.ndarray:
        perm = np.random.default_rng([self.args.seed, epoch]).permutation(len(self.ds))
        return perm[it * self.args.batch:(it + 1) * self.args.batch]

    def next_batch(self):
        """This rank's share of the global batch (all of it with one process)."""
        idx = ddp.shard(self.batch_indices(self.epoch, self.iter_in_epoch), self.rank, self.world)
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
            self.train_seconds = self._agree(clock())[0]
        self.scheduler.step(self.train_seconds)
        return loss

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> Dict[str, Any]:
        """Val metrics, computed on rank 0; mIoU and pixel accuracy agreed on every rank."""
        from .evaluate import evaluate_split, metrics_from_confusion

        m: Dict[str, Any] = {"miou": float("nan"), "pixel_acc": float("nan")}
        if self.is_main:
            size = tuple(self.args.val_size or self.args.base_size)
            cm = evaluate_split(self.eval_model(), self.val.images, self.val.labels, size, device=self.device,
                                batch_size=self.args.val_batch, num_classes=self.classes.num_classes)
            m = metrics_from_confusion(cm, self.classes.names)
        m["miou"], m["pixel_acc"] = self._agree(m["miou"], m["pixel_acc"])
        return m

    # -- loop ----------------------------------------------------------------------------------
    def _log_start(self) -> None:
        a = self.args
        self.log(f"data: {self.data.describe()}; {len(self.ds)} train / {len(self.val)} val ({a.val_split}) frames")
        procs = (f"{self.world} processes ({torch.distributed.get_backend()}), {a.batch // self.world} frames each, "
                 f"{self.synced_bn} BatchNorm layers synchronised" if self.world > 1 else "1 process")
        self.log(f"start: model {a.model}, {self.classes.num_classes} classes, crop {a.crop[0]}x{a.crop[1]} from "
                 f"{a.base_size[0]}x{a.base_size[1]} scaled {a.scale_range[0]}-{a.scale_range[1]}, batch {a.batch} "
                 f"(global; {procs}), {self.iters_per_epoch} it/epoch, total {self.total_iters or '-'} it, time limit "
                 f"{a.time_limit_min or '-'} min, lr {a.lr}, loss {a.loss}, ema {a.ema}, device {self.device}, "
                 f"threads {torch.get_num_threads()}, host {platform.node()} ({platform.processor() or platform.machine()})")
        if self.class_weight is not None:
            self.log("class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(self.classes.names,
                                                                                 self.class_weight.tolist())))

    def fit(self) -> Dict[str, Any]:
        a = self.args
        if self.global_iter == 0:
            self._log_start()
        t_start = time.time()
        base_seconds = self.train_seconds
        self._last_ckpt_s = self.train_seconds
        stop = self.scheduler.done()
        first_iter = self.global_iter
        from tqdm import tqdm

        while not stop:
            bar = tqdm(total=self.iters_per_epoch, initial=self.iter_in_epoch, desc=f"epoch {self.epoch}",
                       unit="it", disable=a.no_progress or not self.is_main, dynamic_ncols=True, file=sys.stderr,
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
                # train_seconds is rank 0's clock on every rank, so all ranks join the save
                if a.ckpt_every_min and self.train_seconds - self._last_ckpt_s > a.ckpt_every_min * 60:
                    self.save()
                    self._last_ckpt_s = self.train_seconds
            bar.close()
            stop = self._end_epoch(losses, t_epoch, stop, lambda: base_seconds + (time.time() - t_start))
        if not self.scheduler.done():
            self.log(f"paused after {self.global_iter} steps (--stop-after); continue with --resume")
            return {"status": "paused", "steps": self.global_iter, "best_miou": self.best_miou}
        self.log(f"done: {self.global_iter} steps, {self.epoch} epochs, {self.train_seconds / 60:.1f} min, "
                 f"best val mIoU {100 * self.best_miou:.2f}")
        return {"status": "done", "steps": self.global_iter, "best_miou": self.best_miou,
                "minutes": self.train_seconds / 60}

    def _end_epoch(self, losses: List[float], t_epoch: float, stop: bool, clock: Any) -> bool:
        """Close an epoch (or the partial one a pause leaves): validate, record, save. Returns stop."""
        a = self.args
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
            self.train_seconds = self._agree(clock())[0]
            self.scheduler.elapsed_s = self.train_seconds
        self.history.append(rec)
        if self.is_main:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
        val_txt = (f", val mIoU {100 * rec['val_miou']:.2f} pixel acc {100 * rec['val_pixel_acc']:.2f}"
                   f"{' (best)' if rec.get('best') else ''}") if "val_miou" in rec else ""
        self.log(f"epoch {ep}{'' if epoch_done else ' (partial)'}: loss {rec['loss'] if rec['loss'] is None else round(rec['loss'], 4)}, "
                 f"lr {rec['lr']:.3e}, {rec['sec_per_it']} s/it, {rec['minutes']} min{val_txt}")
        if stop or not epoch_done or self.epoch % max(a.save_every, 1) == 0:
            self.save()
            self._last_ckpt_s = self.train_seconds
        if rec.get("best"):
            self.save("best.pth")
        return stop or self.scheduler.done()


# ---------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pvtseg train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default=None,
                    help="dataset folder, layout detected: CamVid (SPLIT/images + SPLIT/labels), Cityscapes "
                         "(leftImg8bit/ + gtFine/), ADE20K (images/training + annotations/training), mmseg "
                         "(img_dir/ + ann_dir/ + classes.json) or generic (images/SPLIT + masks/SPLIT + classes.json: "
                         '{"names": [...], "palette": [[r,g,b],...], "ignore_index": 255, "remap": {"<value>": id}}); '
                         "default ../shared/data/camvid")
    ap.add_argument("--model", default="pvt_v2_b0_segformer")
    ap.add_argument("--out", required=True, help="run folder (train.log, metrics.jsonl, last.pth, best.pth)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    ap.add_argument("--overwrite", action="store_true", help="start over even if OUT/last.pth exists")
    ap.add_argument("--init-from", default=None, metavar="CKPT",
                    help="start from these weights (training checkpoint: its EMA; or any supported format: "
                         "official ImageNet PVT, ADE20K SegFormer, ...) with a fresh optimizer and LR schedule; a "
                         "head for another number of classes is dropped (noted in the log)")
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
    ap.add_argument("--batch", type=int, default=8,
                    help="GLOBAL batch: under torchrun each of the N processes takes batch/N frames of it "
                         "(so results do not depend on N); must be a multiple of N")
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout before the head's classifier")
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
    ap.add_argument("--max-decoded-gb", type=float, default=4.0,
                    help="hold a split decoded in memory (and cache it) up to this size per process; larger "
                         "splits are read from disk at each step")
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
        ddp.init(args.device)  # joins the torchrun process group when WORLD_SIZE > 1
        result = Trainer(args).fit()
        ddp.barrier()  # leave together: no rank tears its connections down under another's feet
    except PvtsegError as e:
        print(f"pvtseg train: {e}", file=sys.stderr)
        return 2
    finally:
        ddp.shutdown()
    return 0 if result.get("status") in ("done", "paused") else 1


if __name__ == "__main__":
    sys.exit(main())
