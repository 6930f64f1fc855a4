"""A policy's status lists every namespace, and it must stay storable.

etcd refuses to store an object over 1.5 MiB, and a custom resource is stored as its JSON
(docs/control-plane-traps.md#object-size). A full entry is about 850 bytes plus ~120 for each object
the namespace left behind, so a policy of a thousand namespaces that left a few objects each, or one
namespace that left thousands, would get a status the API server refuses: the status would stop moving
while the run goes on unseen, and `kubectl wait` would never return. So the namespaces' part of the
status is kept within NAMESPACES_BUDGET bytes, shortened step by step until it fits:

1. each namespace lists its first SKIPPED_LISTED objects left behind (`counts.skipped` keeps how many);
2. namespaces that ended well (Completed, RolledBack) keep their name, phase, counts and backup location
   (what `kpromote rollback --backup` needs);
3. every namespace keeps its name, phase, counts and message;
4. every namespace keeps its name and phase.

A policy selects at most `shared.selection.MAX_NAMESPACES` (1,000) namespaces, so the last step always
fits. The status is a view: every object left behind, and why, is in the backup's `plan.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from shared.models.policy import NamespacePhase, NamespaceStatus

NAMESPACES_BUDGET = 1024 * 1024
"""Bytes of JSON for status.namespaces: etcd's 1.5 MiB less room for the spec, metadata and conditions."""
SKIPPED_LISTED = 20
"""Objects left behind listed per namespace once the status has to be shortened."""
ENDED_WELL = frozenset({NamespacePhase.COMPLETED.value, NamespacePhase.ROLLED_BACK.value})

Entry = dict[str, Any]


def _fewer_skipped(entry: Entry) -> Entry:
    if len(entry.get("skipped") or ()) <= SKIPPED_LISTED:
        return entry
    return {**entry, "skipped": entry["skipped"][:SKIPPED_LISTED]}


def _kept(*keys: str) -> Callable[[Entry], Entry]:
    return lambda entry: {key: entry[key] for key in keys if key in entry}


_brief = _kept("name", "phase", "counts", "backupLocation")


def _brief_if_ended_well(entry: Entry) -> Entry:
    return _brief(entry) if entry.get("phase") in ENDED_WELL else entry


SHORTENINGS: tuple[Callable[[Entry], Entry], ...] = (
    _fewer_skipped,
    _brief_if_ended_well,
    _kept("name", "phase", "counts", "message"),
    _kept("name", "phase"),
)


def render_within_budget(
    namespaces: Sequence[NamespaceStatus], budget: int = NAMESPACES_BUDGET
) -> list[Entry]:
    """The namespaces as status.namespaces lists them: whole if they fit in `budget` bytes of JSON,
    otherwise shortened by as many of the steps above as it takes."""
    rendered = [ns.model_dump(mode="json", by_alias=True, exclude_none=True) for ns in namespaces]
    for shorten in SHORTENINGS:
        if len(orjson.dumps(rendered)) <= budget:
            break
        rendered = [shorten(entry) for entry in rendered]
    return rendered
