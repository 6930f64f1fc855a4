"""Rollback of one namespace: the member back exactly as it was, then the control plane emptied of what
this migration created. The same routine serves a user's rollback and the compensation of a failure.

It executes the plan recorded with the sealed backup (`shared.plan`: each object's rollback action)
against the live clusters, never a record of what the forward steps did, so it undoes exactly what
happened however far the migration got, and it can run again after a crash (or twice at once) with the
same result. Order is what keeps data and pods alive (docs/ordering.md#rollback-order):

1. member pods lose their Kosmos markers, so Kosmos stops syncing them and a control-plane delete can no
   longer reach them;
2. member owners are re-created from the backup, bottom-up (ReplicaSets before Deployments, each level
   once its controller has seen the level below), and adopt the running pods; every other member object
   gets its backed-up metadata back;
3. control-plane markers come off (and control-plane PVs go to Retain) before anything there is deleted;
4. control-plane objects this run created (our `promote.kosmos.io/run` annotation) are deleted, pods with
   grace period 0; anything that existed before the migration has no such annotation and is left alone.
   A cluster-scoped object a migration created (a CRD, a StorageClass, a PriorityClass) is deleted only
   when no other claimed namespace, of any policy, still uses it, and a CRD only while no custom resource
   of it is left outside this namespace: what is kept, and why, is reported. A control-plane namespace
   this run created is deleted with what is left in it, which its namespace controller removes, and not
   waited for: kube-controller-manager leaves a deleted namespace alone for 5 s first (its
   `namespaceDeletionGracePeriod`; docs/control-plane-traps.md#namespace-deletion-grace), which made
   every namespace's rollback take that long and hold a worker thread, and nothing in it reaches the
   member, whose twins were unmarked in steps 1 and 3. Its precheck refuses a promote of the namespace
   until it is gone;
5. last, the member PVs get their original reclaim policy back, once nothing can propagate a delete.

Within each step the per-object requests run in parallel on the process's API threads: a rollback is the
emergency path and must not be slower than the promote it undoes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from functools import cache, partial

from shared.backup import BackupDir
from shared.claims import Claims, ClaimState
from shared.errors import NotInTime
from shared.items import GroupResource, ItemRef, Obj
from shared.kinds import RULES, Context, Move
from shared.kinds.storage import reclaim_restore_patch
from shared.kube import AlreadyExists, ApiResource, Conflict, Forbidden, Kube, NotFound, NotServed
from shared.markers import PROMOTED_BY, PROMOTED_IN_RUN
from shared.plan import NamespacePlan, RollbackAction
from shared.progress import NamespaceRun, Progress
from shared.runtime import Runtime
from shared.sanitize import strip_for_rebuild
from shared.steps import recorded_plan

CRDS = GroupResource("customresourcedefinitions.apiextensions.k8s.io")
NAMESPACES = GroupResource("namespaces")
PODS = GroupResource("pods")
PERSISTENT_VOLUMES = GroupResource("persistentvolumes")
RECLAIM_POLICY = "persistentVolumeReclaimPolicy"
Created = tuple[str, ApiResource, Obj]
"""A control-plane object this run created: (group-resource, its type, the live object)."""


@dataclass
class RollbackReport:
    recreated: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Control-plane objects a migration created that this rollback left because others still use them."""
    namespace_terminating: str = ""
    """The control-plane namespace this rollback deleted, which its namespace controller is removing."""
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
    plan = recorded_plan.load(backup, context)
    rollback = _Rollback(runtime, member, backup, plan, context, report)

    def counted(**counts: int) -> None:
        if progress is not None:
            progress.rollback_counts(run.namespace, **counts)

    rollback.restore_member({}, pods=True)
    unmarked = len(report.reverted)
    counted(podsUnmarked=unmarked)
    owner_uids = rollback.recreate_owners()
    counted(ownersRecreated=len(report.recreated))
    rollback.restore_member(owner_uids, pods=False)
    counted(objectsRestored=len(report.reverted) - unmarked)
    rollback.clear_control_plane(run, cache(partial(_used_elsewhere, runtime.claims, run)))
    counted(objectsDeleted=len(report.deleted), kept=len(report.kept))
    rollback.restore_reclaim_policies()
    deadline = time.monotonic() + runtime.settings.adoption_timeout
    while (differences := member_differences(runtime, member, backup, plan, owner_uids)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)  # re-created owners adopt their pods asynchronously (0.06 s measured)
    report.differences = differences
    return report


