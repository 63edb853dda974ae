"""torch.distributed for `pvtseg train` under torchrun (one process per GPU, or per CPU share).

    torchrun --nproc_per_node=4 -m pvtseg train --data DIR --batch 16 ...    # 4 GPUs, 4 frames each
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --nproc_per_node=8 -m pvtseg train ...

- backend: nccl when the processes train on CUDA, gloo on the CPU;
- `--batch` is the GLOBAL batch: each of the N processes takes batch/N frames of the same
  global batch a 1-process run would take (the seeded permutation sharded by
  DistributedSampler), so a run's batches, LR recipe and results do not depend on N;
- BatchNorm layers are synchronised over the processes (torch's SyncBatchNorm on GPUs;
  `DistBatchNorm2d` below on the CPU, where SyncBatchNorm refuses to run), so statistics
  are those of the global batch;
- the trainer normalises the loss by the global count of labelled pixels, so the averaged
  gradient equals the gradient of the global batch's mean loss exactly (ce / balanced).
Rank 0 logs, validates and writes checkpoints; all ranks resume from the same file.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from ..errors import ConfigError

# validation runs on rank 0 while the others wait in a collective: give it time
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init(device: Optional[str]) -> Optional[torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1. Returns this process's device
    (cuda:LOCAL_RANK for nccl, cpu for gloo), or None when not launched by torchrun."""
    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return None
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed: run without torchrun.")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s): start at most that "
                              "many processes per node (--nproc_per_node).")
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=TIMEOUT)
    return torch.device("cuda", local) if use_cuda else torch.device("cpu")


def info() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if info().world > 1:
        dist.barrier()


def broadcast_floats(values: Sequence[float], device: torch.device) -> List[float]:
    """Rank 0's values on every rank (decisions that depend on rank 0's clock or validation)."""
    if info().world <= 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return t.tolist()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if info().world > 1:
        dist.all_reduce(t)
    return t


def gather_objects(obj: Any) -> List[Any]:
    """Every rank's `obj`, in rank order (on every rank)."""
    world = info().world
    if world <= 1:
        return [obj]
    out: List[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def shard(global_batch: Sequence[int], rank: int, world: int) -> np.ndarray:
    """This rank's share of one global batch: DistributedSampler over the batch, unshuffled
    (the batch already comes from the seeded permutation), i.e. items rank, rank+world, ..."""
    from torch.utils.data import DistributedSampler

    items = [int(i) for i in global_batch]
    if world <= 1:
        return np.asarray(items, dtype=np.int64)
    sampler: DistributedSampler = DistributedSampler(items, num_replicas=world, rank=rank,  # type: ignore[arg-type]
                                                     shuffle=False, drop_last=True)
    return np.asarray([items[k] for k in sampler], dtype=np.int64)


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with a backward: the gradient of a sum over ranks, seen from any one
    rank's input, is the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        g = grad.clone()
        dist.all_reduce(g)
        return g


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(x)


class DistBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of all processes' samples together.

    The CPU stand-in for torch.nn.SyncBatchNorm (GPU only): mean and variance are summed
    over the process group by an all_reduce with a backward, so the backward pass carries
    each process's share of the gradient of the statistics to all the others. Outside
    training, or with one process, it is plain BatchNorm2d; state dict keys are the same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        dist.all_reduce(count)
        mean = sum_over_ranks(x.sum(dim=(0, 2, 3))) / count
        centred = x - mean.view(1, -1, 1, 1)
        var = sum_over_ranks((centred * centred).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                tracked = self.num_batches_tracked
                if tracked is not None:
                    tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / max(float(tracked or 1), 1.0)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def sync_batchnorm(model: nn.Module, device: torch.device) -> int:
    """Swap every BatchNorm2d for a synchronised one in place (same parameters and buffers);
    returns how many were swapped."""
    swapped = 0
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, (DistBatchNorm2d, nn.SyncBatchNorm)):
            if device.type == "cuda":
                new: nn.Module = nn.SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                                  child.track_running_stats)
            else:
                new = DistBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            if child.affine:  # keep the very Parameter objects (optimizer / EMA references)
                new.weight, new.bias = child.weight, child.bias
            setattr(model, name, new.to(device))
            swapped += 1
        else:
            swapped += sync_batchnorm(child, device)
    return swapped
