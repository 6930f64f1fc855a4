"""Files that appear whole and durable, or not at all.

A backup is written on one shared volume, and at-least-once delivery can run the same backup task twice at
once on different machines, while a crash or a power cut can stop either at any byte. So every file of a
backup (parts, items files, the archive, the manifest, the plan) is written through `atomic_file`:
readers see the previous version or the new one, never a mixture and never half a file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shared.backup.integrity import BUFFER


def write_atomically(final: Path, data: bytes) -> None:
    """Small files beside a backup (the plan): whole and durable, or the previous version, even
    when two threads of one worker write the same file at once."""
    with atomic_file(final) as out:
        out.write(data)


@contextmanager
def atomic_file(final: Path, *, sync_directory: bool = True) -> Iterator[IO[bytes]]:
    """A 0600 file that appears at `final` complete and durable, or not at all.

    Written under a random name in the same directory (so concurrent writers never share a file), then
    fsynced, renamed over `final` and the directory fsynced, so a crash leaves the old file or the new
    one. The temporary is removed on error. `sync_directory=False` leaves the rename's durability to the
    caller, who syncs the directory once after several files. An empty file is not synced at all: lost
    in a power cut, it reads as what it held, nothing (only parts of empty types are empty)."""
    temporary = final.with_name(f"{final.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with open(descriptor, "wb", buffering=BUFFER) as out:
            yield out
            out.flush()
            empty = out.tell() == 0
            if not empty:
                os.fsync(out.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if sync_directory and not empty:
        fsync_directory(final.parent)


def fsync_directory(directory: Path) -> None:
    """Make the renames into `directory` durable (the file's own fsync does not cover its name)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
