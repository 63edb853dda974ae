"""`pvtseg models`: every registered model with its
parameter count and GFLOPs (multiply-accumulates, as in the PVT / SegFormer papers) at 512x512.

Counting builds each model on the meta device (no memory, no arithmetic; see complexity.py).
Results are cached in ~/.cache/pvtseg/complexity.json (PVTSEG_CACHE moves it), keyed by the
source of pvtseg.models and the torch version, so the second listing is instant.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pvtseg models",
        description="List registered models with params and GFLOPs (1 FLOP = 1 multiply-add, as in the papers).")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'pvt_v2_*' (default: all)")
    p.add_argument("--list", action="store_true", help="list models (the default action)")
    p.add_argument("--kind", choices=("classifier", "segmentor"), help="only classifiers or only segmentors")
    p.add_argument("--size", type=int, nargs="+", default=[512], metavar="N",
                   help="input height [width] for the FLOP count (default 512)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (parameters only)")
    p.add_argument("--no-cache", action="store_true", help="recount instead of using the cache")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--weights", action="store_true", help="list the official pretrained weights (URLs, sizes)")
    return p


def _fingerprint() -> str:
    h = hashlib.sha1(torch.__version__.encode())
    for f in sorted((Path(__file__).resolve().parents[1] / 'models').glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _cache_file() -> Path:
    return Path(os.environ.get("PVTSEG_CACHE", Path.home() / ".cache" / "pvtseg")).expanduser() / "complexity.json"


def _load_cache(fingerprint: str) -> Dict[str, dict]:
    try:
        data = json.loads(_cache_file().read_text())
        return data["entries"] if data.get("fingerprint") == fingerprint else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _save_cache(fingerprint: str, entries: Dict[str, dict]) -> None:
    from ..io_utils import atomic_write_text

    try:
        atomic_write_text(_cache_file(), json.dumps({"fingerprint": fingerprint, "entries": entries}, indent=0))
    except OSError:
        pass  # a read-only home only costs the next run its speed


def _print_weights() -> int:
    from ..models.zoo import WEIGHTS

    print(f"{'model':<16} {'file':<18} {'size':>9} {'top-1':>6}  url")
    for w in WEIGHTS.values():
        print(f"{w.model:<16} {w.filename:<18} {w.size_bytes / 2**20:>7.1f}Mi {w.top1:>6.1f}  {w.url}")
    print("\nImageNet-1K classifiers (whai362/PVT classification README). Download with "
          "`python -c \"from pvtseg.models.zoo import download; print(download('pvt_v2_b0'))\"`, then "
          "create_model('pvt_v2_b0_segformer', checkpoint=path) starts a segmentor from it "
          "(the segmentation head is reported as missing and keeps its initialisation).")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.weights:
        return _print_weights()
    from ..models.complexity import model_complexity
    from ..models.registry import list_models
    from ..models.zoo import weights_for

    size = (args.size[0], args.size[-1]) if len(args.size) <= 2 else None
    if size is None or min(size) <= 0:
        print("pvtseg models: --size takes one or two positive integers (height [width])", file=sys.stderr)
        return 2
    names = list_models(args.pattern, kind=args.kind)
    if not names:
        print(f"pvtseg models: no model matches {args.pattern!r}; `pvtseg models` lists them all", file=sys.stderr)
        return 1
    fingerprint = _fingerprint()
    cache = {} if args.no_cache else _load_cache(fingerprint)
    tag = f"{size[0]}x{size[1]}"
    rows: List[dict] = []
    width = max(len(n) for n in names)
    if not args.json:
        print(f"{'model':<{width}}  {'kind':<10} {'params(M)':>9} {'GFLOPs@' + tag:>14}  ImageNet weights")
    failures = []
    for name in names:
        key = f"{name}|{tag}|{'p' if args.no_flops else 'pf'}"
        row = cache.get(key) or cache.get(f"{name}|{tag}|pf")
        if row is None:
            try:
                c = model_complexity(name, size, with_flops=not args.no_flops)
                row = {"name": name, "kind": c.kind, "params": c.params,
                       "flops": None if args.no_flops else c.flops}
            except Exception as e:  # one broken model must not hide the others
                failures.append(f"{name}: {type(e).__name__}: {e}")
                row = {"name": name, "kind": "?", "params": None, "flops": None}
            else:
                cache[key] = row
        w = weights_for(name)
        flops = row.get("flops")
        row = dict(row, gflops=None if flops is None else round(flops / 1e9, 3), weights=w.filename if w else None)
        rows.append(row)
        if not args.json:
            params = "?" if row["params"] is None else f"{row['params'] / 1e6:.2f}"
            gflops = "-" if flops is None else f"{flops / 1e9:.2f}"
            print(f"{name:<{width}}  {row['kind']:<10} {params:>9} {gflops:>14}  {row['weights'] or '-'}",
                  flush=True)
    _save_cache(fingerprint, cache)
    if args.json:
        print(json.dumps({"input_size": list(size), "flops_unit": "GMAC (1 FLOP = 1 multiply-add)",
                          "models": rows}, indent=2))
    else:
        print(f"\n{len(rows)} models. GFLOPs: multiply-adds / 1e9 of conv, linear and attention matmuls for a "
              f"1x3x{size[0]}x{size[1]} input (the convention of the PVT and SegFormer papers). "
              "Segmentors default to 150 classes (ADE20K).")
    for f in failures:
        print(f"could not count {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