@dataclass
class _Rollback:
    """One namespace's rollback: the clusters, the sealed backup, its plan, and what was done so far."""

    runtime: Runtime
    member: Kube
    backup: BackupDir
    plan: NamespacePlan
    context: Context
    report: RollbackReport

    def _planned(self, group_resource: str, action: RollbackAction) -> Iterator[Obj]:
        """The backed-up objects of one type whose planned rollback action is `action`."""
        for obj in self.backup.items(group_resource):
            if self.plan.of(obj).rollback is action:
                yield obj

    def _types(self) -> list[str]:
        manifest = self.backup.manifest()
        return sorted(manifest.counts) if manifest is not None else []

    def restore_member(self, owner_uids: dict[str, str], *, pods: bool) -> None:
        """Patch back the backed-up metadata of every object detach marked: pods only, or all but pods."""
        for group_resource in self._types():
            if (group_resource == PODS) is not pods:
                continue
            objects = [_slim(obj) for obj in self._planned(group_resource, RollbackAction.RESTORE)]
            if not objects:
                continue
            resource = self.member.discovery.require(group_resource)
            live = _live_copies(self.runtime, self.member, resource, objects)
            rule = RULES.for_(group_resource)
            patches = [
                (obj, patch)
                for obj, current in zip(objects, live, strict=True)
                if current is not None
                and (patch := rule.revert_detach(obj, current, self.context, owner_uids))
            ]
            patched = self.runtime.fan_out(partial(_patch, self.member, resource), patches)
            self.report.reverted += [done for done in patched if done]

    def recreate_owners(self) -> dict[str, str]:
        """Re-create the owners detach deleted, bottom-up, and return backed-up owner UID -> the UID of that
        owner in the member now (re-created ones get a new UID). Before the next level up is created, the
        controllers must have seen this one: their informers are shared, so a ReplicaSet its controller
        has observed is one the Deployment controller finds, rather than making a new one
        (docs/control-plane-traps.md#deployment-before-its-replicasets)."""
        owner_uids: dict[str, str] = {}
        levels: dict[int, list[str]] = {}
        for group_resource in self.plan.owners_bottom_up():
            levels.setdefault(RULES.for_(group_resource).owner_level, []).append(group_resource)
        for index, level in enumerate(sorted(levels)):
            created: list[tuple[ApiResource, Obj]] = []
            for group_resource in levels[level]:
                resource = self.member.discovery.require(group_resource)
                owners = list(self._planned(group_resource, RollbackAction.RECREATE))
                ensured = self.runtime.fan_out(partial(_ensure, self.member, resource), owners)
                for obj, (live, made) in zip(owners, ensured, strict=True):
                    owner_uids[obj["metadata"]["uid"]] = live["metadata"]["uid"]
                    if made:
                        created.append((resource, live))
                        self.report.recreated.append(f"{group_resource} {obj['metadata']['name']}")
            if index + 1 < len(levels):
                self._await_observed(created)
        return owner_uids

    def _await_observed(self, created: list[tuple[ApiResource, Obj]]) -> None:
        deadline = time.monotonic() + self.runtime.settings.adoption_timeout

        def observed(item: tuple[ApiResource, Obj]) -> bool:
            resource, obj = item
            metadata = obj["metadata"]
            live = self.member.get(resource, metadata.get("namespace", ""), metadata["name"])
            if live is None:
                return True
            status = live.get("status") or {}
            return (status.get("observedGeneration") or 0) >= (live["metadata"].get("generation") or 1)

        pending = created
        while pending:
            seen = self.runtime.fan_out(observed, pending)
            pending = [item for item, ok in zip(pending, seen, strict=True) if not ok]
            if pending and time.monotonic() > deadline:
                names = ", ".join(obj["metadata"]["name"] for _, obj in pending[:5])
                raise NotInTime(f"the member's controllers did not observe the re-created {names} in time")
            if pending:
                time.sleep(0.02)

    def clear_control_plane(
        self, run: NamespaceRun, used_elsewhere: Callable[[], set[tuple[str, str]]]
    ) -> None:
        """Unmark, then delete, what this run created in the control plane. When the namespace itself is
        this run's, its namespaced objects go with it (the namespace controller deletes them, unmarked, so
        nothing reaches the member), so only kinds deleted with a grace period of their own (pods, grace 0)
        and cluster-scoped objects are deleted one by one: a delete per object fewer.

        `used_elsewhere` reads every claim: it is asked only when a cluster-scoped object a migration
        made is found, so that a namespace without any (most) spares the list of a thousand claims."""
        control_plane = self.runtime.control_plane
        namespaces = control_plane.discovery.require(NAMESPACES)
        ours = _created_by(control_plane.get(namespaces, "", run.namespace), run.run_id)
        batches: dict[_Deletion, list[Created]] = {deletion: [] for deletion in _Deletion}
        cascaded: list[str] = []
        for group_resource in self._types():
            try:
                resource = control_plane.discovery.require(group_resource)
            except NotServed:
                continue  # its CRD never reached the control plane: nothing of it to delete
            unmark = RULES.for_(group_resource).unmark_patch()
            deletion = _deletion(group_resource, resource, namespace_is_ours=ours)
            if deletion is _Deletion.WITH_NAMESPACE and unmark is not None:
                # Everything in a namespace this run created is this run's, and goes with it: unmarked
                # without being read first, and deleted by the namespace controller.
                refs = [ItemRef.of(group_resource, obj) for obj in self.backup.items(group_resource)]
                unmarked = self.runtime.fan_out(
                    partial(_unmark_by_name, control_plane, resource, unmark), refs
                )
                cascaded += [
                    f"{ref.group_resource} {ref.name}"
                    for ref, there in zip(refs, unmarked, strict=True)
                    if there
                ]
                continue
            shared_kind = not resource.namespaced and group_resource != NAMESPACES
            lookup = partial(_created_in, control_plane, resource, None if shared_kind else run.run_id)
            for live in self.runtime.fan_out(lookup, list(self.backup.items(group_resource))):
                if live is None:
                    continue
                name = live["metadata"]["name"]
                if shared_kind and (group_resource, name) in used_elsewhere():
                    self.report.kept.append(f"{group_resource} {name} (another promoted namespace uses it)")
                elif group_resource == CRDS and _custom_resources_elsewhere(
                    control_plane, live, run.namespace
                ):
                    self.report.kept.append(
                        f"{group_resource} {name} (custom resources of it may remain elsewhere)"
                    )
                elif deletion is _Deletion.NAMESPACE and live["metadata"].get("deletionTimestamp"):
                    continue  # deleted by an earlier attempt: deleting it again is a 409 until it is gone
                else:
                    batches[deletion].append((group_resource, resource, live))
        found = [entry for entries in batches.values() for entry in entries]
        self.runtime.fan_out(partial(_unmark, control_plane, self.context), found)
        for deletion in (_Deletion.FIRST, _Deletion.ONE_BY_ONE, _Deletion.NAMESPACE):
            deleted = self.runtime.fan_out(partial(_delete, control_plane), batches[deletion])
            self.report.deleted += [done for done in deleted if done]
        if ours:
            self.report.namespace_terminating = run.namespace
            cascaded += [
                f"{gr} {live['metadata']['name']}" for gr, _, live in batches[_Deletion.WITH_NAMESPACE]
            ]
            self.report.deleted += [f"{done} (with its namespace)" for done in cascaded]

    def restore_reclaim_policies(self) -> None:
        """Last: the member PVs get their backed-up reclaim policy back, once nothing can propagate a
        delete."""
        volumes = list(self.backup.items(PERSISTENT_VOLUMES))
        if not volumes:
            return
        resource = self.member.discovery.require(PERSISTENT_VOLUMES)
        live = _live_copies(self.runtime, self.member, resource, volumes)
        patches = [
            (volume, reclaim_restore_patch(_reclaim_policy(volume)))
            for volume, current in zip(volumes, live, strict=True)
            if current is not None and current["spec"].get(RECLAIM_POLICY) != _reclaim_policy(volume)
        ]
        patched = self.runtime.fan_out(partial(_patch, self.member, resource), patches)
        self.report.reverted += [
            f"{done} reclaim policy {_reclaim_policy(volume)}"
            for done, (volume, _) in zip(patched, patches, strict=True)
            if done
        ]


