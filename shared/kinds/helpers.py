"""Metadata reading and merge-patch building shared by several kind rules (Velero's `actionhelpers`).

Patches are JSON merge patches (RFC 7386) that carry only the keys that change, as the Kosmos code
computes them between the backed-up and the modified copy: a re-run on an
object already in the wanted state produces no patch at all, and a `null` value removes a key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from shared.items import Obj
from shared.kinds.registry import Decision, DetachKind, DetachStep, Move

ALREADY_MARKED = "already marked"


def metadata_map(obj: Obj, field: str) -> dict[str, str]:
    """`metadata.labels` or `metadata.annotations`, empty when absent or null."""
    return (obj.get("metadata") or {}).get(field) or {}


def controller_ref(obj: Obj) -> Obj | None:
    """The owner reference marked `controller: true`: the one object that manages `obj`."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def controller_kind(obj: Obj) -> str | None:
    return (controller_ref(obj) or {}).get("kind")


def stays_with_its_controller(obj: Obj, promoted_with: Collection[str]) -> Decision | None:
    """STAY when `obj`'s controller is of a kind not promoted with it (an operator's custom resource):
    that controller keeps running in the member, and would manage what was promoted, or re-create what
    detach deletes, while a control-plane copy manages it too. None when `obj` may be promoted."""
    ref = controller_ref(obj)
    if ref is None or ref.get("kind") in promoted_with:
        return None
    why = f"controlled by {ref.get('kind')} {ref.get('name')}, a kind that is not promoted"
    return Decision(Move.STAY, why)


def set_metadata(body: Obj, field: str, key: str, value: str) -> None:
    """Set one label or annotation on the top-level metadata of `body`, in place."""
    metadata = body.setdefault("metadata", {})
    metadata[field] = {**(metadata.get(field) or {}), key: value}


def mark(
    obj: Obj,
    reason: str,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    drop_owner_references: bool = False,
) -> DetachStep:
    """A MARK step setting these labels/annotations (and removing ownerReferences) where they differ;
    a NONE step when `obj` is already marked (the patch is then skipped, as in the
    Kosmos code)."""
    patch: Obj = {}
    for field, wanted in (("labels", labels or {}), ("annotations", annotations or {})):
        current = metadata_map(obj, field)
        changed = {key: value for key, value in wanted.items() if current.get(key) != value}
        if changed:
            patch[field] = changed
    if drop_owner_references and obj["metadata"].get("ownerReferences"):
        patch["ownerReferences"] = None
    if not patch:
        return DetachStep(DetachKind.NONE, reason=ALREADY_MARKED)
    return DetachStep(DetachKind.MARK, {"metadata": patch}, reason=reason)


def remove_markers(live: Obj, *, labels: Iterable[str] = (), annotations: Iterable[str] = ()) -> Obj | None:
    """Merge patch removing those of these labels/annotations that `live` carries, or None."""
    patch: Obj = {}
    for field, keys in (("labels", labels), ("annotations", annotations)):
        present = {key: None for key in keys if key in metadata_map(live, field)}
        if present:
            patch[field] = present
    return {"metadata": patch} if patch else None


def restore_metadata(
    backed_up: Obj, live: Obj, owner_uids: Mapping[str, str], *, owner_references: bool
) -> Obj | None:
    """Merge patch giving `live` exactly the labels and annotations it was backed up with (changed keys
    set, keys added since then removed: our markers, and whatever Kosmos copied down from the control
    plane), or None when they already match.

    With `owner_references`, backed-up owner references are put back too (the original never did,
    docs/design.md#original-kosmos-promote), but only those whose owner appears in `owner_uids` (backed-up
    UID → UID of that owner now, e.g. after the rollback re-created it). A reference to any other UID must
    not be written: the garbage collector deletes a dependent whose owner UID does not exist
    (docs/control-plane-traps.md#stale-ownerreferences).
    """
    patch: Obj = {}
    for field in ("labels", "annotations"):
        changes = _map_changes(metadata_map(backed_up, field), metadata_map(live, field))
        if changes:
            patch[field] = changes
    if owner_references:
        refs = _restored_owner_references(backed_up, live, owner_uids)
        if refs is not None:
            patch["ownerReferences"] = refs
    return {"metadata": patch} if patch else None


def _map_changes(wanted: Mapping[str, str], current: Mapping[str, str]) -> dict[str, Any]:
    changes: dict[str, Any] = {key: value for key, value in wanted.items() if current.get(key) != value}
    changes.update({key: None for key in current if key not in wanted})
    return changes


def _restored_owner_references(backed_up: Obj, live: Obj, owner_uids: Mapping[str, str]) -> list[Obj] | None:
    """The live references plus the backed-up ones that are missing and whose owner exists; None if
    nothing is missing. A second controller reference is never added (the API server refuses it)."""
    current: list[Obj] = list(live["metadata"].get("ownerReferences") or [])
    present = {ref.get("uid") for ref in current}
    has_controller = any(ref.get("controller") for ref in current)
    added = []
    for ref in backed_up["metadata"].get("ownerReferences") or []:
        uid = owner_uids.get(ref.get("uid", ""))
        if uid is None or uid in present or (ref.get("controller") and has_controller):
            continue
        added.append({**ref, "uid": uid})
    return [*current, *added] if added else None
