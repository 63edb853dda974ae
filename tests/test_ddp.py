"""torchrun on the CPU (gloo, 2 processes): the first step's gradient equals a 1-process run on
the same global batch, and --resume under DDP continues exactly.

Each run is a real `python -m torch.distributed.run --nproc_per_node=2 -m pvtseg train` in a
subprocess (127.0.0.1, a free port, bounded by a timeout). The model is the smallest one
(pvt_v2_b0_segformer, 64x64 crops, global batch 2 = 1 frame per process); its SegFormer head
has a BatchNorm, so the gradients only agree because BatchNorm is synchronised over the
processes and the loss is normalised over the global batch (each alone is off by 1e-3..1e-1).
Dropout is off (each rank draws its own masks by design); that each rank's RNG, which dropout
draws from, resumes exactly is checked on the per-rank RNG states the checkpoints hold.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

import _tiny_datasets as TD
from pvtseg.training import train as T

pytestmark = TD.needs_camvid
RUN_TIMEOUT_S = 150


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return TD.make_generic(tmp_path_factory.mktemp("ddp") / "generic", n_train=4, n_val=2)


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _common(data, out, *extra):
    return ["--data", str(data), "--out", str(out), "--model", "pvt_v2_b0_segformer", "--base-size", "64", "96",
            "--crop", "64", "64", "--batch", "2", "--threads", "1", "--no-progress", "--no-cache",
            "--val-every", "0", "--val-frames", "1", "--ckpt-every-min", "0", *extra]


def _torchrun(args, env_extra=None) -> str:
    env = {k: v for k, v in os.environ.items() if k != T.DEBUG_GRADS_ENV}
    env.update(OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "pvtseg", "train", *args]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish in {RUN_TIMEOUT_S} s: {(e.stdout or '')[-2000:]}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    return out


# dropout off: its masks are per process by design (each rank draws its own), all else must agree
TRAIN = ["--iters", "4", "--warmup-iters", "1", "--ema", "0.9", "--scale-range", "0.75", "1.25", "--dropout", "0",
         "--loss", "balanced"]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """4 steps in one go on 2 processes, rank 0 saving the first step's gradient."""
    out = tmp_path_factory.mktemp("straight")
    log = _torchrun(_common(data, out / "run", *TRAIN), {T.DEBUG_GRADS_ENV: str(out / "grads.pth")})
    return out, log


def test_two_processes_compute_the_one_process_gradient(data, straight, tmp_path, monkeypatch):
    out, log = straight
    monkeypatch.setenv(T.DEBUG_GRADS_ENV, str(tmp_path / "g1.pth"))
    one_step = [a if a != "4" else "1" for a in TRAIN]  # the first gradient does not depend on --iters
    assert T.main(_common(data, tmp_path / "one", *one_step)) == 0
    assert "2 processes (gloo), 1 frames each, 1 BatchNorm layers synchronised" in log
    assert "generic layout" in log
    g1 = torch.load(tmp_path / "g1.pth", weights_only=True)
    g2 = torch.load(out / "grads.pth", weights_only=True)
    assert g1.keys() == g2.keys() and len(g1) > 100
    assert max(float(g.abs().max()) for g in g1.values()) > 1e-2  # a real gradient, not zeros
    worst = max((float((g1[k] - g2[k]).abs().max()), k) for k in g1)
    assert worst[0] < 1e-5, f"largest difference {worst[0]:.3g} in {worst[1]}"
    # only rank 0 writes: one log line per message
    assert (out / "run" / "train.log").read_text().count("start: model") == 1


def test_resume_under_torchrun_is_exact(data, straight, tmp_path):
    _torchrun(_common(data, tmp_path / "split", *TRAIN, "--stop-after", "2"))
    log = _torchrun(_common(data, tmp_path / "split", *TRAIN, "--resume"))
    assert "resumed" in log
    a = torch.load(straight[0] / "run" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pth", weights_only=True)
    assert a["global_iter"] == b["global_iter"] == 4 and b["world_size"] == 2
    diff = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not diff, f"{len(diff)} tensors differ, e.g. {diff[:3]}"
    assert all(torch.equal(a["ema"]["module"][k], v) for k, v in b["ema"]["module"].items())
    assert all(torch.equal(a["optimizer"]["state"][i]["exp_avg_sq"], s["exp_avg_sq"])
               for i, s in b["optimizer"]["state"].items())
    # each rank's own RNG (what its dropout draws from) continued exactly across the restart
    assert len(b["rng_ranks"]) == 2 and not torch.equal(b["rng_ranks"][0]["torch"], b["rng_ranks"][1]["torch"])
    for r in range(2):
        assert torch.equal(a["rng_ranks"][r]["torch"], b["rng_ranks"][r]["torch"])
    assert a["classes"]["names"] == TD.MERGED_NAMES
