"""Rebuild in the control plane, bottom-up, each tier a set of batches created in parallel.

The plan is derived from the sealed backup alone (types and counts), so any worker can compute it and a
re-run computes the same one. A batch creates its objects concurrently; an object that already exists is
fine when it is ours (a re-run) or identical, and a conflict otherwise: it is reported and left untouched.

A tier of several batches fans out over tasks; consecutive tiers of one batch each run together in one
task (`run_tiers`), since a task hop costs more than a small tier's creates (bench/promote.py: a
namespace's rebuild was a chain of a dozen tasks of a few milliseconds each).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from shared.errors import NotInTime, NotSealed
from shared.items import ItemRef, Obj
from shared.kinds import RULES, KindRule
from shared.kube import AlreadyExists, ApiResource, Kube
from shared.models import NamespacePhase
from shared.ordering import rebuild_tiers, tier_step
from shared.progress import NamespaceRun
from shared.runtime import Runtime
from shared.steps import barrier, recorded_plan

CRDS = "customresourcedefinitions.apiextensions.k8s.io"
DELETION_POLL = 0.2
"""How often an object found being deleted is looked at again before it is made anew."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    group_resource: str
    offset: int
    limit: int


@dataclass(frozen=True)
class TierPlan:
    name: str
    batches: list[Batch]

    @property
    def fans_out(self) -> bool:
        return len(self.batches) > 1


def plan(runtime: Runtime, run: NamespaceRun) -> list[TierPlan]:
    """Tiers in rebuild order, each with its batches (a reference to a slice of one type's items)."""
    backup = runtime.backup(run)
    manifest = backup.manifest()
    if manifest is None:
        raise NotSealed("the backup is not sealed; nothing to rebuild from")
    backup.require_intact()
    size = runtime.settings.rebuild_batch_size
    tiers = []
    for tier, types in rebuild_tiers(manifest.counts):
        batches = [
            Batch(gr, part * size, size)
            for gr in types
            for part in range(math.ceil(manifest.counts[gr] / size))
        ]
        if batches:
            tiers.append(TierPlan(tier.name, batches))
    return tiers


def stages(tiers: list[TierPlan]) -> list[list[TierPlan]]:
    """The tasks of a rebuild, in order: a tier that fans out is a stage of its own; consecutive tiers of
    one batch each share a stage."""
    grouped: list[list[TierPlan]] = []
    for tier in tiers:
        if grouped and not tier.fans_out and not grouped[-1][-1].fans_out:
            grouped[-1].append(tier)
        else:
            grouped.append([tier])
    return grouped


def run_tiers(runtime: Runtime, run: NamespaceRun, names: list[str]) -> int:
    """Rebuild whole tiers in order inside one task, each followed by its `tier_done` wait; returns how
    many objects were created (or found already made by this run)."""
    planned = {tier.name: tier for tier in plan(runtime, run)}
    created = 0
    for index, name in enumerate(names):
        if index:
            runtime.guard(run)  # a cancelled run stops at the next tier
        for batch in planned[name].batches:
            created += rebuild_batch(runtime, run, batch)
        tier_done(runtime, run, name)
    return created