def _reclaim_policy(volume: Obj) -> str:
    """A backed-up PV's reclaim policy (Retain when the member left it unset)."""
    return str(volume["spec"].get(RECLAIM_POLICY, "Retain"))


def _ensure(member: Kube, resource: ApiResource, obj: Obj) -> tuple[Obj, bool]:
    """The live owner as backed up, re-created from the backup if gone or going: (live, re-created)."""
    metadata = obj["metadata"]
    live = member.get(resource, metadata["namespace"], metadata["name"])
    if live is not None and not live["metadata"].get("deletionTimestamp"):
        return live, False
    try:
        return member.create(resource, strip_for_rebuild(obj), metadata["namespace"]), True
    except AlreadyExists:
        existing = member.get(resource, metadata["namespace"], metadata["name"])
        if existing is None:
            raise
        return existing, False


class _Deletion(Enum):
    FIRST = "deleted first, with the kind's own grace period"
    ONE_BY_ONE = "deleted one by one"
    WITH_NAMESPACE = "deleted by the namespace controller with the namespace"
    NAMESPACE = "the namespace itself, last"


def _deletion(group_resource: str, resource: ApiResource, *, namespace_is_ours: bool) -> _Deletion:
    if group_resource == NAMESPACES:
        return _Deletion.NAMESPACE
    if RULES.for_(group_resource).delete_grace_seconds is not None:
        return _Deletion.FIRST
    if namespace_is_ours and resource.namespaced:
        return _Deletion.WITH_NAMESPACE
    return _Deletion.ONE_BY_ONE


