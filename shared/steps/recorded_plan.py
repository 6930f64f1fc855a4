"""The namespace's plan as recorded beside its sealed backup: written once by the backup step, read by
every later step on any worker, so all of them execute the same decisions (`shared.plan`)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

from shared.backup import PLAN_NAME, BackupDir
from shared.errors import NotSealed
from shared.items import Obj
from shared.kinds import Context
from shared.plan import NamespacePlan, plan_namespace
from shared.single_flight import SingleFlight


def _all_items(backup: BackupDir) -> Iterator[tuple[str, Obj]]:
    manifest = backup.manifest()
    if manifest is None:
        raise NotSealed("the backup is not sealed, so it has no plan")
    for group_resource in sorted(manifest.counts):
        for obj in backup.items(group_resource):
            yield group_resource, obj


def record(backup: BackupDir, context: Context) -> NamespacePlan:
    """Plan over the sealed items and record the plan (idempotent: the same items give the same bytes)."""
    plan = plan_namespace(_all_items(backup), context)
    data = plan.dumps()
    backup.write_derived(PLAN_NAME, data)
    _keep(data, plan)  # the next step of this namespace often runs in this process
    return plan


def load(backup: BackupDir, context: Context) -> NamespacePlan:
    """The recorded plan; call `backup.require_intact()` first, which vouches for its bytes. A sealed
    backup whose backup step stopped before recording its plan gets it recorded now, exactly as that step
    would have (the plan depends only on the sealed items): a compensation must not fail for it.

    Parsed once per process and content, found by the digest the manifest records for it: every rebuild
    batch of a 10,000-object namespace needs the plan (200 batches, a plan of megabytes), every step of
    every namespace in flight on this worker needs its own (parsing them again was a fifth of a worker's
    CPU with 20 namespaces), and a plan is frozen, so sharing it is safe. What is cached is keyed by the
    sha256 of the bytes it was parsed from, so a hit is exactly the content the manifest vouches for.
    The cache holds plans of up to `_ENTRIES_KEPT` objects in all (about 0.5 KiB each), dropping the
    least recently used first."""
    manifest = backup.manifest()
    recorded = manifest.files.get(PLAN_NAME) if manifest is not None else None
    if recorded is None:
        return _read(backup, context)
    plan = _cached(recorded.sha256)
    if plan is not None:
        return plan
    with _loading.hold(recorded.sha256):  # the batches of a large namespace start together
        return _cached(recorded.sha256) or _read(backup, context)


def _cached(sha256: str) -> NamespacePlan | None:
    with _lock:
        plan = _parsed.pop(sha256, None)
        if plan is not None:
            _parsed[sha256] = plan  # most recently used last
        return plan


def _read(backup: BackupDir, context: Context) -> NamespacePlan:
    data = backup.read_derived(PLAN_NAME)
    if data is None:
        return record(backup, context)
    plan = NamespacePlan.loads(data)
    _keep(data, plan)
    return plan


def _keep(data: bytes, plan: NamespacePlan) -> None:
    with _lock:
        _parsed[hashlib.sha256(data).hexdigest()] = plan
        while len(_parsed) > 1 and sum(len(kept.objects) for kept in _parsed.values()) > _ENTRIES_KEPT:
            _parsed.pop(next(iter(_parsed)))


_ENTRIES_KEPT = 50_000
_parsed: dict[str, NamespacePlan] = {}
_lock = threading.Lock()
_loading = SingleFlight()
