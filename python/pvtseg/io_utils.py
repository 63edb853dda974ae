"""Atomic file writes: nothing half-written survives a crash, a full disk or an error.

- `atomic_path(final)` / `atomic_write_bytes` / `atomic_write_text`: one file.
- `AtomicSet`: several files that belong together (an export's `.onnx`, `.ts` and `.json`)
  replace the previous versions together or not at all.

How a write works: the data goes to a temporary file in the destination folder (so the
final rename stays on one filesystem and is atomic), is flushed and fsynced, renamed onto
the final name, and the folder is fsynced so the rename itself survives a power cut. On any
error (ENOSPC, EROFS, EACCES, an exception from a library) the temporaries are removed and
the previous files are untouched; the error is a `WriteError` (an OSError) whose message is
one line with the path and the cause.

Temporaries are named `.<name>.<host>-<pid>-<n>.pvtseg-tmp[.<ext>]`. A run killed with
SIGKILL cannot remove its own, so every writer first removes, once per folder and process,
the temporaries whose process is gone (same host, pid not running) or that are older than a
day (another host: its pids mean nothing here).
"""

from __future__ import annotations

import contextlib
import hashlib
import errno as errno_mod
import itertools
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

from .errors import ConfigError, DiskSpaceError, PvtsegError, WriteError

PathLike = Union[str, "os.PathLike[str]"]

TEMP_TAG = ".pvtseg-tmp"
# Space left free on top of what a write needs: file-system metadata, other writers.
FREE_MARGIN = 1 << 20
# Temporaries of another host (shared folder) are only removed once this old.
FOREIGN_TEMP_AGE_S = 24 * 3600

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]*)-(?P<pid>\d+)-(?P<seq>\d+)"
                      + re.escape(TEMP_TAG) + r"(?:\.[A-Za-z0-9]+)?$")
# Temporaries of pvtseg versions before this scheme: `.<name>.<pid>.tmp` (export).
_LEGACY_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
_SEQ = itertools.count()
_CLEANED: set = set()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())[:32]


def temp_path_for(final: PathLike, ext: str = "") -> Path:
    """A fresh temporary name beside `final` (`ext`, e.g. ".mp4", for writers that pick the
    format from the extension, such as cv2.VideoWriter)."""
    final = Path(final)
    return final.with_name(f".{final.name}.{_host()}-{os.getpid()}-{next(_SEQ)}{TEMP_TAG}{ext}")


def pid_running(pid: int) -> bool:
    """True when `pid` is a live process here (zombies count as gone: they write nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


def _is_stale(entry: os.DirEntry, now: float) -> bool:
    m = _TEMP_RE.match(entry.name)
    if m is None:
        legacy = _LEGACY_RE.match(entry.name)
        return legacy is not None and not pid_running(int(legacy.group("pid")))
    if m.group("host") == _host():
        pid = int(m.group("pid"))
        return pid != os.getpid() and not pid_running(pid)
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > FOREIGN_TEMP_AGE_S
    except OSError:
        return False


def clean_stale_temps(folder: PathLike, *, force: bool = False) -> List[Path]:
    """Remove temporaries left in `folder` by killed runs; returns what was removed.

    Runs once per folder and process unless `force`. Never raises: cleaning is best effort
    (a read-only folder, a file removed by someone else meanwhile).
    """
    folder = Path(folder)
    key = os.path.abspath(folder)
    if key in _CLEANED and not force:
        return []
    _CLEANED.add(key)
    removed: List[Path] = []
    now = time.time()
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".") and _is_stale(e, now)]
    except OSError:
        return removed
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
    return removed


# --------------------------------------------------------------------------------------------
# Errors and space
# --------------------------------------------------------------------------------------------

def describe_os_error(e: OSError, path: Optional[PathLike] = None) -> str:
    """`path: cause (ENAME)` in one line, e.g. `out/x.onnx: No space left on device (ENOSPC)`."""
    if isinstance(e, PvtsegError):  # WriteError and friends already say path, cause and fix
        return str(e)
    where = path if path is not None else (e.filename if e.filename is not None else "")
    cause = e.strerror or str(e) or type(e).__name__
    code = errno_mod.errorcode.get(e.errno or -1)
    text = f"{where}: {cause}" if where != "" else cause
    return f"{text} ({code})" if code else text


_HINTS = {
    errno_mod.ENOSPC: "free some space or write somewhere else",
    errno_mod.EDQUOT: "free some space or write somewhere else",
    errno_mod.EROFS: "the file system is mounted read-only; write somewhere else",
    errno_mod.EACCES: "no permission to write there; choose a folder you own",
    errno_mod.EPERM: "no permission to write there; choose a folder you own",
    errno_mod.ENOTDIR: "a part of the path is a file, not a folder",
    errno_mod.EISDIR: "the path is a folder; give a file name",
}


def write_error(e: OSError, path: PathLike, what: str = "") -> WriteError:
    """A WriteError for a failed write of `path`, keeping errno, with a fix-it hint."""
    hint = _HINTS.get(e.errno or -1, "")
    text = f"cannot write {what + ' ' if what else ''}{describe_os_error(e, path)}"
    text += f"; {hint}" if hint else ""
    return WriteError(e.errno, text + ". Nothing was changed.", str(path))


def free_bytes(folder: PathLike) -> Optional[int]:
    """Bytes an unprivileged writer may still use in `folder`'s file system (None: unknown)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _existing_parent(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_free_space(folder: PathLike, need: int, what: str, margin: int = FREE_MARGIN) -> None:
    """Raise DiskSpaceError when `folder` has less than `need` + `margin` bytes free."""
    folder = Path(folder)
    free = free_bytes(_existing_parent(folder))
    if free is not None and free < need + margin:
        raise DiskSpaceError(
            errno_mod.ENOSPC,
            f"not enough space in {folder}: {what} needs about {_mb(need + margin)}, {_mb(free)} is free. "
            "Free some space or write somewhere else. Nothing was changed.", str(folder))


