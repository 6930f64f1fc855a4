"""Detach in the member: the only step that changes the member, and it never deletes a pod.

Order (docs/ordering.md#detach-order): bound PVs switched to Retain first, so that no later
delete anywhere can reclaim a volume; owners deleted top-down with Orphan propagation (a Deployment
being deleted does nothing, so its ReplicaSets cannot be re-created), then we wait until the garbage
collector has released every dependent; finally the Kosmos markers, pods last, because from that
moment Kosmos treats the pods as its own. Every action is idempotent: a re-run skips what is done.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from functools import partial

from shared.errors import ChangedSinceBackup, NotInTime, NotSealed
from shared.items import GroupResource, ItemRef, Obj
from shared.kinds import RULES, DetachKind
from shared.kinds.storage import retain_patch
from shared.kube import ApiResource, Conflict, Kube, NotFound
from shared.models import NamespacePhase
from shared.plan import NamespacePlan, ObjectPlan
from shared.progress import NamespaceRun
from shared.runtime import Runtime
from shared.steps import recorded_plan

PV = GroupResource("persistentvolumes")
_DELETE_ATTEMPTS = 5
"""Reads of an owner before its delete gives up on a resourceVersion that keeps moving (status updates)."""


def detach(runtime: Runtime, run: NamespaceRun) -> dict[str, int]:
    spec = runtime.run_spec(run)
    member = runtime.member_of(spec)
    progress = runtime.progress(run)
    backup = runtime.backup(run)
    if backup.manifest() is None:
        raise NotSealed("the backup is not sealed; refusing to change the member")
    backup.require_intact()
    plan = recorded_plan.load(backup, spec.context())
    actions = plan.detach_actions()
    volumes = backup.count(PV)
    progress.totals(
        run.namespace, detached=volumes + actions[DetachKind.ORPHAN_DELETE] + actions[DetachKind.MARK]
    )
    progress.phase(run.namespace, NamespacePhase.DETACHING, "retain volumes")
    retained = _retain_volumes(runtime, member, backup.items(PV))
    progress.count(run.namespace, "detached", "retain persistentvolumes", retained)
    runtime.guard(run)  # cancelled meanwhile? Deleting owners is the step a rollback must not race
    progress.set(run.namespace, step="delete owners (orphan)")
    owners = plan.owners_top_down()
    deleted_uids: set[str] = set()
    for group_resource in owners:
        resource = member.discovery.require(group_resource)
        entries = plan.detached(group_resource, DetachKind.ORPHAN_DELETE)
        generations = _generations(backup.items(group_resource))
        runtime.fan_out(partial(_orphan_delete, member, resource, generations), entries)
        deleted_uids.update(entry.uid for entry in entries)
        progress.count(run.namespace, "detached", group_resource, len(entries))
    progress.set(run.namespace, step="wait for the garbage collector")
    dependents = sorted({gr for owner in owners for gr in RULES.for_(owner).dependents})
    _wait_released(runtime, member, run.namespace, dependents, deleted_uids, runtime.settings.detach_timeout)
    runtime.guard(run)
    progress.set(run.namespace, step="set Kosmos markers")
    marked = _mark(runtime, member, plan)
    for group_resource, count in marked.items():
        progress.count(run.namespace, "detached", group_resource, count)
    progress.skip(run.namespace, plan.not_moved())
    return marked


def _mark(runtime: Runtime, member: Kube, plan: NamespacePlan) -> dict[str, int]:
    """Patch every object the plan marks, type by type, pods last: from that moment Kosmos treats the pods
    as its own, so everything they refer to is already marked."""
    by_type: dict[str, list[tuple[ItemRef, Obj]]] = {}
    for entry in plan.detached(None, DetachKind.MARK):
        if entry.detach is not None and entry.detach.patch:  # a MARK step always carries its patch
            by_type.setdefault(entry.ref.group_resource, []).append((entry.ref, entry.detach.patch))
    marked = {}
    for group_resource in sorted(by_type, key=lambda gr: (gr == "pods", gr)):
        apply = partial(_apply_mark, member, member.discovery.require(group_resource))
        marked[group_resource] = sum(runtime.fan_out(apply, by_type[group_resource]))
    return marked


def _apply_mark(member: Kube, resource: ApiResource, item: tuple[ItemRef, Obj]) -> int:
    """1 when marked, 0 when the object is gone."""
    ref, patch = item
    try:
        member.patch(resource, ref.namespace, ref.name, patch)
    except NotFound:
        return 0
    return 1


def _retain_volumes(runtime: Runtime, member: Kube, volumes: Iterable[Obj]) -> int:
    """Every backed-up PV to Retain before anything else changes, so that no later delete anywhere can
    reclaim a volume; returns how many still exist."""
    names = [volume["metadata"]["name"] for volume in volumes]
    if not names:
        return 0
    resource = member.discovery.require(PV)

    def retain(name: str) -> int:
        live = member.get(resource, "", name)
        patch = retain_patch(live) if live else None
        if patch:
            member.patch(resource, "", name, patch)
        return live is not None

    return sum(runtime.fan_out(retain, names))


def _generations(owners: Iterable[Obj]) -> dict[str, int | None]:
    return {owner["metadata"]["uid"]: owner["metadata"].get("generation") for owner in owners}


def _orphan_delete(
    member: Kube, resource: ApiResource, generations: Mapping[str, int | None], entry: ObjectPlan
) -> None:
    """Delete the owner only as it was backed up. One whose spec changed since (scaled by an autoscaler,
    rolled out) would reach the control plane stale, its new pods or ReplicaSet left unmanaged in the
    member, and a rollback would scale it back; so the step fails and nothing of it is deleted. The
    resourceVersion just read is a precondition, so a change between this check and the delete is seen
    too; a status update also changes it, hence the read again."""
    ref = entry.ref
    for _ in range(_DELETE_ATTEMPTS):
        live = member.get(resource, ref.namespace, ref.name)
        metadata = (live or {}).get("metadata") or {}
        if live is None or metadata.get("uid") != entry.uid or metadata.get("deletionTimestamp"):
            return
        backed_up = generations.get(entry.uid)
        if backed_up is not None and metadata.get("generation") != backed_up:
            raise ChangedSinceBackup(
                f"{resource.kind} {ref.name} changed in the member after the backup (generation {backed_up} "
                f"→ {metadata.get('generation')}: scaled or rolled out meanwhile, by an autoscaler say); "
                f"nothing of it was deleted. Promote the namespace again with a new policy (a new run backs "
                f"it up as it is then), with its autoscalers paused if they keep changing it"
            )
        try:
            member.delete(
                resource,
                ref.namespace,
                ref.name,
                propagation="Orphan",
                uid=entry.uid,
                resource_version=metadata["resourceVersion"],
            )
        except Conflict:
            continue
        return
    raise ChangedSinceBackup(
        f"{resource.kind} {ref.name} kept changing in the member ({_DELETE_ATTEMPTS} reads in a row were "
        f"stale by the time it was deleted); nothing of it was deleted"
    )


def _wait_released(
    runtime: Runtime,
    member: Kube,
    namespace: str,
    dependents: list[str],
    owner_uids: set[str],
    timeout: float,
) -> None:
    """Orphan deletion is asynchronous: the GC strips the ownerReferences (0.04-0.07 s measured). Only
    the types the deleted owners' rules say they own are listed."""
    if not owner_uids:
        return
    deadline = time.monotonic() + timeout
    while True:
        holding = _still_owned(runtime, member, namespace, dependents, owner_uids)
        if not holding:
            return
        if time.monotonic() > deadline:
            raise NotInTime(
                f"the member's garbage collector did not release {', '.join(holding[:5])} "
                f"within {timeout:.0f}s"
            )
        time.sleep(0.05)


def _still_owned(
    runtime: Runtime, member: Kube, namespace: str, dependents: list[str], owner_uids: set[str]
) -> list[str]:
    def holding(group_resource: str) -> list[str]:
        return [
            f"{group_resource}/{obj['metadata']['name']}"
            for obj in member.list(member.discovery.require(group_resource), namespace)
            if any(ref.get("uid") in owner_uids for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    return [name for names in runtime.fan_out(holding, dependents) for name in names]
