"""Backup of one namespace, in one task: every type listed (in threads, paged) into its own part, then
the cluster-scoped objects the namespace depends on fetched once, deduplicated, and everything sealed.

One task rather than a chord of collect tasks: a namespace's backup takes as long as its largest type's
pages take to list, which threads already overlap, and each extra task cost more than the lists it held
(bench/promote.py: 9 -> 5 tasks per small namespace). Nothing in the member is changed here: a backup
that cannot be completed fails the namespace before detach.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any

from shared.backup import BackupDir, Manifest
from shared.claims import RUN_SPEC_LABEL, Claim, RunHalted
from shared.errors import InvalidSelection, NotInTime, NotSettled, SourceGone
from shared.items import GroupResource, ItemRef, Obj
from shared.kinds import RULES
from shared.kube import ApiResource, Kube
from shared.models import NamespacePhase
from shared.models.times import now_rfc3339
from shared.plan import NamespacePlan
from shared.progress import NamespaceRun
from shared.runtime import Runtime
from shared.selection import select_types
from shared.steps import recorded_plan
from shared.steps.statefulset_revisions import STATEFULSETS, require_same_revisions

NAMESPACES = GroupResource("namespaces")
CRDS = "customresourcedefinitions.apiextensions.k8s.io"
SHARED_OBJECTS_POLL = 0.5
"""How often a namespace waiting for another's rollback to end reads the claims again."""


class MemberCatalog:
    """Cluster-wide facts the kind rules ask about, listed once per task rather than once per object.

    With `since` (the run's start, epoch seconds), a list this process made after that moment for an
    earlier namespace of any run is reused: everything that existed when the run started is in its scope
    (`RunSpec.started`), and a cluster-wide list per namespace was one request (and every binding of the
    cluster) per namespace. An object listed but deleted since is simply not found when fetched."""

    def __init__(self, member: Kube, since: float | None = None) -> None:
        self.member = member
        self.since = since

    @cached_property
    def _bindings(self) -> list[Obj]:
        resource = self.member.discovery.by_group_resource("clusterrolebindings.rbac.authorization.k8s.io")
        if resource is None:
            return []
        return _listed(self.member, resource, self.since)

    def cluster_role_bindings(self) -> list[Obj]:
        return self._bindings

    @cached_property
    def _crd_names(self) -> set[str]:
        resource = self.member.discovery.by_group_resource(CRDS)
        if resource is None:
            return set()
        return {obj["metadata"]["name"] for obj in _listed(self.member, resource, self.since)}

    def crd_for(self, api_version: str, kind: str) -> str | None:
        resource = self.member.discovery.by_kind(api_version, kind)
        if resource is None:
            return None
        name = f"{resource.plural}.{resource.group}"
        return name if name in self._crd_names else None


_LISTED: dict[tuple[str, str, str], tuple[float, list[Obj]]] = {}
_LISTED_LOCK = threading.Lock()


def _listed(member: Kube, resource: ApiResource, since: float | None) -> list[Obj]:
    """Every object of a cluster-scoped type, from this process's last list if it was made after `since`."""
    key = (member.name, member.url, resource.group_resource)
    if since is not None:
        with _LISTED_LOCK:
            cached = _LISTED.get(key)
        if cached is not None and cached[0] >= since:
            return cached[1]
    listed_at = time.time()
    objects = list(member.list(resource))
    with _LISTED_LOCK:
        _LISTED[key] = (listed_at, objects)
    return objects


def back_up(runtime: Runtime, run: NamespaceRun) -> dict[str, Any]:
    """Collect and seal; a re-run after the seal lists nothing (sealed parts are final) and returns the
    same manifest."""
    runtime.progress(run).set(
        run.namespace, phase=NamespacePhase.BACKING_UP.value, step="list objects", startTime=now_rfc3339()
    )
    collected = collect(runtime, run, types_to_collect(runtime, run))
    return seal(runtime, run, collected)


def types_to_collect(runtime: Runtime, run: NamespaceRun) -> list[str]:
    spec = runtime.run_spec(run)
    discovery = runtime.member_of(spec).discovery
    discovery.refresh_if_loaded_before(spec.started)  # a CRD created since this process cached the types
    types, errors = select_types(spec.selection(), discovery)
    if errors:
        raise InvalidSelection("; ".join(errors))
    return [NAMESPACES, *(t.group_resource for t in types)]


def collect(runtime: Runtime, run: NamespaceRun, group_resources: Sequence[str]) -> list[dict[str, Any]]:
    member = runtime.member_of(runtime.run_spec(run))
    catalog = MemberCatalog(member, since=runtime.run_spec(run).started)
    return runtime.fan_out(lambda gr: _collect_type(runtime, run, member, catalog, gr), group_resources)


