"""A worker's working copies of backups kept in an object store: held while used, swept once idle.

With S3 a worker builds and reads each backup in a folder on its own disk (`BackupDir.root`). That folder
is only a cache: every file is checked against the sealed manifest before use and fetched again when
missing. Kept for ever, the folders of one namespace after another would fill the worker's emptyDir until
the kubelet evicted the pod in the middle of a task. Nor may a folder go while a task reads it: a task
fetches a file once and then trusts its copy.

So each use of a run's folder holds a shared `flock` on the folder's `.in-use` file and sets the file's
time when it starts and ends (`held`), and `sweep` removes a folder only while holding that lock
exclusively and only when nobody has used the folder for a while. The lock works between the threads and
the processes of one machine sharing the cache; a folder swept is first renamed away, so a user that
opened the lock file just before finds it moved and makes the folder again.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

IN_USE = ".in-use"
"""The lock file of a run folder; its time is when the folder was last taken or given back."""
SWEPT_PREFIX = ".swept-"
"""A folder being removed by a sweep: renamed so, it is out of every user's way at once."""
RUN_FOLDERS = f"*/*/*/{IN_USE}"
"""Run folders below a store's cache root are `<policy>/<namespace>/<run>`, as `layout.run_key`."""


@contextmanager
def held(folder: Path) -> Iterator[None]:
    """Use `folder` (made if missing) for the block: no sweep removes it until the block has ended and the
    folder has then been idle for the sweep's time."""
    descriptor = _take(folder)
    try:
        os.utime(descriptor)
        yield
    finally:
        try:
            os.utime(descriptor)
        finally:
            os.close(descriptor)  # gives the lock back


def sweep(root: Path, idle_seconds: float) -> list[Path]:
    """Remove the run folders under `root` (a store's cache root) that nobody holds and nobody has taken or
    given back for `idle_seconds`; return them. Also finishes the removals of a sweep that was cut short."""
    for leftover in root.glob(f"*/*/{SWEPT_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    removed = []
    for marker in root.glob(RUN_FOLDERS):
        trash = _set_aside(marker, idle_seconds)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(marker.parent)
    return removed


def _take(folder: Path) -> int:
    """An open descriptor of `folder`'s lock file, share-locked, with the folder still in place."""
    while True:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(folder / IN_USE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH)
            if _still_at(descriptor, folder / IN_USE):
                return descriptor
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)  # swept between the open and the lock: take the folder made anew


def _set_aside(marker: Path, idle_seconds: float) -> Path | None:
    """Rename the run folder of `marker` out of the way if it is free and idle; where it now is."""
    try:
        descriptor = os.open(marker, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # in use now
        if not _still_at(descriptor, marker) or time.time() - os.fstat(descriptor).st_mtime < idle_seconds:
            return None
        folder = marker.parent
        trash = folder.with_name(f"{SWEPT_PREFIX}{folder.name}-{secrets.token_hex(4)}")
        os.rename(folder, trash)
        return trash
    finally:
        os.close(descriptor)


def _still_at(descriptor: int, path: Path) -> bool:
    """Whether the open lock file is still the one at `path` (a sweep renames its folder away)."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (opened.st_dev, opened.st_ino)