def rebuild_batch(runtime: Runtime, run: NamespaceRun, batch: Batch) -> int:
    """Create the batch's promoted objects; returns how many now exist as this run made them (conflicts,
    left untouched and reported, are not counted)."""
    control_plane = runtime.control_plane
    progress = runtime.progress(run)
    context = runtime.run_spec(run).context()
    rule = RULES.for_(batch.group_resource)
    backup = runtime.backup(run)
    backup.require_intact()
    manifest = backup.manifest()
    step = tier_step(manifest.counts if manifest else (), batch.group_resource)
    progress.phase(run.namespace, NamespacePhase.REBUILDING, step)
    resource = control_plane.discovery.require(batch.group_resource)
    bodies = []
    skipped: list[tuple[ItemRef, str]] = []
    plan = recorded_plan.load(backup, context)
    for obj in backup.items(batch.group_resource, batch.offset, batch.limit):
        entry = plan.of(obj)
        if entry.promoted:
            bodies.append(rule.rebuild(obj, context))
        else:
            skipped.append((entry.ref, entry.reason))

    def create(body: Obj) -> tuple[ItemRef, str] | None:
        return _create_or_accept(
            control_plane, resource, rule, body, run.run_id, runtime.settings.adoption_timeout
        )

    conflicts = [c for c in runtime.fan_out(create, bodies) if c is not None]
    progress.skip(run.namespace, skipped + conflicts)
    created = len(bodies) - len(conflicts)
    progress.count(run.namespace, "rebuilt", f"{batch.group_resource}[{batch.offset}]", created)
    return created


def _create_or_accept(
    kube: Kube, resource: ApiResource, rule: KindRule, body: Obj, run_id: str, patience: float
) -> tuple[ItemRef, str] | None:
    """Create the object, or accept the one there unless it conflicts. One being deleted (a shared
    cluster-scoped object another namespace's rollback removes) is waited out and made anew: accepted,
    it would vanish under this namespace, a CRD with the custom resources made of it."""
    metadata = body["metadata"]
    namespace = metadata.get("namespace", "") if resource.namespaced else ""
    ref = ItemRef(resource.group_resource, namespace, metadata["name"])
    deadline = time.monotonic() + patience
    while True:
        try:
            kube.create(resource, body, namespace or None)
            return None
        except AlreadyExists:
            existing = kube.get(resource, namespace, metadata["name"])
        if existing is not None and not existing["metadata"].get("deletionTimestamp"):
            break
        if time.monotonic() > deadline:
            raise NotInTime(f"{ref} was still being deleted in the control plane after {patience:.0f}s")
        time.sleep(DELETION_POLL)
    if not rule.conflicts(existing, body, run_id):
        return None
    return ref, "exists in the control plane with different content; left untouched (conflict)"


def tier_done(runtime: Runtime, run: NamespaceRun, tier: str) -> None:
    """Waits some tiers need before the next may start: CRDs Established and served (their custom
    resources come in a later tier), and the namespace's `default` ServiceAccount (pods need it)."""
    control_plane = runtime.control_plane
    deadline = time.monotonic() + runtime.settings.adoption_timeout
    if tier == "crds":
        crds = control_plane.discovery.require(CRDS)
        for crd in runtime.backup(run).items(CRDS):
            name = crd["metadata"]["name"]
            _wait(
                partial(_established, control_plane, crds, name),
                deadline,
                f"CustomResourceDefinition {name} to be Established",
            )
        control_plane.discovery.refresh()
    if tier == "pods" and _has_pod_owners(runtime, run):
        lag = barrier.await_pod_informers(control_plane, run.namespace, runtime.settings.adoption_timeout)
        log.info("%s: the control plane's controllers saw its pods after %.3fs", run.namespace, lag)
    if tier == "namespaces":
        accounts = control_plane.discovery.resolve("serviceaccounts")
        _wait(
            lambda: control_plane.get(accounts, run.namespace, "default") is not None,
            deadline,
            f'the "default" ServiceAccount of {run.namespace} (pods cannot be created without it)',
        )


def _has_pod_owners(runtime: Runtime, run: NamespaceRun) -> bool:
    """Whether a later tier creates owners whose controllers would count the rebuilt pods."""
    plan = recorded_plan.load(runtime.backup(run), runtime.run_spec(run).context())
    owners = plan.owners_top_down()
    return any("pods" in RULES.for_(group_resource).dependents for group_resource in owners)


def _established(control_plane: Kube, crds: ApiResource, name: str) -> bool:
    crd = control_plane.get(crds, "", name)
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _wait(condition: Callable[[], bool], deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise NotInTime(f"the control plane did not produce {what} in time")
        time.sleep(0.02)
