"""`kpromote plan`: what a policy would do, read from the live clusters, with nothing changed anywhere.

Read-only by construction: the precheck (itself read-only), then LISTs and GETs; no Redis, no file. The
plan is the pipeline's own (`shared.plan.plan_namespace`, the function whose result the backup step
records and every later step executes), over the objects the backup would hold (`select_types`, the kind
rules' dependencies, the backup's `MemberCatalog`); the control plane is only asked what already exists
there (`KindRule.conflicts`). It shows what the pipeline would do rather than a second opinion of it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.console.common import (
    CONFLICTS,
    OK,
    PRECHECK_FAILED,
    Format,
    connect,
    guarded,
    listed,
    load_policy_file,
    load_settings,
    out,
    print_json,
)
from shared.claims import ClaimHeld, Claims
from shared.items import ItemRef, Obj
from shared.kinds import RULES, Context, DetachKind, Move
from shared.kinds.storage import retain_patch
from shared.kube import ApiResource, Forbidden, Kube
from shared.kube.connect import connect_member
from shared.models import PromotePolicy
from shared.plan import plan_namespace
from shared.precheck import precheck
from shared.selection import select_types
from shared.settings import Settings
from shared.steps.backup import NAMESPACES, MemberCatalog

PERSISTENT_VOLUMES = "persistentvolumes"
CONFLICT = "exists in the control plane with different content; the rebuild would leave it untouched"

Lookup = Callable[[str, str, str], Obj | None]
"""(group-resource, namespace, name) -> the control plane's object of that name, or None."""


@dataclass(frozen=True)
class Entry:
    """One object the plan says something about, and why."""

    resource: str
    namespace: str
    name: str
    reason: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "resource": self.resource,
            "namespace": self.namespace,
            "name": self.name,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Dependency:
    """A cluster-scoped object the namespace needs; `found` is False when the member does not have it
    (the backup would go on without it, as the seal does)."""

    resource: str
    name: str
    found: bool


