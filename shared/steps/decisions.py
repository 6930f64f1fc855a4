"""The per-object decisions of one namespace (promote, stay, skip), computed once after the seal.

Decisions depend on other objects (a pod stays when its StatefulSet stays), so they are made over the
whole backup at once and stored beside it; every later step, on any worker, reads the same answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import orjson

from shared.backup import BackupDir
from shared.items import Obj
from shared.kinds import Decision, Move
from shared.kinds.decisions import decide_all

FILE = "decisions.json"


def _all_items(backup: BackupDir) -> Iterator[tuple[str, Obj]]:
    manifest = backup.manifest()
    assert manifest is not None
    for group_resource in sorted(manifest.counts):
        for obj in backup.items(group_resource):
            yield group_resource, obj


def record(backup: BackupDir) -> dict[str, Decision]:
    decisions = decide_all(_all_items(backup))
    payload = {uid: {"move": d.move.value, "reason": d.reason} for uid, d in sorted(decisions.items())}
    backup.write_derived(FILE, orjson.dumps(payload))
    return decisions


def load(backup: BackupDir) -> Mapping[str, Decision]:
    """The recorded decisions, parsed once per process and file version: every rebuild batch of a
    namespace needs them, and a namespace of 10,000 objects has 200 batches."""
    path = backup.root / FILE
    try:
        version = path.stat()
    except FileNotFoundError:
        return record(backup)
    return _parsed(path, version.st_mtime_ns, version.st_size)


@lru_cache(maxsize=16)
def _parsed(path: Path, mtime_ns: int, size: int) -> Mapping[str, Decision]:
    decisions = {
        uid: Decision(Move(d["move"]), d["reason"]) for uid, d in orjson.loads(path.read_bytes()).items()
    }
    return MappingProxyType(decisions)
