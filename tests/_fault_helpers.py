"""Test helper: real faults in a temp dir (a small or read-only tmpfs when running as root),
and injected ones (ENOSPC / EROFS from os.open / os.write) where mounting is not possible.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from typing import Iterator, Optional


def _mount(*args: str) -> bool:
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    return r.returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m") -> Iterator[Optional[Path]]:
    """Mount a tmpfs of `size` on `path` (created); yields the path, or None when it cannot
    be mounted (not root, no mount permission in this container): tests then inject."""
    path.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)):
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def remount_ro(path: Path) -> bool:
    return _mount("-o", "remount,ro", str(path))


def fill(folder: Path, leave: int) -> int:
    """Write a filler file so that about `leave` bytes stay free in `folder`; returns free bytes."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    n = max(0, free - leave)
    with open(folder / "filler.bin", "wb") as f:
        f.write(b"\0" * n)
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def inject_errno(monkeypatch, folder: Path, code: int = errno.ENOSPC, after_bytes: int = 0) -> None:
    """Make writes under `folder` fail with `code` once `after_bytes` were written there
    (os.open for EROFS/EACCES, os.write for ENOSPC), as the kernel would."""
    folder = str(Path(folder).resolve())
    real_open, real_write = os.open, os.write
    fds: dict = {}
    written = [0]

    def fake_open(path, flags, *a, **k):
        p = os.path.abspath(os.fspath(path))
        if p.startswith(folder) and code != errno.ENOSPC and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), p)
        fd = real_open(path, flags, *a, **k)
        if p.startswith(folder):
            fds[fd] = p
        return fd

    def fake_write(fd, data):
        if fd in fds and code == errno.ENOSPC:
            room = after_bytes - written[0]
            if room <= 0:
                raise OSError(code, os.strerror(code))
            n = real_write(fd, bytes(data[:room]))
            written[0] += n
            return n
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)


def is_root() -> bool:
    return os.geteuid() == 0
