"""Atomic writes: every store or file the platform writes goes to a temporary sibling first and is
renamed into place only when complete, so a failure or Ctrl-C never leaves half a cube behind.

This module is the one way to do that; cube generation, regional cubes, re-chunking and training-set
materialisation all call :func:`write_zarr_atomic`, catalogs and state files :func:`write_text_atomic`.

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
import os
import shutil
import signal
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

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "f.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> (d / "f.txt").read_text()
    'hi'
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise EsdlError(f"{target} already exists; pass overwrite=True (or --overwrite) to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    # the writer holds a lock on a marker beside its temporary for as long as it lives (the kernel drops
    # it when the process dies, even by SIGKILL): remove_stale_temporaries tells a live write from a dead one
    marker = tmp.with_name(tmp.name + WRITING_SUFFIX)
    fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        crash_point("atomic:writing")
        yield tmp
        crash_point("atomic:before-rename")
        if target.exists():  # overwrite: move the old one aside, then swap, then drop the old one
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            remove_path(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            remove_path(tmp, settle=True)
        marker.unlink(missing_ok=True)
        os.close(fd)


#: the marker a live write keeps locked beside its temporary (``.NAME.tmp-XXXXXXXX.writing``)
WRITING_SUFFIX = ".writing"
#: a temporary without a marker (from before markers existed) is stale after this many seconds
UNMARKED_STALE_S = 3600.0


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of writes into ``folder`` that died (killed, crashed, power cut) and
    return them: a temporary whose writer no longer holds its marker's lock. A live write's temporary,
    in this process or another, is never touched.

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
    removed = []
    for tmp in sorted(folder.glob(".*.tmp-*")):
        if tmp.name.endswith(WRITING_SUFFIX):
            continue
        marker = tmp.with_name(tmp.name + WRITING_SUFFIX)
        if marker.exists():
            if not _writer_gone(marker):
                continue  # its writer is alive, or it is not ours to judge
        elif time.time() - tmp.stat().st_mtime < UNMARKED_STALE_S:
            continue
        remove_path(tmp)
        marker.unlink(missing_ok=True)
        removed.append(tmp)
    for marker in folder.glob(f".*.tmp-*{WRITING_SUFFIX}"):  # a marker whose temporary is gone
        if not marker.with_name(marker.name.removesuffix(WRITING_SUFFIX)).exists() and _writer_gone(marker):
            marker.unlink(missing_ok=True)
    return removed


def _writer_gone(marker: Path) -> bool:
    """Whether the write that made ``marker`` has ended (nobody holds its lock); ``False`` when the marker
    cannot be opened (another person's, no permission: not ours to judge)."""
    try:
        fd = os.open(marker, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


#: for crash tests only: ``ESDL_CRASH_AT=<point>`` makes the process kill itself (SIGKILL) at that point
CRASH_VARIABLE = "ESDL_CRASH_AT"


def crash_point(name: str) -> None:
    """Die at once (SIGKILL, no clean-up, as a power cut or the OOM killer would) if ``ESDL_CRASH_AT`` names
    this point: the crash tests' way to stop a write exactly there. Does nothing otherwise.

    >>> crash_point("atomic:writing")  # ESDL_CRASH_AT is not set: nothing happens
    """
    if os.environ.get(CRASH_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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
        if progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=label, unit="task"):
                delayed.compute()
        else:
            delayed.compute()
    return Path(target)