def _unmark_by_name(kube: Kube, resource: ApiResource, patch: Obj, ref: ItemRef) -> bool:
    """Send `patch` to the object `ref` names; whether it exists."""
    try:
        kube.patch(resource, ref.namespace, ref.name, patch)
    except NotFound:
        return False
    return True


def _unmark(control_plane: Kube, context: Context, entry: Created) -> None:
    """Take the Kosmos markers off before the delete, so that Kosmos does not delete the member twin."""
    group_resource, resource, live = entry
    patch = RULES.for_(group_resource).revert_rebuild(live, context)
    if patch:
        metadata = live["metadata"]
        control_plane.patch(resource, metadata.get("namespace", ""), metadata["name"], patch)


def _delete(control_plane: Kube, entry: Created) -> str | None:
    group_resource, resource, live = entry
    metadata = live["metadata"]
    try:
        control_plane.delete(
            resource,
            metadata.get("namespace", ""),
            metadata["name"],
            grace_seconds=RULES.for_(group_resource).delete_grace_seconds,
            uid=metadata["uid"],
        )
    except NotFound:
        return None
    except Conflict:
        if not _deleted_meanwhile(control_plane, resource, metadata):
            raise  # another object of that name now (the uid precondition), not ours to delete
    return f"{group_resource} {metadata['name']}"


def _deleted_meanwhile(control_plane: Kube, resource: ApiResource, metadata: Obj) -> bool:
    """Whether the object is still the one read and already being deleted: a second DELETE of a
    terminating namespace is a 409 in kube-apiserver, and a redelivered rollback running beside this one
    may have sent the first one after this one read it
    (docs/control-plane-traps.md#namespace-deletion-grace)."""
    now = control_plane.get(resource, metadata.get("namespace", ""), metadata["name"])
    return (
        now is not None
        and now["metadata"].get("uid") == metadata["uid"]
        and bool(now["metadata"].get("deletionTimestamp"))
    )


def _created_in(kube: Kube, resource: ApiResource, run_id: str | None, obj: Obj) -> Obj | None:
    """The live copy of backed-up `obj` in `kube`, if a migration created it (`_created_by`)."""
    metadata = obj["metadata"]
    namespace = metadata.get("namespace", "") if resource.namespaced else ""
    live = kube.get(resource, namespace, metadata["name"])
    return live if _created_by(live, run_id) else None


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


