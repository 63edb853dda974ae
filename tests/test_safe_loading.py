"""One safe path for every checkpoint a user hands in (issue 13).

- Malicious pickles (a plain pickle and a torch.save zip whose pickle would run os.system /
  open(marker, 'w') when unpickled) through every entry point that reads a checkpoint:
  read_checkpoint, load_checkpoint, create_model(checkpoint=), `pvtseg export --checkpoint`,
  `pvtseg eval --checkpoint`, `pvtseg train --init-from` and `--resume`. Each raises (or, for a
  CLI, prints) a typed CheckpointError and the marker never appears. A control run proves the
  files really are malicious: unpickled the unsafe way, they create their marker.
- Malformed .safetensors headers: every case a typed CheckpointError, before any tensor or
  large buffer is allocated; the safetensors library (the independent reference) refuses the
  same files, and reads a valid file to the same tensors as pvtseg.
- `pvtseg train` checkpoints load with torch.load(weights_only=True) and nothing else; their RNG
  states restore numpy / python / torch exactly; eval / export / create_model take their EMA.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
import torch

from _camvid_synth import make_synth_camvid
from pvtseg.errors import CheckpointError
from pvtseg.models import create_model, load_checkpoint
from pvtseg.models.formats import read_checkpoint

MODEL = "pvt_v2_b0_segformer"


# ---------------------------------------------------------------------------------------------
# Malicious pickles
# ---------------------------------------------------------------------------------------------
class _RunsShell:
    """Unpickling calls os.system('touch <marker>')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class _OpensFile:
    """Unpickling calls open(marker, 'w')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _evil_files(folder, marker):
    """{kind: path}: plain pickles and torch.save zips carrying each payload."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, payload in (("system", _RunsShell(marker)), ("open", _OpensFile(marker))):
        files[f"pickle-{name}"] = folder / f"{name}.pkl"
        files[f"pickle-{name}"].write_bytes(pickle.dumps({"model": payload, "w": 1}, protocol=2))
        files[f"zip-{name}"] = folder / f"{name}.pth"
        torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": payload}, files[f"zip-{name}"])
    return files


KINDS = ["pickle-system", "pickle-open", "zip-system", "zip-open"]


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    return _evil_files(tmp_path / "evil", marker), marker


@pytest.mark.parametrize("kind", KINDS)
def test_control_the_payloads_really_run_code(tmp_path, kind):
    """Unpickled the unsafe way, each file creates its marker: the tests below can fail."""
    marker = tmp_path / "control_marker"
    path = _evil_files(tmp_path / "control", marker)[kind]
    if kind.startswith("pickle"):
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def _refusal(path) -> str:
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    return str(e.value)


@pytest.mark.parametrize("kind", KINDS)
def test_library_entry_points_refuse_malicious_pickles(evil, kind):
    files, marker = evil
    path = files[kind]
    msg = _refusal(path)
    assert str(path) in msg
    if kind.startswith("zip"):  # torch's own unpickler names the refused global
        assert ("posix.system" in msg or "io.open" in msg) and "could run code" in msg
    model = create_model(MODEL, num_classes=11)
    with pytest.raises(CheckpointError):
        load_checkpoint(model, path)
    with pytest.raises(CheckpointError):
        create_model(MODEL, num_classes=11, checkpoint=path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pickle-system", "zip-open"])
def test_export_and_eval_clis_refuse_malicious_pickles(evil, kind, tmp_path, capsys):
    from pvtseg.export import cli as export_cli
    from pvtseg.training import evaluate as E

    files, marker = evil
    path = files[kind]
    msg = _refusal(path)
    rc = export_cli.main(["--model", MODEL, "--checkpoint", str(path), "--out", str(tmp_path / "x"),
                          "--height", "64", "--width", "64", "--no-verify"])
    assert rc == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    data = make_synth_camvid(tmp_path / "camvid", n=1, h=32, w=32)
    rc = E.main(["--model", MODEL, "--checkpoint", str(path), "--data", str(data), "--split", "val",
                 "--size", "32", "32", "--no-cache", "--threads", "1", "--out", str(tmp_path / "ev")])
    assert rc == 2 and msg in capsys.readouterr().err
    assert not marker.exists()


def _train_args(out, data, *extra):
    from pvtseg.training import train as T

    return T.build_parser().parse_args([
        "--data", str(data), "--out", str(out), "--threads", "1", "--no-progress", "--cache-dir",
        str(out) + "_cache", "--ckpt-every-min", "0", "--limit-train", "2", "--base-size", "64", "64",
        "--crop", "32", "32", "--batch", "2", "--iters", "2", "--val-every", "0", *extra])


@pytest.mark.parametrize("kind", ["pickle-open", "zip-system"])
def test_train_init_from_and_resume_refuse_malicious_pickles(evil, kind, tmp_path):
    from pvtseg.training import train as T

    files, marker = evil
    path = files[kind]
    data = make_synth_camvid(tmp_path / "camvid", n=2, h=64, w=64)
    with pytest.raises(CheckpointError) as e:
        T.Trainer(_train_args(tmp_path / "a", data, "--init-from", str(path)))
    assert _refusal(path) in str(e.value)
    run = tmp_path / "b"
    run.mkdir()
    (run / "last.pth").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="--resume"):
        T.Trainer(_train_args(run, data, "--resume"))
    assert T.main(list(_train_cli(run, data)) + ["--resume"]) == 2
    assert not marker.exists()


