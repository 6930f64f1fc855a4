"""The sealed objects of one group-resource as steps read them: `items/<gr>.jsonl`, sorted by (namespace,
name) and deduplicated, and `items/<gr>.idx`, where each of its lines starts.

Steps read these files, not the archive, because a rebuild batch deep into a large group-resource must
seek straight to its own lines. Merging a part holds only `(namespace, name) -> line offset`, never the
objects, so memory does not depend on their size.
"""

from __future__ import annotations

import itertools
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from shared.backup.atomic import atomic_file
from shared.backup.errors import BackupError
from shared.backup.integrity import BUFFER
from shared.backup.layout import object_key

OFFSET: Final = struct.Struct("<Q")
"""One entry of `items/<gr>.idx`: the byte offset where line i of `items/<gr>.jsonl` starts."""


def merge_part(part_path: Path, lines_path: Path, index_path: Path, group_resource: str) -> float:
    """Sort and deduplicate one part into `lines_path` plus its offset index; return the part's mtime. An
    empty part (most types of a namespace) gets no items files.

    Of duplicates (a LIST restarted after an expired continue token repeats objects) the last line wins,
    being the latest read. The directory is not synced here: the seal syncs it once, after every part."""
    positions: dict[tuple[str, str], int] = {}
    with part_path.open("rb", buffering=BUFFER) as part:
        stat_result = os.fstat(part.fileno())
        mtime = stat_result.st_mtime
        if stat_result.st_size == 0:
            return mtime
        line_start = 0
        for number, line in enumerate(part, start=1):
            where = f"line {number} of part {group_resource}"
            if not line.endswith(b"\n"):
                raise BackupError(f"{where} is truncated")
            namespace, name = object_key(_loads(line, where), where)
            positions[sys.intern(namespace), name] = line_start
            line_start += len(line)
        order = sorted(positions.items())
        del positions
        with (
            atomic_file(lines_path, sync_directory=False) as out,
            atomic_file(index_path, sync_directory=False) as index,
        ):
            written = 0
            for _, line_start in order:
                part.seek(line_start)
                index.write(OFFSET.pack(written))
                written += out.write(part.readline())
    return mtime


def read_items(
    lines_path: Path, index_path: Path, offset: int, limit: int | None
) -> Iterator[dict[str, Any]]:
    """Objects `[offset, offset + limit)` (all from `offset` when `limit` is None), seeking through the
    index to the first one."""
    with index_path.open("rb") as index:
        index.seek(offset * OFFSET.size)
        entry = index.read(OFFSET.size)
    if len(entry) < OFFSET.size:
        return
    with lines_path.open("rb", buffering=BUFFER) as lines:
        lines.seek(OFFSET.unpack(entry)[0])
        for line in itertools.islice(lines, limit):
            yield orjson.loads(line)


def item_count(index_path: Path) -> int:
    """How many objects an items file holds: one index entry each."""
    return index_path.stat().st_size // OFFSET.size


def _loads(line: bytes, where: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise BackupError(f"{where} is not JSON: {error}") from error
