"""Rollback of one namespace: the member back exactly as it was, then the control plane emptied of what
this migration created. The same routine serves a user's rollback and the compensation of a failure.

It derives what to do from the sealed backup and the live clusters, never from a record of what the
forward steps did, so it undoes exactly what happened however far the migration got, and it can run
again after a crash (or twice at once) with the same result. Order is what keeps data and pods alive
(docs/ordering.md#rollback-order):

1. member pods lose their Kosmos markers, so Kosmos stops syncing them and a control-plane delete can no
   longer reach them;
2. member owners are re-created from the backup, bottom-up (ReplicaSets before Deployments), and adopt
   the running pods; every other member object gets its backed-up metadata back;
3. control-plane markers come off (and control-plane PVs go to Retain) before anything there is deleted;
4. control-plane objects this run created (our `promote.kosmos.io/run` annotation) are deleted, pods with
   grace period 0; anything that existed before the migration has no such annotation and is left alone.
   A cluster-scoped object a migration created (a CRD, a StorageClass, a PriorityClass) is deleted only
   when no other claimed namespace, of any policy, still uses it, and a CRD only while no custom resource
   of it is left outside this namespace: what is kept, and why, is reported;
5. last, the member PVs get their original reclaim policy back, once nothing can propagate a delete.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.backup import BackupDir
from shared.claims import Claims, ClaimState
from shared.items import Obj
from shared.kinds import RULES, Context, Decision, DetachKind, Move
from shared.kinds.storage import reclaim_restore_patch
from shared.kube import AlreadyExists, ApiResource, Forbidden, Kube, NotFound
from shared.markers import PROMOTED_BY, PROMOTED_IN_RUN
from shared.progress import NamespaceRun, Progress
from shared.runtime import Runtime
from shared.sanitize import strip_for_rebuild
from shared.steps import decisions

RECREATE_ORDER = ("replicasets.apps", "statefulsets.apps", "cronjobs.batch", "deployments.apps")
"""Bottom-up: a Deployment created before its ReplicaSets makes its own and loses the history
(docs/control-plane-traps.md#deployment-before-its-replicasets)."""
CRDS = "customresourcedefinitions.apiextensions.k8s.io"
NAMESPACED_DELETE_ORDER = ("pods",)
"""Pods first, with grace 0: bound pods deleted with a grace period stay Terminating without a kubelet."""


@dataclass
class RollbackReport:
    recreated: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Control-plane objects a migration created that this rollback left because others still use them."""
    differences: list[str] = field(default_factory=list)
    """What still differs from the backup afterwards: empty means the member is as it was."""


def rollback(runtime: Runtime, run: NamespaceRun, progress: Progress | None = None) -> RollbackReport:
    """Roll one namespace back; what it did so far goes to `progress` (a worker's), if given."""
    backup = runtime.backup(run)
    report = RollbackReport()
    if backup.manifest() is None:
        return report  # detach only runs after the seal: without a sealed backup nothing was changed
    backup.require_intact()  # a tampered backup is refused before anything is touched
    spec = runtime.run_spec(run)
    context = spec.context()
    member = runtime.member_of(spec)
    # Types the run backed up or created that this process may have cached before they existed.
    for kube in (member, runtime.control_plane):
        kube.discovery.refresh_if_loaded_before(spec.started)
    decided = decisions.load(backup)

    def counted(**counts: int) -> None:
        if progress is not None:
            progress.rollback_counts(run.namespace, **counts)

    _revert_member_objects(member, backup, decided, context, {}, report, only=("pods",))
    unmarked = len(report.reverted)
    counted(podsUnmarked=unmarked)
    owner_uids = _recreate_owners(member, backup, decided, report)
    counted(ownersRecreated=len(report.recreated))
    _revert_member_objects(member, backup, decided, context, owner_uids, report, only=None)
    counted(objectsRestored=len(report.reverted) - unmarked)
    _clear_control_plane(
        runtime.control_plane,
        backup,
        run,
        context,
        report,
        runtime.settings.adoption_timeout,
        _used_elsewhere(runtime.claims, run),
    )
    counted(objectsDeleted=len(report.deleted), kept=len(report.kept))
    _restore_reclaim_policies(member, backup, report)
    deadline = time.monotonic() + runtime.settings.adoption_timeout
    while (
        differences := member_differences(member, backup, decided, owner_uids)
    ) and time.monotonic() < deadline:
        time.sleep(0.1)  # re-created owners adopt their pods asynchronously (0.06 s measured)
    report.differences = differences
    return report


def _promoted(backup: BackupDir, decided: Mapping[str, Decision], group_resource: str) -> list[Obj]:
    return [o for o in backup.items(group_resource) if decided[o["metadata"]["uid"]].move is Move.PROMOTE]


def _resource(kube: Kube, group_resource: str) -> ApiResource | None:
    return kube.discovery.by_group_resource(group_resource)


def _recreate_owners(
    member: Kube, backup: BackupDir, decided: Mapping[str, Decision], report: RollbackReport
) -> dict[str, str]:
    """Backed-up owner UID -> the UID of that owner in the member now (re-created ones get a new UID)."""
    owner_uids: dict[str, str] = {}
    for group_resource in RECREATE_ORDER:
        resource = _resource(member, group_resource)
        if resource is None:
            continue
        for obj in _promoted(backup, decided, group_resource):
            metadata = obj["metadata"]
            live = member.get(resource, metadata["namespace"], metadata["name"])
            if live is None or live["metadata"].get("deletionTimestamp"):
                live = _create(member, resource, strip_for_rebuild(obj))
                report.recreated.append(f"{group_resource} {metadata['name']}")
            owner_uids[metadata["uid"]] = live["metadata"]["uid"]
        if group_resource == "replicasets.apps":
            _settle()
    return owner_uids


def _create(kube: Kube, resource: ApiResource, body: Obj) -> Obj:
    namespace = body["metadata"].get("namespace") if resource.namespaced else None
    try:
        return kube.create(resource, body, namespace)
    except AlreadyExists:
        existing = kube.get(resource, namespace or "", body["metadata"]["name"])
        assert existing is not None
        return existing


def _settle() -> None:
    """Give the member's ReplicaSet controller a moment to adopt the pods before Deployments appear."""
    time.sleep(0.2)


def _revert_member_objects(
    member: Kube,
    backup: BackupDir,
    decided: Mapping[str, Decision],
    context: Context,
    owner_uids: dict[str, str],
    report: RollbackReport,
    only: tuple[str, ...] | None,
) -> None:
    manifest = backup.manifest()
    assert manifest is not None
    for group_resource in sorted(manifest.counts):
        if (only is not None and group_resource not in only) or group_resource in RECREATE_ORDER:
            continue
        resource = _resource(member, group_resource)
        rule = RULES.for_(group_resource)
        if resource is None:
            continue
        for obj in _promoted(backup, decided, group_resource):
            if rule.detach(obj, context).kind is not DetachKind.MARK:
                continue
            metadata = obj["metadata"]
            live = member.get(resource, metadata.get("namespace", ""), metadata["name"])
            patch = rule.revert_detach(obj, live, context, owner_uids) if live else None
            if patch:
                member.patch(resource, metadata.get("namespace", ""), metadata["name"], patch)
                report.reverted.append(f"{group_resource} {metadata['name']}")


def _created_by(obj: Obj | None, run_id: str | None) -> bool:
    """Whether a migration created `obj`: this run (`run_id`), or any run (`None`)."""
    annotations = (obj or {}).get("metadata", {}).get("annotations") or {}
    if run_id is None:
        return PROMOTED_BY in annotations
    return annotations.get(PROMOTED_IN_RUN) == run_id


def _used_elsewhere(claims: Claims, run: NamespaceRun) -> set[tuple[str, str]]:
    """Cluster-scoped objects that a namespace claimed by any run, other than this one and not rolling
    back, uses. Two namespaces rolling back at once each see the other rolling back: the last to delete
    wins, and a delete of something already gone is nothing."""
    return {
        ref
        for claim in claims.all()
        if (claim.cluster, claim.namespace) != (run.cluster, run.namespace)
        and claim.state is not ClaimState.ROLLING_BACK
        for ref in claim.cluster_objects
    }


def _custom_resources_elsewhere(control_plane: Kube, crd: Obj, namespace: str) -> bool:
    """Whether the control plane may hold a custom resource of `crd` outside `namespace` (deleting the CRD
    would delete it too), whoever made it. Not allowed to look (the shipped rollback role lists no
    custom resources cluster-wide), the answer is yes: a CRD left behind is a nuisance, a CRD deleted
    under another team's resources is data lost."""
    names = crd.get("spec", {}).get("names", {})
    resource = control_plane.discovery.by_group_resource(f"{names.get('plural')}.{crd['spec'].get('group')}")
    if resource is None:
        return False
    try:
        return any(
            obj["metadata"].get("namespace", "") != namespace
            for obj in control_plane.list(resource, page_size=50)
        )
    except Forbidden:
        return True


def _clear_control_plane(
    control_plane: Kube,
    backup: BackupDir,
    run: NamespaceRun,
    context: Context,
    report: RollbackReport,
    timeout: float,
    used_elsewhere: set[tuple[str, str]],
) -> None:
    manifest = backup.manifest()
    assert manifest is not None
    found: list[tuple[str, ApiResource, Obj]] = []
    for group_resource in sorted(manifest.counts):
        resource = _resource(control_plane, group_resource)
        if resource is None:
            continue
        shared_kind = not resource.namespaced and group_resource != "namespaces"
        for obj in backup.items(group_resource):
            metadata = obj["metadata"]
            namespace = metadata.get("namespace", "") if resource.namespaced else ""
            live = control_plane.get(resource, namespace, metadata["name"])
            if not _created_by(live, None if shared_kind else run.run_id):
                continue
            assert live is not None
            if shared_kind and (group_resource, metadata["name"]) in used_elsewhere:
                report.kept.append(
                    f"{group_resource} {metadata['name']} (another promoted namespace uses it)"
                )
                continue
            if group_resource == CRDS and _custom_resources_elsewhere(control_plane, live, run.namespace):
                report.kept.append(
                    f"{group_resource} {metadata['name']} (custom resources of it may remain elsewhere)"
                )
                continue
            found.append((group_resource, resource, live))
    for group_resource, resource, live in found:
        patch = RULES.for_(group_resource).revert_rebuild(live, context)
        if patch:
            control_plane.patch(
                resource, live["metadata"].get("namespace", ""), live["metadata"]["name"], patch
            )
    order = {gr: index for index, gr in enumerate(NAMESPACED_DELETE_ORDER)}
    found.sort(key=lambda entry: (order.get(entry[0], len(order)), entry[0] == "namespaces"))
    for group_resource, resource, live in found:
        metadata = live["metadata"]
        grace = 0 if group_resource == "pods" else None
        try:
            control_plane.delete(
                resource,
                metadata.get("namespace", ""),
                metadata["name"],
                grace_seconds=grace,
                uid=metadata["uid"],
            )
        except NotFound:
            continue
        report.deleted.append(f"{group_resource} {metadata['name']}")
    _wait_namespace_gone(control_plane, run.namespace, found, timeout)


def _wait_namespace_gone(
    control_plane: Kube, namespace: str, found: list[tuple[str, ApiResource, Obj]], timeout: float
) -> None:
    if not any(gr == "namespaces" for gr, _, _ in found):
        return
    resource = control_plane.discovery.resolve("namespaces")
    deadline = time.monotonic() + timeout
    while control_plane.get(resource, "", namespace) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f'the control-plane namespace "{namespace}" is still terminating')
        time.sleep(0.1)


def _restore_reclaim_policies(member: Kube, backup: BackupDir, report: RollbackReport) -> None:
    resource = _resource(member, "persistentvolumes")
    if resource is None:
        return
    for volume in backup.items("persistentvolumes"):
        name = volume["metadata"]["name"]
        original = volume["spec"].get("persistentVolumeReclaimPolicy", "Retain")
        live = member.get(resource, "", name)
        if live is not None and live["spec"].get("persistentVolumeReclaimPolicy") != original:
            member.patch(resource, "", name, reclaim_restore_patch(original))
            report.reverted.append(f"persistentvolumes {name} reclaim policy {original}")


def member_differences(
    member: Kube, backup: BackupDir, decided: Mapping[str, Decision], owner_uids: dict[str, str]
) -> list[str]:
    """A normalised diff of the member against the backup: labels, annotations, owners (UIDs mapped),
    pod identity and spec, PV reclaim policy. Re-created owners may differ only in UID and version."""
    manifest = backup.manifest()
    assert manifest is not None
    problems = []
    for group_resource in sorted(manifest.counts):
        resource = _resource(member, group_resource)
        if resource is None or group_resource == "namespaces":
            continue
        for obj in backup.items(group_resource):
            if decided[obj["metadata"]["uid"]].move is Move.SKIP and group_resource != "pods":
                continue
            metadata = obj["metadata"]
            live = member.get(resource, metadata.get("namespace", ""), metadata["name"])
            where = f"{group_resource} {metadata['name']}"
            if live is None:
                problems.append(f"{where} is missing")
                continue
            problems += [f"{where}: {p}" for p in _compare(obj, live, owner_uids, group_resource)]
    return problems


def _compare(before: Obj, after: Obj, owner_uids: dict[str, str], group_resource: str) -> list[str]:
    problems = []
    old, new = before["metadata"], after["metadata"]
    if group_resource not in RECREATE_ORDER and old.get("uid") != new.get("uid"):
        problems.append("was re-created (uid changed)")
    if new.get("deletionTimestamp"):
        problems.append("is being deleted")
    for field_name in ("labels", "annotations"):
        if (old.get(field_name) or {}) != (new.get(field_name) or {}):
            problems.append(f"{field_name} differ: {old.get(field_name)} != {new.get(field_name)}")
    expected = [
        (r["kind"], r["name"], owner_uids.get(r["uid"], r["uid"])) for r in old.get("ownerReferences") or []
    ]
    actual = [(r["kind"], r["name"], r["uid"]) for r in new.get("ownerReferences") or []]
    if sorted(expected) != sorted(actual):
        problems.append(f"ownerReferences differ: {expected} != {actual}")
    if group_resource == "pods" and before.get("spec") != after.get("spec"):
        problems.append("pod spec changed")
    if group_resource in RECREATE_ORDER and before.get("spec") != after.get("spec"):
        problems.append("spec differs from the backup")
    if group_resource == "persistentvolumes":
        policy = ("spec", "persistentVolumeReclaimPolicy")
        if before[policy[0]].get(policy[1]) != after[policy[0]].get(policy[1]):
            problems.append("reclaim policy differs")
    return problems