@dataclass
class NamespacePlan:
    name: str
    backed_up: Counter[str] = field(default_factory=Counter)
    """Objects per kind the backup would hold, the namespace itself and its dependencies included."""
    promoted: Counter[str] = field(default_factory=Counter)
    dependencies: list[Dependency] = field(default_factory=list)
    orphan_deleted: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    marked: Counter[str] = field(default_factory=Counter)
    retained: list[str] = field(default_factory=list)
    """Member PVs detach would switch to Retain before anything else."""
    stays: list[Entry] = field(default_factory=list)
    skipped: list[Entry] = field(default_factory=list)
    conflicts: list[Entry] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    """Every object's plan entry (`shared.plan.ObjectPlan.to_json`), as the backup step records it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backedUp": dict(sorted(self.backed_up.items())),
            "promoted": dict(sorted(self.promoted.items())),
            "dependencies": [
                {"resource": d.resource, "name": d.name, "found": d.found} for d in self.dependencies
            ],
            "detach": {
                "orphanDelete": {kind: sorted(names) for kind, names in sorted(self.orphan_deleted.items())},
                "mark": dict(sorted(self.marked.items())),
                "retain": sorted(self.retained),
            },
            "stays": [entry.to_json() for entry in self.stays],
            "skipped": [entry.to_json() for entry in self.skipped],
            "conflicts": [entry.to_json() for entry in self.conflicts],
            "objects": self.objects,
        }


@dataclass
class Plan:
    policy: str
    cluster: str
    precheck_errors: list[str] = field(default_factory=list)
    namespaces: list[NamespacePlan] = field(default_factory=list)
    precheck_warnings: list[str] = field(default_factory=list)
    """Let through, but worth a person's attention (as the policy's status.precheckWarnings)."""

    @property
    def conflicts(self) -> list[Entry]:
        """Each conflicting object once, though several namespaces may share a dependency."""
        unique = {(e.resource, e.namespace, e.name): e for ns in self.namespaces for e in ns.conflicts}
        return [unique[key] for key in sorted(unique)]

    @property
    def exit_code(self) -> int:
        """3 before 4: with a failed precheck the watcher would stop before any conflict mattered."""
        if self.precheck_errors:
            return PRECHECK_FAILED
        return CONFLICTS if self.conflicts else OK

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "cluster": self.cluster,
            "clean": self.exit_code == OK,
            "exitCode": self.exit_code,
            "precheckErrors": list(self.precheck_errors),
            "precheckWarnings": list(self.precheck_warnings),
            "conflicts": [entry.to_json() for entry in self.conflicts],
            "namespaces": [ns.to_json() for ns in self.namespaces],
        }


def assess(
    namespace: str, items: Iterable[tuple[str, Obj]], context: Context, lookup: Lookup
) -> NamespacePlan:
    """The plan of one namespace from its objects as the backup would hold them (namespace, selected types,
    found dependencies): `plan_namespace`'s, summed up for a person, and the conflicts `lookup` (what the
    control plane already has) reveals."""
    items = list(items)
    planned = plan_namespace(items, context)
    plan = NamespacePlan(namespace, objects=planned.to_json()["objects"])
    for group_resource, obj in items:
        entry = planned.of(obj)
        ref = entry.ref
        plan.backed_up[group_resource] += 1
        if group_resource == PERSISTENT_VOLUMES and retain_patch(obj) is not None:
            plan.retained.append(ref.name)
        if entry.detach is None:
            kept = plan.stays if entry.move is Move.STAY else plan.skipped
            kept.append(Entry(group_resource, ref.namespace, ref.name, entry.reason))
            continue
        plan.promoted[group_resource] += 1
        if entry.detach.kind is DetachKind.ORPHAN_DELETE:
            plan.orphan_deleted[group_resource].append(ref.name)
        elif entry.detach.kind is DetachKind.MARK:
            plan.marked[group_resource] += 1
        # The namespace itself is the precheck's to refuse; anything else the control plane has is compared.
        existing = lookup(group_resource, ref.namespace, ref.name) if group_resource != NAMESPACES else None
        rule = RULES.for_(group_resource)
        if existing is not None and rule.conflicts(existing, rule.rebuild(obj, context), context.run):
            plan.conflicts.append(Entry(group_resource, ref.namespace, ref.name, CONFLICT))
    return plan


class Inventory:
    """Reads, with caches, what planning several namespaces needs: dependencies shared by namespaces are
    fetched once, and the control plane is asked only about objects that could exist there."""

    def __init__(self, member: Kube, control_plane: Kube, context: Context) -> None:
        self.member = member
        self.control_plane = control_plane
        self.context = context
        self.catalog = MemberCatalog(member)
        self._dependencies: dict[ItemRef, Obj | None] = {}
        self._control_plane_namespaces: dict[str, bool] = {}

    def namespace(self, namespace: Obj, types: list[ApiResource]) -> NamespacePlan:
        name = namespace["metadata"]["name"]
        items: list[tuple[str, Obj]] = [(NAMESPACES, namespace)]
        related: set[ItemRef] = set()
        for resource in types:
            rule = RULES.for_(resource.group_resource)
            for obj in self.member.list(resource, name):
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                related.update(rule.related(obj, self.catalog))
                items.append((resource.group_resource, obj))
        dependencies = []
        for ref in sorted(related):
            dependency = self._dependency(ref)
            dependencies.append(Dependency(ref.group_resource, ref.name, dependency is not None))
            if dependency is not None:
                items.append((ref.group_resource, dependency))
        plan = assess(name, items, self.context, self._control_plane_object)
        plan.dependencies = dependencies
        return plan

    def _dependency(self, ref: ItemRef) -> Obj | None:
        if ref not in self._dependencies:
            resource = self.member.discovery.by_group_resource(ref.group_resource)
            self._dependencies[ref] = self.member.get(resource, ref.namespace, ref.name) if resource else None
        return self._dependencies[ref]

    def _control_plane_object(self, group_resource: str, namespace: str, name: str) -> Obj | None:
        """Namespaced objects cannot exist in a namespace the control plane lacks (the normal case, the
        precheck insists on it), which saves one GET per object."""
        if namespace and not self._has_namespace(namespace):
            return None
        resource = self.control_plane.discovery.by_group_resource(group_resource)
        return self.control_plane.get(resource, namespace, name) if resource else None

    def _has_namespace(self, namespace: str) -> bool:
        if namespace not in self._control_plane_namespaces:
            resource = self.control_plane.discovery.resolve("namespaces")
            self._control_plane_namespaces[namespace] = (
                self.control_plane.get(resource, "", namespace) is not None
            )
        return self._control_plane_namespaces[namespace]


def build(control_plane: Kube, policy: PromotePolicy, settings: Settings) -> Plan:
    """The plan: the precheck's verdict, then the inventory of every selected namespace the member has
    (also when the precheck failed for other reasons, so one run shows everything there is to fix)."""
    spec, name = policy.spec, policy.metadata["name"]
    result = precheck(control_plane, spec, settings.protected_namespaces, settings.member_kubeconfigs)
    held = _held_elsewhere(control_plane, settings, spec.cluster_name, result.namespaces)
    plan = Plan(name, spec.cluster_name, [*result.errors, *held], precheck_warnings=result.warnings)
    candidates = [ns for ns in result.namespaces if ns not in settings.protected_namespaces]
    if not candidates:
        return plan
    with connect_member(control_plane, spec.cluster_name, settings.member_kubeconfigs) as member:
        types, _ = select_types(spec, member.discovery)
        inventory = Inventory(
            member, control_plane, Context(cluster=spec.cluster_name, policy=name, run="plan")
        )
        namespaces = member.discovery.resolve("namespaces")
        for namespace in candidates:
            obj = member.get(namespaces, "", namespace)
            if obj is not None:
                plan.namespaces.append(inventory.namespace(obj, types))
    return plan


def _held_elsewhere(
    control_plane: Kube, settings: Settings, cluster: str, namespaces: list[str]
) -> list[str]:
    """What the watcher's claims would refuse: namespaces another run owns (read only; nothing is claimed
    here). Not allowed to read the claims, the plan says nothing of them: the watcher still checks."""
    claims = Claims(control_plane, settings.namespace)
    try:
        return [str(ClaimHeld(claim)) for ns in sorted(namespaces) if (claim := claims.get(cluster, ns))]
    except Forbidden:
        return []


@guarded
def run(policy_file: Path, kubeconfig: str | None, output: Format) -> int:
    policy = load_policy_file(policy_file)
    settings = load_settings()
    with connect(kubeconfig, settings) as control_plane:
        plan = build(control_plane, policy, settings)
    if output is Format.JSON:
        print_json(plan.to_json())
    else:
        render(out(), plan, policy_file)
    return plan.exit_code


def render(console: Console, plan: Plan, policy_file: Path) -> None:
    console.print(
        f"[bold]Plan of PromotePolicy {escape(plan.policy)}[/] from member cluster {escape(plan.cluster)}: "
        "a dry run, nothing was changed"
    )
    if plan.precheck_errors:
        console.print(f"[bold red]Precheck failed[/] with {len(plan.precheck_errors)} problem(s):")
        for error in plan.precheck_errors:
            console.print(f"  [red]x[/] {escape(error)}")
    else:
        console.print("[green]Precheck passed.[/]")
    for warning in plan.precheck_warnings:
        console.print(f"  [yellow]![/] {escape(warning)}")
    for namespace in plan.namespaces:
        _render_namespace(console, namespace)
    console.print()
    console.print(_summary(plan, policy_file))


def _render_namespace(console: Console, plan: NamespacePlan) -> None:
    console.print()
    console.rule(f"[bold]namespace {escape(plan.name)}")
    dependency_kinds = {d.resource for d in plan.dependencies}
    counts = Table(title="Backed up", title_justify="left")
    for column in ("kind", "objects", "promote", "stay", "skip"):
        counts.add_column(column, justify="left" if column == "kind" else "right")
    stays, skips = Counter(e.resource for e in plan.stays), Counter(e.resource for e in plan.skipped)
    for kind in sorted(plan.backed_up):
        label = f"{kind} (cluster)" if kind in dependency_kinds else kind
        counts.add_row(
            escape(label),
            str(plan.backed_up[kind]),
            str(plan.promoted[kind]),
            str(stays[kind]),
            str(skips[kind]),
        )
    counts.add_row(
        "[bold]total",
        str(plan.backed_up.total()),
        str(plan.promoted.total()),
        str(len(plan.stays)),
        str(len(plan.skipped)),
    )
    console.print(counts)
    if plan.dependencies:
        table = Table(title="Cluster-scoped dependencies that come along", title_justify="left")
        for column in ("kind", "name", "note"):
            table.add_column(column)
        for dependency in plan.dependencies:
            note = "" if dependency.found else "[yellow]not in the member: not backed up"
            table.add_row(escape(dependency.resource), escape(dependency.name), note)
        console.print(table)
    _render_detach(console, plan)
    _render_grouped(console, "Stays in the member", plan.stays)
    _render_grouped(console, "Skipped (not moved)", plan.skipped)
    if plan.conflicts:
        table = Table(title="[red]Conflicts with the control plane", title_justify="left")
        for column in ("kind", "object", "why"):
            table.add_column(column)
        for entry in plan.conflicts:
            where = f"{entry.namespace}/{entry.name}" if entry.namespace else entry.name
            table.add_row(escape(entry.resource), escape(where), escape(entry.reason))
        console.print(table)


def _render_detach(console: Console, plan: NamespacePlan) -> None:
    table = Table(title="Detach in the member (no pod is deleted)", title_justify="left")
    for column in ("action", "kind", "count", "objects"):
        table.add_column(column, justify="right" if column == "count" else "left")
    if plan.retained:
        table.add_row(
            "reclaim policy to Retain",
            PERSISTENT_VOLUMES,
            str(len(plan.retained)),
            escape(listed(plan.retained)),
        )
    for kind, names in sorted(plan.orphan_deleted.items()):
        table.add_row(
            "delete, orphaning dependents", escape(kind), str(len(names)), escape(listed(sorted(names)))
        )
    for kind, count in sorted(plan.marked.items()):
        table.add_row("mark as a Kosmos copy", escape(kind), str(count), "")
    if table.row_count:
        console.print(table)


def _render_grouped(console: Console, title: str, entries: list[Entry]) -> None:
    """One row per kind and reason: a thousand pods of one DaemonSet are one line, not a thousand."""
    if not entries:
        return
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in entries:
        groups[entry.resource, entry.reason].append(entry.name)
    table = Table(title=title, title_justify="left")
    for column in ("kind", "count", "objects", "why"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for (kind, reason), names in sorted(groups.items()):
        table.add_row(escape(kind), str(len(names)), escape(listed(sorted(names))), escape(reason))
    console.print(table)


def _summary(plan: Plan, policy_file: Path) -> str:
    if plan.precheck_errors:
        return (
            f"[bold red]Not ready:[/] the precheck found {len(plan.precheck_errors)} problem(s); fix them, "
            f"then run kpromote plan -f {escape(str(policy_file))} again (exit {PRECHECK_FAILED})."
        )
    if plan.conflicts:
        return (
            f"[bold red]Not ready:[/] {len(plan.conflicts)} object(s) already exist in the control plane "
            "with different content and would be left untouched; delete or rename them there, or leave "
            f"their kind out of the policy (exit {CONFLICTS})."
        )
    promoted = sum(ns.promoted.total() for ns in plan.namespaces)
    stays = sum(len(ns.stays) for ns in plan.namespaces)
    skipped = sum(len(ns.skipped) for ns in plan.namespaces)
    return (
        f"[bold green]Plan is clean:[/] {len(plan.namespaces)} namespace(s), {promoted} object(s) to "
        f"promote, {stays} staying in the member, {skipped} skipped. "
        f"Run it with kpromote apply -f {escape(str(policy_file))} --wait."
    )
