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

from shared.backup import BackupDir
from shared.items import GroupResource, ItemRef, Obj
from shared.kinds import RULES, Context, Decision, DetachKind, DetachStep, Move
from shared.kinds.storage import retain_patch
from shared.kube import Kube, NotFound
from shared.models import NamespacePhase
from shared.ordering import DETACH_OWNER_ORDER
from shared.progress import NamespaceRun
from shared.runtime import Runtime
from shared.steps import decisions

PV = GroupResource("persistentvolumes")
DEPENDENT_TYPES = ("pods", "replicasets.apps", "controllerrevisions.apps", "jobs.batch")


def detach(runtime: Runtime, run: NamespaceRun) -> dict[str, int]:
    spec = runtime.run_spec(run)
    member = runtime.member_of(spec)
    progress = runtime.progress(run)
    context = spec.context()
    backup = runtime.backup(run)
    manifest = backup.manifest()
    if manifest is None:
        raise RuntimeError("the backup is not sealed; refusing to change the member")
    backup.require_intact()
    present = sorted(manifest.counts)
    decided = decisions.load(backup)
    progress.totals(run.namespace, detached=_planned(backup, present, decided, context))
    progress.phase(run.namespace, NamespacePhase.DETACHING, "retain volumes")
    retained = _retain_volumes(member, backup.items(PV))
    progress.count(run.namespace, "detached", "retain persistentvolumes", retained)
    skipped: list[tuple[ItemRef, str]] = []
    runtime.guard(run)  # cancelled meanwhile? Deleting owners is the step a rollback must not race
    progress.set(run.namespace, step="delete owners (orphan)")
    deleted_uids: set[str] = set()
    for group_resource in DETACH_OWNER_ORDER:
        if group_resource not in present:
            continue
        owners = [
            obj
            for obj, step in _promoted_steps(backup, group_resource, decided, context, skipped)
            if step.kind is DetachKind.ORPHAN_DELETE
        ]
        runtime.fan_out(lambda obj, gr=group_resource: _orphan_delete(member, gr, obj), owners)
        deleted_uids.update(obj["metadata"]["uid"] for obj in owners)
        progress.count(run.namespace, "detached", group_resource, len(owners))
    progress.set(run.namespace, step="wait for the garbage collector")
    _wait_released(runtime, member, run.namespace, deleted_uids, runtime.settings.detach_timeout)
    runtime.guard(run)
    progress.set(run.namespace, step="set Kosmos markers")
    marked = {}
    for group_resource in sorted(present, key=lambda gr: gr == "pods"):
        if group_resource in DETACH_OWNER_ORDER:
            continue
        patches = [
            (obj, step.patch)
            for obj, step in _promoted_steps(backup, group_resource, decided, context, skipped)
            if step.kind is DetachKind.MARK and step.patch
        ]
        marked[group_resource] = _patch_all(runtime, member, group_resource, patches)
        progress.count(run.namespace, "detached", group_resource, marked[group_resource])
    progress.skip(run.namespace, skipped)
    return marked


def _planned(backup: BackupDir, present: list[str], decided: Mapping[str, Decision], context: Context) -> int:
    """How many objects detach acts on (the total its count runs to): the bound volumes, the owners it
    deletes and the objects it marks. A pass over the items files, type by type, before any change."""
    planned = backup.count(PV)
    for group_resource in present:
        steps = _promoted_steps(backup, group_resource, decided, context, [])
        planned += sum(
            1
            for _, step in steps
            if step.kind is DetachKind.ORPHAN_DELETE or (step.kind is DetachKind.MARK and step.patch)
        )
    return planned


def _promoted_steps(
    backup: BackupDir,
    group_resource: str,
    decided: Mapping[str, Decision],
    context: Context,
    skipped: list[tuple[ItemRef, str]],
) -> list[tuple[Obj, DetachStep]]:
    """The detach step of each backed-up object of one type that is promoted; the others are added to
    `skipped` with their reason."""
    rule = RULES.for_(group_resource)
    steps = []
    for obj in backup.items(group_resource):
        decision = decided[obj["metadata"]["uid"]]
        if decision.move is Move.PROMOTE:
            steps.append((obj, rule.detach(obj, context)))
        else:
            skipped.append((ItemRef.of(group_resource, obj), decision.reason))
    return steps


def _retain_volumes(member: Kube, volumes: Iterable[Obj]) -> int:
    resource = member.discovery.by_group_resource(PV)
    count = 0
    for volume in volumes:
        live = member.get(resource, "", volume["metadata"]["name"]) if resource else None
        patch = retain_patch(live) if live else None
        if patch:
            member.patch(resource, "", volume["metadata"]["name"], patch)
        count += live is not None
    return count


def _orphan_delete(member: Kube, group_resource: str, obj: Obj) -> None:
    resource = member.discovery.by_group_resource(group_resource)
    metadata = obj["metadata"]
    if resource is None:
        return
    live = member.get(resource, metadata.get("namespace", ""), metadata["name"])
    if live is None or live["metadata"].get("uid") != metadata["uid"]:
        return
    if live["metadata"].get("deletionTimestamp"):
        return
    member.delete(
        resource, metadata.get("namespace", ""), metadata["name"], propagation="Orphan", uid=metadata["uid"]
    )


def _wait_released(
    runtime: Runtime, member: Kube, namespace: str, owner_uids: set[str], timeout: float
) -> None:
    """Orphan deletion is asynchronous: the GC strips the ownerReferences (0.04-0.07 s measured)."""
    if not owner_uids:
        return
    deadline = time.monotonic() + timeout
    while True:
        holding = _still_owned(runtime, member, namespace, owner_uids)
        if not holding:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the member's garbage collector did not release {', '.join(holding[:5])} "
                f"within {timeout:.0f}s"
            )
        time.sleep(0.05)


def _still_owned(runtime: Runtime, member: Kube, namespace: str, owner_uids: set[str]) -> list[str]:
    def holding(group_resource: str) -> list[str]:
        resource = member.discovery.by_group_resource(group_resource)
        if resource is None:
            return []
        return [
            f"{group_resource}/{obj['metadata']['name']}"
            for obj in member.list(resource, namespace)
            if any(ref.get("uid") in owner_uids for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    return [name for names in runtime.fan_out(holding, DEPENDENT_TYPES) for name in names]


def _patch_all(runtime: Runtime, member: Kube, group_resource: str, steps: list[tuple[Obj, dict]]) -> int:
    resource = member.discovery.by_group_resource(group_resource)
    if resource is None or not steps:
        return 0

    def apply(item: tuple[Obj, dict]) -> int:
        obj, patch = item
        metadata = obj["metadata"]
        try:
            member.patch(resource, metadata.get("namespace", ""), metadata["name"], patch)
        except NotFound:
            return 0
        return 1

    return sum(runtime.fan_out(apply, steps))
