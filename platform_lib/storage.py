"""Atomic writes: every store or file the platform writes goes to a temporary sibling first and is
renamed into place only when complete, so a failure or Ctrl-C never leaves half a cube behind.

This module is the one way to do that; cube generation, regional cubes, re-chunking and training-set
materialisation all call :func:`write_zarr_atomic`, catalogs and state files :func:`write_text_atomic`.

A process killed outright runs no clean-up. A store's writer therefore holds a lock on a ``.writing``
marker beside its temporary (the kernel drops it when the process dies); the next write of that name
(and, for team cubes, ``platform_lib.regional.reconcile_team_cubes``) removes the temporaries of dead
writes and finishes an interrupted overwrite (:func:`remove_stale_temporaries`), never touching a live
write's. Text temporaries are removed by the next writer holding the file's lock
(:func:`remove_text_temporaries`). ``ESDL_CRASH_AT`` / ``ESDL_STOP_AT`` (:func:`crash_point`) let the
crash tests kill or stop a write at a named point.

>>> import tempfile, numpy as np, xarray as xr
>>> from pathlib import Path
>>> out = Path(tempfile.mkdtemp()) / "x.zarr"
>>> ds = xr.Dataset({"v": (("time",), np.arange(3, dtype="float32"))})
>>> write_zarr_atomic(ds, out, progress=False).name
'x.zarr'
>>> float(xr.open_zarr(out)["v"].sum())
3.0
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from platform_lib.errors import EsdlError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path of ``target``; on success rename it to ``target``.

    On any exception the temporary path is removed and ``target`` is untouched. With
    ``overwrite=False`` an existing target is an error raised *before* anything is written.

    A process killed outright (SIGKILL, the OOM killer, a power cut) runs no clean-up; what it left of
    an earlier write of the same ``target`` is finished or removed first (:func:`remove_stale_temporaries`,
    never a live write's), so a killed write loses no file and blocks no name.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "f.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> (d / "f.txt").read_text()
    'hi'
    """
    target = Path(target)
    remove_stale_temporaries(target.parent, target.name)
    if target.exists() and not overwrite:
        raise EsdlError(f"{target} already exists; pass overwrite=True (or --overwrite) to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = target.parent / f".{target.name}.tmp-{token}"
    with _writing(tmp):
        try:
            crash_point("atomic:started")
            yield tmp
            crash_point("atomic:before-rename")
            if target.exists():  # overwrite: move the old one aside, then swap, then drop the old one
                # (with the temporary's token, so that a cleaner can finish the swap of a killed write)
                old = target.parent / f".{target.name}.old-{token}"
                os.replace(target, old)
                crash_point("atomic:swapping")
                os.replace(tmp, target)
                crash_point("atomic:swapped")
                remove_path(old)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                remove_path(tmp, settle=True)


#: the marker a live write keeps locked beside its temporary (``.NAME.tmp-XXXXXXXX.writing``)
WRITING_SUFFIX = ".writing"
#: a temporary without a marker (written before markers existed) is stale when nothing in it changed for
#: this many seconds
UNMARKED_STALE_S = 3600.0
#: what a write leaves beside its target: ``.NAME.tmp-TOKEN`` (the new data), ``.NAME.old-TOKEN`` (the data
#: it replaces, while swapping) and ``.NAME.tmp-TOKEN.writing`` (its marker)
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<token>[^./]+)(?P<marker>\.writing)?$")


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat``), or ``None``."""
    try:
        stat_text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_text.rpartition(")")[2].split()[19]  # field 22, counted after the command's name


@contextlib.contextmanager
def _writing(tmp: Path) -> Iterator[None]:
    """Hold a lock on the marker beside ``tmp`` while the write runs (the kernel drops it when the process
    dies, even by SIGKILL), with this process's host, pid and start time in it."""
    marker = tmp.with_name(tmp.name + WRITING_SUFFIX)
    while True:
        fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o666)
        with contextlib.suppress(OSError):  # no locks on this file system: the record below still tells
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # a cleaner may have removed the marker between its creation and the lock: make it again
            if os.stat(marker).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.write(fd, f"{socket.gethostname()} {os.getpid()} {_process_start(os.getpid())}\n".encode())
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)
        os.close(fd)