def member_differences(
    runtime: Runtime, member: Kube, backup: BackupDir, plan: NamespacePlan, owner_uids: dict[str, str]
) -> list[str]:
    """A normalised diff of the member against the backup: labels, annotations, owners (UIDs mapped), and
    what each kind's rule compares on top (`KindRule.rollback_differences`). Re-created owners may differ
    only in UID and version."""
    manifest = backup.manifest()
    types = sorted(manifest.counts) if manifest is not None else []
    problems: list[str] = []
    for group_resource in types:
        if group_resource == NAMESPACES:
            continue
        rule = RULES.for_(group_resource)
        compared = [
            (_slim(obj), entry)
            for obj in backup.items(group_resource)
            if (entry := plan.of(obj)).move is not Move.SKIP or rule.checked_when_skipped
        ]
        if not compared:
            continue
        resource = member.discovery.require(group_resource)
        live = _live_copies(runtime, member, resource, [obj for obj, _ in compared])
        for (obj, entry), current in zip(compared, live, strict=True):
            where = f"{group_resource} {obj['metadata']['name']}"
            if current is None:
                problems.append(f"{where} is missing")
                continue
            recreated = entry.rollback is RollbackAction.RECREATE
            if recreated and current["metadata"].get("uid") == obj["metadata"].get("uid"):
                # An owner detach never deleted (it had changed since the backup, or the run failed
                # first): its spec and metadata are its users' and controllers' since, but for its owner.
                found = _owner_problems(obj, current, owner_uids)
            else:
                found = [
                    *_compare(obj, current, owner_uids, recreated=recreated),
                    *rule.rollback_differences(obj, current),
                ]
            problems += [f"{where}: {problem}" for problem in found]
    return problems


def _live_copies(runtime: Runtime, kube: Kube, resource: ApiResource, objects: list[Obj]) -> list[Obj | None]:
    """The live object of each backed-up one (None where it is gone), in order: one paged list of the
    namespace for a namespaced type (a request per 500 objects rather than one each; this holds one
    type of one namespace), a GET each for cluster-scoped objects (a few dependencies)."""
    if resource.namespaced:
        namespaces = {obj["metadata"].get("namespace", "") for obj in objects}
        live = {
            (namespace, item["metadata"]["name"]): _slim(item)
            for namespace in namespaces
            for item in kube.list(resource, namespace)
        }
        return [live.get((obj["metadata"].get("namespace", ""), obj["metadata"]["name"])) for obj in objects]
    return runtime.fan_out(partial(_get_cluster_scoped, kube, resource), objects)


def _slim(obj: Obj) -> Obj:
    """What restoring and comparing read of an object: its metadata without managedFields, and its spec.
    A type's objects of a whole namespace are held at once, and a ConfigMap's data or a Secret's would
    make that the namespace's size rather than its count."""
    metadata = {key: value for key, value in obj["metadata"].items() if key != "managedFields"}
    return {"metadata": metadata, "spec": obj["spec"]} if "spec" in obj else {"metadata": metadata}


def _get_cluster_scoped(kube: Kube, resource: ApiResource, obj: Obj) -> Obj | None:
    return kube.get(resource, "", obj["metadata"]["name"])


def _patch(kube: Kube, resource: ApiResource, item: tuple[Obj, Obj]) -> str | None:
    """Send the patch; what was patched, or None when the object went meanwhile (nothing to restore)."""
    obj, patch = item
    metadata = obj["metadata"]
    try:
        kube.patch(resource, metadata.get("namespace", ""), metadata["name"], patch)
    except NotFound:
        return None
    return f"{resource.group_resource} {metadata['name']}"


def _compare(before: Obj, after: Obj, owner_uids: dict[str, str], *, recreated: bool) -> list[str]:
    problems = []
    old, new = before["metadata"], after["metadata"]
    if not recreated and old.get("uid") != new.get("uid"):
        problems.append("was re-created (uid changed)")
    if new.get("deletionTimestamp"):
        problems.append("is being deleted")
    for field_name in ("labels", "annotations"):
        if (old.get(field_name) or {}) != (new.get(field_name) or {}):
            problems.append(f"{field_name} differ: {old.get(field_name)} != {new.get(field_name)}")
    return problems + _owner_problems(before, after, owner_uids)


def _owner_problems(before: Obj, after: Obj, owner_uids: dict[str, str]) -> list[str]:
    """Whether `after` has the owners `before` had, re-created ones by their new UIDs."""
    expected = [
        (r["kind"], r["name"], owner_uids.get(r["uid"], r["uid"]))
        for r in before["metadata"].get("ownerReferences") or []
    ]
    actual = [(r["kind"], r["name"], r["uid"]) for r in after["metadata"].get("ownerReferences") or []]
    return [f"ownerReferences differ: {expected} != {actual}"] if sorted(expected) != sorted(actual) else []