def check_writable(folder: PathLike, what: str = "") -> None:
    """Create `folder` if needed and prove a file can be created in it (before slow work).

    Raises WriteError (read-only file system, no permission, a file in the way)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path_for(folder / "probe")
        write_file_bytes(probe, b"")
        probe.unlink()
    except OSError as e:
        raise write_error(e, folder, what) from None


def _mb(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB" if n < 2 ** 30 else f"{n / 2 ** 30:.2f} GiB"


# --------------------------------------------------------------------------------------------
# Low-level writes
# --------------------------------------------------------------------------------------------

def fsync_dir(folder: PathLike) -> None:
    """Make renames in `folder` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (e.g. some network mounts) refuse fsync on a directory
    finally:
        os.close(fd)


def fsync_file(path: PathLike) -> None:
    """Flush a file someone else wrote (a library writing to a path) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_bytes(path: PathLike, data: bytes) -> None:
    """Create `path` (must not exist), write all of `data`, fsync. Raw OSError on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quiet(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextlib.contextmanager
def atomic_path(final: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; after the block it is fsynced and renamed onto it.

    On any exception the temporary is removed, `final` is untouched, and an OSError is
    re-raised as a WriteError naming `final` and the cause.
    """
    with AtomicSet() as s:
        tmp = s.temp_for(final)
        try:
            yield tmp
        except WriteError:
            raise
        except OSError as e:
            if e.filename not in (None, str(tmp), tmp):
                raise  # about another file (e.g. a source that could not be read): say so as it is
            raise write_error(e, final) from None
        s.commit()


def atomic_write_bytes(final: PathLike, data: bytes) -> None:
    with AtomicSet() as s:
        s.write_bytes(final, data)
        s.commit()


def atomic_write_text(final: PathLike, text: str) -> None:
    atomic_write_bytes(final, text.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Sets of files
# --------------------------------------------------------------------------------------------

class AtomicSet:
    """Write several files so that they replace their previous versions as one set.

        with AtomicSet() as s:
            s.write_bytes("out/x.json", sidecar)      # files are renamed in the order added
            s.write_bytes("out/x.onnx", graph)
            check(s.temp("out/x.onnx"))               # e.g. load the new graph before committing
            s.commit()                                # leaving the block without commit: nothing changes

    `commit` fsyncs every temporary, hard-links each existing final file to a backup, renames
    the temporaries onto the final names in the order they were added, fsyncs the folders and
    drops the backups. If a rename fails half-way the files already renamed are put back from
    the backups, so the previous set stays whole. POSIX has no multi-file rename, so a reader
    that opens the files in the microseconds between two renames can see one new and one old
    file; pvtseg's export therefore adds the sidecar first and records each graph's sha256 in
    it (meta.py), and the reader refuses a graph whose bytes do not match (see meta.read).
    """

    def __init__(self) -> None:
        self._temps: Dict[Path, Path] = {}  # final -> temporary, in the order added
        self._dirs: List[Path] = []
        self._committed = False

    # -- staging -------------------------------------------------------------------------------
    def _prepare(self, final: PathLike) -> Path:
        final = Path(final)
        if final in self._temps:
            raise ConfigError(f"{final} was already added to this AtomicSet; add each file once")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(e, final.parent, "folder") from None
        clean_stale_temps(final.parent)
        return final

    def temp_for(self, final: PathLike, ext: str = "") -> Path:
        """Reserve a temporary path for `final` that the caller (or a library) fills."""
        final = self._prepare(final)
        tmp = temp_path_for(final, ext)
        self._temps[final] = tmp
        return tmp

    def write_bytes(self, final: PathLike, data: bytes, what: str = "") -> Path:
        """Write `data` to a temporary for `final` now (checked for space first); return it."""
        final = self._prepare(final)
        check_free_space(final.parent, len(data), what or final.name)
        tmp = temp_path_for(final)
        self._temps[final] = tmp
        try:
            write_file_bytes(tmp, data)
        except OSError as e:
            raise write_error(e, final, what) from None
        return tmp

    def temp_dir(self, near: PathLike) -> Path:
        """A fresh temporary folder beside `near`, for a library that writes several files
        at once (ONNX with external weights); hand its files to `adopt`. Removed at the end."""
        near = Path(near)
        path = temp_path_for(near)
        try:
            path.mkdir()
        except OSError as e:
            raise write_error(e, near) from None
        self._dirs.append(path)
        return path

    def adopt(self, final: PathLike, tmp: PathLike) -> None:
        """Use the file `tmp` (already written, in `final`'s folder) as the new `final`."""
        self._temps[self._prepare(final)] = Path(tmp)

    def temp(self, final: PathLike) -> Path:
        """The temporary holding the new contents of `final`."""
        return self._temps[Path(final)]

    @property
    def finals(self) -> List[Path]:
        return list(self._temps)

    # -- commit / abort --------------------------------------------------------------------------
    def commit(self, first: Sequence[PathLike] = ()) -> List[Path]:
        """Rename every temporary onto its final name: `first` ones first, then the others in
        the order they were added (see the class docstring)."""
        lead = [Path(p) for p in first if Path(p) in self._temps]
        finals = lead + [f for f in self._temps if f not in lead]
        try:
            for final in finals:
                fsync_file(self._temps[final])
        except OSError as e:
            raise write_error(e, final) from None
        backups = self._backup(finals)
        done: List[Path] = []
        try:
            for final in finals:
                os.replace(self._temps[final], final)
                done.append(final)
        except BaseException as e:  # an OSError, or Ctrl-C between two renames: put the old set back
            self._roll_back(done, backups)
            if isinstance(e, OSError) and not isinstance(e, WriteError):
                raise write_error(e, final) from None
            raise
        finally:
            for bak in backups.values():
                _unlink_quiet(bak)
        for folder in {f.parent for f in finals}:
            fsync_dir(folder)
        self._committed = True
        self._temps.clear()
        self.abort()  # the emptied temporary folders
        return finals

    @staticmethod
    def _backup(finals: List[Path]) -> Dict[Path, Path]:
        """Hard links to the current finals (free: no data is copied); skipped where the file
        system has no hard links (then a failed commit cannot restore that file)."""
        backups: Dict[Path, Path] = {}
        for final in finals:
            if final.is_file():
                bak = temp_path_for(final)
                try:
                    os.link(final, bak)
                    backups[final] = bak
                except OSError:
                    pass
        return backups

    @staticmethod
    def _roll_back(done: List[Path], backups: Dict[Path, Path]) -> None:
        for final in done:
            bak = backups.get(final)
            with contextlib.suppress(OSError):
                if bak is not None:
                    os.replace(bak, final)
                else:
                    final.unlink()

    def abort(self) -> None:
        """Remove every temporary; the final files are untouched."""
        for tmp in list(self._temps.values()) + self._dirs:
            _unlink_quiet(tmp)
        self._temps.clear()
        self._dirs.clear()

    def __enter__(self) -> "AtomicSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()


def guard_write(fn: Callable[[], None], path: PathLike, what: str = "") -> None:
    """Run `fn` (which writes `path`), turning an OSError into a one-line WriteError."""
    try:
        fn()
    except WriteError:
        raise
    except OSError as e:
        raise write_error(e, path, what) from None


def sha256_file(path: "str | os.PathLike[str]") -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (graphs and checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