def _train_cli(out, data):
    return ["--data", str(data), "--out", str(out), "--threads", "1", "--no-progress", "--cache-dir",
            str(out) + "_cache", "--limit-train", "2", "--base-size", "64", "64", "--crop", "32", "32",
            "--batch", "2", "--iters", "2", "--val-every", "0"]


# ---------------------------------------------------------------------------------------------
# Malformed .safetensors
# ---------------------------------------------------------------------------------------------
def _st_file(path, header, data=b"", length=None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def _t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


PB = 2 ** 25  # (2**25)**2 float32 = 4 PiB
MALFORMED = {
    "bad-json": (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]', bytes(4), None),
    "not-utf8": (b'{"\xff\xfe": 1}', b"", None),
    "not-an-object": (b"[1, 2, 3]", b"", None),
    "header-longer-than-file": (b'{"a": {}}', b"", 2 ** 40),
    "header-a-bit-longer": (b'{"a": {}}', b"", 20),
    "offsets-out-of-range": ({"a": _t("F32", [PB, PB], 0, 2 ** 55)}, bytes(16), None),
    "offsets-reversed": ({"a": _t("F32", [2], 8, 0)}, bytes(8), None),
    "overlap": ({"a": _t("F32", [4], 0, 16), "b": _t("F32", [4], 8, 24)}, bytes(24), None),
    "gap": ({"a": _t("F32", [2], 0, 8), "b": _t("F32", [2], 16, 24)}, bytes(24), None),
    "unknown-dtype": ({"a": _t("F128", [1], 0, 16)}, bytes(16), None),
    "size-mismatch-petabytes": ({"a": _t("F32", [PB, PB], 0, 16)}, bytes(16), None),
    "empty-range-petabytes": ({"a": _t("F32", [PB, PB], 0, 0)}, b"", None),
    "negative-dim": ({"a": _t("F32", [-1, 4], 0, 16)}, bytes(16), None),
    "float-dim": ({"a": _t("F32", [2.0], 0, 8)}, bytes(8), None),
    "entry-not-object": ({"a": [1, 2]}, b"", None),
    "metadata-not-object": ({"__metadata__": [1], "a": _t("F32", [1], 0, 4)}, bytes(4), None),
    "truncated-data": ({"a": _t("F32", [4], 0, 16)}, bytes(10), None),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_safetensors_is_a_checkpoint_error_before_any_allocation(case, tmp_path, monkeypatch):
    header, data, length = MALFORMED[case]
    path = _st_file(tmp_path / "w.safetensors", header, data, length)
    safetensors = pytest.importorskip("safetensors.torch")
    with pytest.raises(Exception):  # the reference reader refuses the same file
        safetensors.load_file(str(path))

    made = []
    for fn in ("empty", "frombuffer", "zeros"):
        real = getattr(torch, fn)
        monkeypatch.setattr(torch, fn, lambda *a, _real=real, _fn=fn, **k: made.append(_fn) or _real(*a, **k))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="safetensors"):
            read_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert made == []  # no tensor was created
    assert peak < 1 << 20, peak  # nor a large Python buffer (the file is a few bytes)


def test_duplicate_tensor_names_are_refused(tmp_path):
    raw = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, ' \
          b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    with pytest.raises(CheckpointError, match="repeats"):
        read_checkpoint(_st_file(tmp_path / "dup.safetensors", raw, bytes(4)))


def test_valid_safetensors_read_like_the_library(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    g = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(3, 5, generator=g), "h": torch.randn(4, generator=g).to(torch.bfloat16),
               "i": torch.arange(6, dtype=torch.int64).reshape(2, 3), "b": torch.tensor([True, False]),
               "empty": torch.zeros(0, 7), "u": torch.arange(5, dtype=torch.uint8)}
    path = tmp_path / "ok.safetensors"
    safetensors.save_file(tensors, str(path), metadata={"format": "pt"})
    ours, ref = read_checkpoint(path), safetensors.load_file(str(path))
    assert ours.keys() == ref.keys() == tensors.keys()
    for k in ref:
        assert ours[k].dtype == ref[k].dtype and torch.equal(ours[k], ref[k]), k
    # the same bytes under another name are recognised by their header, not the suffix
    other = tmp_path / "ok.bin"
    other.write_bytes(path.read_bytes())
    assert torch.equal(read_checkpoint(other)["w"], ref["w"])


# ---------------------------------------------------------------------------------------------
# pvtseg's own training checkpoints
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with an EMA, saved after 2 steps: (trainer, last.pth, camvid folder)."""
    from pvtseg.training import train as T

    tmp = tmp_path_factory.mktemp("run")
    data = make_synth_camvid(tmp / "camvid", n=2, h=64, w=64)
    n_threads = torch.get_num_threads()
    t = T.Trainer(_train_args(tmp / "run", data, "--ema", "0.5"))
    t.step()
    t.step()
    t.save()
    torch.set_num_threads(n_threads)
    return t, tmp / "run" / "last.pth", data


def test_training_checkpoint_loads_with_weights_only(trained):
    from pvtseg.training import train as T

    t, path, _ = trained
    with torch.serialization.safe_globals([]):  # torch's own allow-list, nothing added
        st = torch.load(path, map_location="cpu", weights_only=True)
    assert st["format"] == "pvtseg-train-v1" and st["global_iter"] == 2
    assert isinstance(st["rng"]["numpy"]["key"], torch.Tensor)
    # the stored RNG states restore every generator exactly
    T.set_rng_state(st["rng"])
    draws = (np.random.random(3).tolist(), torch.rand(3), __import__("random").random())
    T.set_rng_state(st["rng"])
    assert np.random.random(3).tolist() == draws[0] and torch.equal(torch.rand(3), draws[1])
    assert __import__("random").random() == draws[2]


def test_rng_state_matches_numpy_and_python_after_round_trip(tmp_path):
    import random

    from pvtseg.training import train as T

    random.seed(7)
    np.random.seed(7)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    st = T.rng_state()
    expect = (np.random.standard_normal(4).tolist(), random.random())
    T.save_checkpoint(tmp_path / "s.pth", {"rng": st})
    T.set_rng_state(torch.load(tmp_path / "s.pth", weights_only=True)["rng"])
    assert (np.random.standard_normal(4).tolist(), random.random()) == expect


def test_legacy_training_checkpoint_with_numpy_rng_still_reads(tmp_path):
    """Checkpoints written before RNG states were tensors hold numpy's tuple: read through the
    allow-list (numeric arrays only), and --resume restores it."""
    from pvtseg.training import train as T

    np.random.seed(3)
    legacy = {"format": "pvtseg-train-v1", "model_name": MODEL, "model": {"w": torch.zeros(1)}, "ema": None,
              "rng": {"python": __import__("random").getstate(), "numpy": np.random.get_state(),
                      "torch": torch.get_rng_state()}, "best_miou": np.float64(0.5)}
    expect = np.random.random()
    torch.save(legacy, tmp_path / "old.pth")
    st = read_checkpoint(tmp_path / "old.pth")
    T.set_rng_state(st["rng"])
    assert np.random.random() == expect
    objects = np.array([1, 2], dtype=object)  # plain ints inside, but an object array is not numeric: refused
    torch.save({"model": {"w": torch.zeros(1)}, "x": objects}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointError, match="ObjectDType"):
        read_checkpoint(tmp_path / "obj.pth")


def test_save_checkpoint_refuses_what_weights_only_cannot_read(tmp_path):
    from pvtseg.training import train as T

    st = T.plain_state({"a": np.arange(3), "b": np.float32(1.5), "p": tmp_path, "t": (1, [2.0])})
    assert torch.equal(st["a"], torch.arange(3)) and st["b"] == 1.5 and st["p"] == str(tmp_path)
    assert st["t"] == (1, [2.0])
    with pytest.raises(CheckpointError, match=r"checkpoint\['x'\] holds a _OpensFile"):
        T.save_checkpoint(tmp_path / "bad.pth", {"x": _OpensFile(tmp_path / "m")})
    assert not (tmp_path / "bad.pth").exists() and not list(tmp_path.glob(".bad.pth*"))


def test_eval_export_and_create_model_take_the_ema_of_a_training_checkpoint(trained, tmp_path, capsys):
    from pvtseg.training import evaluate as E

    t, path, data = trained
    ema = t.ema.module.state_dict()
    assert not all(torch.equal(v, t.model.state_dict()[k]) for k, v in ema.items())
    model = create_model(MODEL, num_classes=11, checkpoint=path)  # the route `pvtseg export` takes
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ema.items())
    evm = create_model(MODEL, num_classes=11)
    E.load_weights(evm, path)
    assert all(torch.equal(evm.state_dict()[k], v) for k, v in ema.items())
    rc = E.main(["--model", MODEL, "--checkpoint", str(path), "--data", str(data), "--split", "val",
                 "--size", "64", "64", "--no-cache", "--threads", "1", "--limit", "1", "--out", str(tmp_path / "ev")])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["frames"] == 1
    rc = E.main(["--model", "pvt_v2_b1_segformer", "--checkpoint", str(path), "--data", str(data), "--split", "val",
                 "--size", "64", "64", "--no-cache", "--threads", "1", "--limit", "1", "--out", str(tmp_path / "ev2")])
    assert rc == 2 and f"--model {MODEL}" in capsys.readouterr().err