def _lock_dead_write(marker: Path) -> int | None:
    """The open, locked ``marker`` if the write it belongs to is gone (the caller closes it), else
    ``None``: its writer holds the lock, still runs on this machine, or cannot be judged."""
    try:
        fd = os.open(marker, os.O_RDWR)
    except OSError:
        return None  # finished meanwhile, or not ours to judge (another person's, no permission)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except BlockingIOError:
        os.close(fd)
        return None  # its writer is alive
    except OSError:
        locked = False  # no locks here: only the record can tell
    host, pid, start = (os.read(fd, 512).decode(errors="replace").split() + ["", "", ""])[:3]
    same_host = host == socket.gethostname() and pid.isdigit()
    # the process it names still runs (the same start time: not another process given that pid since)
    running = same_host and start not in ("", "None") and start == _process_start(int(pid))
    if running or not (locked or same_host):
        os.close(fd)
        return None
    return fd


def _newest_change(path: Path) -> float:
    """The latest modification time of ``path`` and everything in it (0 if it is gone)."""
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
    for root, dirs, files in os.walk(path):
        for entry in (*dirs, *files):
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(root, entry)).st_mtime)
    return newest


def remove_stale_temporaries(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Finish or remove what writes into ``folder`` (of target ``name``, default any) left when they died
    (killed, crashed, power cut), and return the paths removed. A live write's, in this process or another,
    is never touched.

    A write is dead when nobody holds the lock on its ``.writing`` marker (and, on this machine, the process
    the marker names is gone). Its temporary is removed, unless it died while swapping an overwritten target
    (``.NAME.old-TOKEN`` beside it): then its complete temporary is renamed into place and the old data
    removed, so no file is lost. A temporary with no marker (from before markers) is removed when nothing in
    it changed for :data:`UNMARKED_STALE_S` seconds.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.zarr") as tmp:
    ...     tmp.mkdir(); remove_stale_temporaries(d)  # a live write: kept
    []
    >>> dead = d / ".b.zarr.tmp-0000dead"; dead.mkdir(); _ = (d / (dead.name + WRITING_SUFFIX)).write_text("")
    >>> [p.name for p in remove_stale_temporaries(d)]
    ['.b.zarr.tmp-0000dead']
    """
    folder = Path(folder)
    writes: dict[tuple[str, str], dict[str, Path]] = {}
    for path in folder.glob(f".{glob.escape(name) if name else '*'}.*-*"):
        match = _LEFTOVER.match(path.name)
        if match and (name is None or match["name"] == name):
            kind = "marker" if match["marker"] else match["kind"]
            writes.setdefault((match["name"], match["token"]), {})[kind] = path
    removed: list[Path] = []
    for (target_name, _token), parts in sorted(writes.items()):
        marker = parts.get("marker")
        if marker is None:  # from before markers: judged by age alone
            if any(time.time() - _newest_change(p) < UNMARKED_STALE_S for p in parts.values()):
                continue
            fd = None
        elif (fd := _lock_dead_write(marker)) is None:
            continue
        try:
            removed += _finish_dead_write(folder / target_name, parts.get("tmp"), parts.get("old"))
            if marker is not None:
                marker.unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _finish_dead_write(target: Path, tmp: Path | None, old: Path | None) -> list[Path]:
    """Leave ``target`` as the dead write would have: its temporary is complete once ``old`` exists."""
    removed = []
    with contextlib.suppress(FileNotFoundError):  # another cleaner may have done it
        if old is not None and not target.exists():
            os.replace(tmp if tmp is not None and tmp.exists() else old, target)  # finish the swap
    for path in (tmp, old):
        if path is not None and path.exists():
            remove_path(path)
            if not path.exists():
                removed.append(path)
    return removed


def remove_text_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries that :func:`write_text_atomic` calls killed while writing ``path`` left
    (``.NAME.tmp-XXXXXXXX``), and return them. Call it only while holding the lock that every writer of
    ``path`` holds (as the team catalog's writers do): then no write of it is running.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / ".catalog.yaml.tmp-k1lled00").write_text("half a cata")
    >>> [p.name for p in remove_text_temporaries(d / "catalog.yaml")]
    ['.catalog.yaml.tmp-k1lled00']
    """
    path = Path(path)
    removed = sorted(path.parent.glob(f".{glob.escape(path.name)}.tmp-*"))
    for tmp in removed:
        remove_path(tmp)
    return removed


#: for crash tests only: ``ESDL_CRASH_AT=<point>`` makes the process kill itself (SIGKILL) at that point,
#: ``ESDL_STOP_AT=<point>`` stop itself (SIGSTOP: alive, holding its locks, until SIGCONT)
CRASH_VARIABLE = "ESDL_CRASH_AT"
STOP_VARIABLE = "ESDL_STOP_AT"
#: the points, in the order a regional cube passes them
CRASH_POINTS = (
    "atomic:started",  # the marker is locked, the temporary not made yet
    "zarr:metadata-written",  # the temporary holds the store's metadata and coordinates, no data yet
    "atomic:before-rename",  # the temporary is complete
    "atomic:swapping",  # overwrite only: the old target moved aside, the new one not yet in place
    "atomic:swapped",  # overwrite only: the new target in place, the old one not yet removed
    "regional:stored",  # the store renamed into place, not registered
    "team:catalog-write",  # the catalog lock held, the new catalog not written
    "text:before-rename",  # a text file (the catalog) written to its temporary, not renamed
)


def crash_point(name: str) -> None:
    """Die at once (SIGKILL, no clean-up, as a power cut or the OOM killer would) if ``ESDL_CRASH_AT`` names
    this point, or stop (SIGSTOP) if ``ESDL_STOP_AT`` does: the crash tests' way to stop a write exactly
    there. Does nothing otherwise.

    >>> crash_point("atomic:started")  # ESDL_CRASH_AT is not set: nothing happens
    """
    if os.environ.get(CRASH_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STOP_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGSTOP)


def remove_path(path: Path, settle: bool = False) -> None:
    """Remove a file or folder (a symlink itself, not what it points to); a missing path is fine.

    With ``settle``, keep removing until it stays gone for a moment: after a failed parallel write,
    tasks still in flight (dask stops submitting, it does not wait) may write a chunk, and recreate
    folders, just after the first removal.

    >>> import tempfile
    >>> store = Path(tempfile.mkdtemp()) / "x.zarr"
    >>> (store / "v").mkdir(parents=True)
    >>> remove_path(store); store.exists()
    False
    >>> remove_path(store)  # already gone: nothing to do, no error
    """
    quiet_rounds = 0
    for _ in range(100):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not settle:
            return
        quiet_rounds = quiet_rounds + 1 if not path.exists() else 0
        if quiet_rounds >= 5:
            return
        time.sleep(0.05)


def current_umask() -> int:
    """This process's umask, read without changing it (``/proc/self/status``; 0o022 where that is missing).

    >>> 0 <= current_umask() <= 0o777
    True
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_text_atomic(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename).

    ``mode`` sets the permissions (for example ``0o600`` for secrets) before the rename; without it a
    replaced file keeps its mode and a new one gets what ``open()`` would give it (``0o666`` less the
    umask), so a team catalog stays readable by the team.

    >>> import tempfile, stat
    >>> p = write_text_atomic(Path(tempfile.mkdtemp()) / "s", "x", mode=0o600)
    >>> stat.S_IMODE(p.stat().st_mode) == 0o600
    True
    >>> stat.S_IMODE(write_text_atomic(p.parent / "t", "x").stat().st_mode) == 0o666 & ~current_umask()
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is None:
            mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~current_umask()
        os.chmod(tmp, mode)
        crash_point("text:before-rename")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_zarr_atomic(
    ds: Any,
    target: str | os.PathLike[str],
    *,
    encoding: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    progress: bool | str = True,
    consolidated: bool = True,
) -> Path:
    """Write an ``xarray.Dataset`` to a Zarr v3 store at ``target`` atomically, with a progress bar.

    The dataset may be dask-backed (computed chunk by chunk while writing, so memory stays bounded by
    the chunk size). ``progress`` is ``True`` for a tqdm bar, a string to label it, or ``False``.
    Consolidated metadata is written (zarr v3 warns that it is not yet in the spec; that warning is
    silenced here).
    """
    label = progress if isinstance(progress, str) else f"writing {Path(target).name}"
    with atomic_path(target, overwrite=overwrite) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        delayed = ds.to_zarr(
            tmp, mode="w", zarr_format=3, consolidated=consolidated, encoding=encoding, compute=False
        )
        crash_point("zarr:metadata-written")
        if progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=label, unit="task"):
                delayed.compute()
        else:
            delayed.compute()
    return Path(target)