def _collect_type(
    runtime: Runtime, run: NamespaceRun, member: Kube, catalog: MemberCatalog, group_resource: str
) -> dict[str, Any]:
    progress = runtime.progress(run)
    rule = RULES.for_(group_resource)
    related: set[ItemRef] = set()

    def objects() -> Iterator[Obj]:
        if group_resource == NAMESPACES:
            namespace = member.get(member.discovery.require(NAMESPACES), "", run.namespace)
            if namespace is None:
                raise SourceGone(f'namespace "{run.namespace}" disappeared from the member cluster')
            yield namespace
            return
        for obj in member.list(member.discovery.require(group_resource), run.namespace):
            if obj["metadata"].get("deletionTimestamp"):
                continue
            related.update(rule.related(obj, catalog))
            yield obj

    count = runtime.backup(run).write_part(group_resource, objects())
    progress.count(run.namespace, "backedUp", group_resource, count)
    return {
        "groupResource": group_resource,
        "count": count,
        "related": sorted([r.group_resource, r.namespace, r.name] for r in related),
    }


def seal(runtime: Runtime, run: NamespaceRun, collected: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    spec = runtime.run_spec(run)
    member = runtime.member_of(spec)
    backup = runtime.backup(run)
    progress = runtime.progress(run)
    progress.set(run.namespace, step="seal backup")
    refs = sorted(
        {ItemRef(GroupResource(gr), ns, name) for entry in collected for gr, ns, name in entry["related"]}
    )
    fetched = runtime.fan_out(
        lambda ref: member.get(member.discovery.require(ref.group_resource), ref.namespace, ref.name), refs
    )
    by_type: dict[str, list[Obj]] = {}
    for ref, obj in zip(refs, fetched, strict=True):
        if obj is not None:
            by_type.setdefault(ref.group_resource, []).append(obj)
    for group_resource, objects in by_type.items():
        backup.write_part(group_resource, objects)
        progress.count(run.namespace, "backedUp", f"related {group_resource}", len(objects))
    manifest = backup.seal(
        {
            "policy": run.policy,
            "namespace": run.namespace,
            "run": run.run_id,
            "cluster": spec.cluster,
            RUN_SPEC_LABEL: spec.dump(),
        }
    )
    plan = recorded_plan.record(backup, spec.context())
    promoted = sum(1 for _ in plan.promoted())
    progress.totals(
        run.namespace, backedUp=manifest.total_items, rebuilt=promoted, skipped=len(plan.objects) - promoted
    )
    _require_settled(backup, plan)
    progress.set(run.namespace, step="compare StatefulSet revisions")
    promoted_statefulsets = (s for s in backup.items(STATEFULSETS) if plan.of(s).promoted)
    require_same_revisions(runtime, member, promoted_statefulsets, spec.context(), run.run_id)
    _record_cluster_objects(runtime, run, manifest)
    progress.set(run.namespace, backupLocation=backup.location, backupSha256=manifest.sha256 or "")
    return {"items": manifest.total_items}


def _require_settled(backup: BackupDir, plan: NamespacePlan) -> None:
    """Refuse, before detach changes anything, a namespace whose promoted owners are rolling out."""
    unsettled = [
        f"{group_resource} {obj['metadata']['name']}: {why}"
        for group_resource in plan.owners_top_down()
        for obj in backup.items(group_resource)
        if plan.of(obj).promoted and (why := RULES.for_(group_resource).unsettled(obj))
    ]
    if unsettled:
        raise NotSettled(
            f"{'; '.join(unsettled)}. The control plane's controllers would carry the rollout on with pods "
            f"they cannot place on the virtual node, deleting the old ones in both clusters. Nothing was "
            f"changed; promote the namespace once the rollout has finished"
        )


def _record_cluster_objects(runtime: Runtime, run: NamespaceRun, manifest: Manifest) -> None:
    """Tell every other run, through the claim, which cluster-scoped objects this namespace will use in
    the control plane: their rollbacks keep what a live claim still uses. Written before detach, so a
    namespace that can have rebuilt anything has said so.

    Then wait while another namespace's rollback may be deleting one of them. A rollback moves its claim
    to rolling back before it reads the claims, and deletes only what no claim it read uses; this step
    writes its claim before it reads theirs. So of the two, at least one sees the other: the rollback
    keeps the object, or this run waits until that rollback has ended and its rebuild creates the object
    anew (docs/design.md, shared cluster-scoped objects)."""
    used = manifest.cluster_objects()

    def with_objects(claim: Claim | None) -> Claim | None:
        if claim is None or claim.run_id != run.run_id:
            raise RunHalted(run, "the namespace is no longer claimed by this run")
        return replace(claim, cluster_objects=used)

    runtime.claims.change(run.cluster, run.namespace, with_objects)
    if used:
        _wait_for_rollbacks_sharing(runtime, run, set(used))


def _wait_for_rollbacks_sharing(runtime: Runtime, run: NamespaceRun, used: set[tuple[str, str]]) -> None:
    deadline = time.monotonic() + runtime.settings.adoption_timeout
    while deleting := runtime.claims.rolling_back_with(used, run.cluster, run.namespace):
        holders = ", ".join(sorted(f"{claim.namespace} ({claim.describe()})" for claim in deleting))
        if time.monotonic() > deadline:
            raise NotInTime(
                f"the rollback of {holders} may delete cluster-scoped objects this namespace uses, and has "
                f"not ended within {runtime.settings.adoption_timeout:.0f}s; nothing was changed here. "
                f"Create the policy again once that rollback has ended"
            )
        runtime.progress(run).set(run.namespace, step=f"wait for the rollback of {holders}")
        time.sleep(SHARED_OBJECTS_POLL)
