"""Official pretrained weights: where they are, how big they are, and an optional download.

The URLs are the GitHub release assets listed in the model zoo of the official
classification README (whai362/PVT, classification/README.md): ImageNet-1K classifiers of
PVT v1 and v2 at 224x224. Every file loads with `load_checkpoint` (format pvt-official), into
the classifier of the same name or, backbone only, into its `_fpn` / `_segformer` segmentor.

Sizes: `size_bytes` is the fp32 tensor payload, parameters x 4 bytes, of the 1000-class
classifier (what these files hold); the real file adds a few KB of zip/pickle framing, so it
is approximate (`size_exact=False`). It agrees with the README's sizes in MiB ("14M" ... "313M").

Downloading is optional and never automatic: nothing in pvtseg fetches weights behind your
back. `download(name)` writes to a temporary file beside the destination and renames it when
complete, so an interrupted download never leaves a half file under the final name. On a
machine without network access it fails with DownloadError saying where to get the file by
hand. PVTSEG_OFFLINE=1 makes it fail at once; PVTSEG_CACHE sets the default folder
(~/.cache/pvtseg/checkpoints).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from ..errors import DownloadError, ModelNotFoundError
from ..io_utils import atomic_path

log = logging.getLogger("pvtseg")

_RELEASE = "https://github.com/whai362/PVT/releases/download/v2/"


@dataclass(frozen=True)
class Weights:
    model: str           # registered classifier this file fits exactly
    url: str
    params: int          # parameters of that classifier (1000 classes)
    top1: float          # ImageNet-1K top-1 at 224, from the README
    readme_size: str     # the size the README prints

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def size_bytes(self) -> int:
        """Approximate file size: fp32 payload (params x 4 bytes), see the module docstring."""
        return self.params * 4

    size_exact = False


WEIGHTS: Dict[str, Weights] = {w.model: w for w in [
    Weights("pvt_v2_b0", _RELEASE + "pvt_v2_b0.pth", 3_666_760, 70.5, "14M"),
    Weights("pvt_v2_b1", _RELEASE + "pvt_v2_b1.pth", 14_009_000, 78.7, "54M"),
    Weights("pvt_v2_b2", _RELEASE + "pvt_v2_b2.pth", 25_362_856, 82.0, "97M"),
    Weights("pvt_v2_b2_li", _RELEASE + "pvt_v2_b2_li.pth", 22_553_512, 82.1, "86M"),
    Weights("pvt_v2_b3", _RELEASE + "pvt_v2_b3.pth", 45_238_696, 83.1, "173M"),
    Weights("pvt_v2_b4", _RELEASE + "pvt_v2_b4.pth", 62_556_072, 83.6, "239M"),
    Weights("pvt_v2_b5", _RELEASE + "pvt_v2_b5.pth", 81_956_008, 83.8, "313M"),
    Weights("pvt_v1_tiny", _RELEASE + "pvt_tiny.pth", 13_229_288, 75.1, "51M"),
    Weights("pvt_v1_small", _RELEASE + "pvt_small.pth", 24_485_864, 79.8, "93M"),
    Weights("pvt_v1_medium", _RELEASE + "pvt_medium.pth", 44_208_104, 81.2, "168M"),
    Weights("pvt_v1_large", _RELEASE + "pvt_large.pth", 61_369_320, 81.7, "234M"),
]}


def list_weights() -> List[str]:
    return list(WEIGHTS)


def weights_for(model_name: str) -> Optional[Weights]:
    """The official ImageNet weights a registered model can start from (a segmentor: its backbone's)."""
    for suffix in ("_fpn", "_segformer"):
        if model_name.endswith(suffix):
            model_name = model_name[: -len(suffix)]
    return WEIGHTS.get(model_name)


def get_weights(name: str) -> Weights:
    w = weights_for(name)
    if w is None:
        close = difflib.get_close_matches(name, list(WEIGHTS), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(
            f"no official weights registered for {name!r}.{hint} Available: {', '.join(WEIGHTS)}")
    return w


def cache_dir() -> Path:
    return Path(os.environ.get("PVTSEG_CACHE", Path.home() / ".cache" / "pvtseg")).expanduser() / "checkpoints"


def download(name: str, dest: Union[str, os.PathLike, None] = None, timeout: float = 30.0,
             overwrite: bool = False, progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Download the official weights of `name` (a classifier, or a segmentor's backbone).

    dest: a folder (an existing one, or a name without extension) or a file path; default
    cache_dir(). An existing complete file is reused
    unless overwrite=True. Returns the path. Raises DownloadError with the URL and what to do
    when the machine is offline, the server refuses, or the file arrives incomplete.
    """
    w = get_weights(name)
    target = Path(dest).expanduser() if dest is not None else cache_dir()
    if dest is None or target.is_dir() or str(dest).endswith(("/", os.sep)) or not target.suffix:
        target = target / w.filename  # a folder (existing, or a name without a file extension)
    if target.is_file() and not overwrite and _plausible_size(target.stat().st_size, w):
        return target
    manual = (f"download {w.url} by hand (browser, wget) on a machine with network access, copy it here "
              f"and pass its path: create_model({w.model!r}, checkpoint='/path/{w.filename}')")
    if os.environ.get("PVTSEG_OFFLINE", "") not in ("", "0"):
        raise DownloadError(f"PVTSEG_OFFLINE is set, not downloading {w.filename}; {manual}")
    request = urllib.request.Request(w.url, headers={"User-Agent": "pvtseg"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            digest = hashlib.sha256()
            with atomic_path(target) as tmp, open(tmp, "wb") as out:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total or w.size_bytes)
                out.flush()
                if total and done != total:
                    raise DownloadError(f"download of {w.url} stopped at {done} of {total} bytes; try again, "
                                        f"or {manual}")
                if not _plausible_size(done, w):
                    raise DownloadError(
                        f"{w.url} gave {done} bytes, expected about {w.size_bytes} (~{w.readme_size}B): not the "
                        f"checkpoint (a proxy or login page?); {manual}")
    except DownloadError:
        raise
    except urllib.error.HTTPError as e:
        raise DownloadError(f"could not download {w.url}: HTTP {e.code} {e.reason}; {manual}") from None
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"could not download {w.url} ({reason}); this machine looks offline or the host is unreachable. "
            f"{manual}") from None
    log.info("downloaded %s to %s (%d bytes, sha256 %s)", w.url, target, done, digest.hexdigest())
    return target


def _plausible_size(n: int, w: Weights) -> bool:
    return 0.9 * w.size_bytes <= n <= 1.1 * w.size_bytes + (1 << 20)


__all__ = ["Weights", "WEIGHTS", "list_weights", "weights_for", "get_weights", "cache_dir", "download"]
