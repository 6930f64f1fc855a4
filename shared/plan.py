"""The plan of one namespace: for every object the backup holds, what each step does with it, decided once.

One pure function, `plan_namespace`, turns the objects as backed up (or, for `kpromote plan`, as they
would be backed up) into a `NamespacePlan`: per object whether it moves (and why not), its detach action
in the member, its rebuild tier in the control plane, and what a rollback does with it. The backup step
records the plan beside the sealed archive (`PLAN_FILE`, covered by the signed manifest); detach, rebuild,
verify and rollback execute its entries and decide nothing of their own, and `kpromote plan` prints the
same plan from the live member. Decisions depend on other objects (a pod stays when its StatefulSet
stays), so the plan is made over the whole namespace at once.

Rebuild bodies are not stored: `KindRule.rebuild` derives each from its sealed item, deterministically,
and storing them would double every backup.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from shared.errors import PlanMismatch
from shared.items import GroupResource, ItemRef, Obj
from shared.kinds import RULES, Context, DetachKind, DetachStep, Move, RuleRegistry, decide_all
from shared.ordering import rebuild_tiers

PLAN_FILE = "plan.json"
FORMAT = 1
NAMESPACES = GroupResource("namespaces")


class RollbackAction(StrEnum):
    RECREATE = "recreate"
    """Deleted by detach (an owner): re-created in the member from the backup, bottom-up."""
    RESTORE = "restore"
    """Marked by detach: its backed-up metadata patched back."""
    NONE = "none"
    """Not changed in the member."""


_ROLLBACK_OF = {
    DetachKind.ORPHAN_DELETE: RollbackAction.RECREATE,
    DetachKind.MARK: RollbackAction.RESTORE,
    DetachKind.NONE: RollbackAction.NONE,
}


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    """What every step does with one backed-up object."""

    ref: ItemRef
    uid: str
    move: Move
    reason: str = ""
    """Why it does not move (empty when it does)."""
    detach: DetachStep | None = None
    """Its action in the member; None when it does not move."""
    tier: str = ""
    """Its rebuild tier in the control plane (`shared.ordering`); empty when it does not move."""

    @property
    def promoted(self) -> bool:
        return self.move is Move.PROMOTE

    @property
    def rollback(self) -> RollbackAction:
        return _ROLLBACK_OF[self.detach.kind] if self.detach is not None else RollbackAction.NONE

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "resource": self.ref.group_resource,
            "namespace": self.ref.namespace,
            "name": self.ref.name,
            "uid": self.uid,
            "move": self.move.value,
        }
        if self.reason:
            entry["reason"] = self.reason
        if self.detach is not None:
            entry["detach"] = {"action": self.detach.kind.value, "why": self.detach.reason}
            if self.detach.patch is not None:
                entry["detach"]["patch"] = self.detach.patch
            entry["tier"] = self.tier
            entry["rollback"] = self.rollback.value
        return entry

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], steps: dict[bytes, DetachStep]) -> ObjectPlan:
        """`steps` shares equal detach steps between the entries of one plan (`_shared`)."""
        detach = entry.get("detach")
        step = None
        if detach:
            step = _shared(
                steps, DetachStep(DetachKind(detach["action"]), detach.get("patch"), detach["why"])
            )
        return cls(
            ref=ItemRef(GroupResource(entry["resource"]), entry["namespace"], entry["name"]),
            uid=entry["uid"],
            move=Move(entry["move"]),
            reason=entry.get("reason", ""),
            detach=step,
            tier=entry.get("tier", ""),
        )


def _shared(steps: dict[bytes, DetachStep], step: DetachStep) -> DetachStep:
    """The equal step already in `steps`, else `step`, now kept there: every object of a kind has the
    same step, so a 10,000-object plan holds a handful of patches, not 10,000 (464 bytes an entry
    instead of 1,356)."""
    key = orjson.dumps([step.kind, step.patch, step.reason], option=orjson.OPT_SORT_KEYS)
    return steps.setdefault(key, step)


@dataclass(frozen=True)
class NamespacePlan:
    """The plan of one namespace, its objects by UID."""

    objects: Mapping[str, ObjectPlan]

    def of(self, obj: Obj) -> ObjectPlan:
        """The entry of a backed-up object; a backup object the plan does not know is a broken backup."""
        uid = obj["metadata"]["uid"]
        try:
            return self.objects[uid]
        except KeyError:
            raise PlanMismatch(
                f"the plan has no entry for {obj.get('kind')} {obj['metadata']['name']}"
            ) from None

    def entries(self, group_resource: str | None = None) -> Iterator[ObjectPlan]:
        for entry in self.objects.values():
            if group_resource is None or entry.ref.group_resource == group_resource:
                yield entry

    def promoted(self, group_resource: str | None = None) -> Iterator[ObjectPlan]:
        return (entry for entry in self.entries(group_resource) if entry.promoted)

    def not_moved(self) -> list[tuple[ItemRef, str]]:
        """What stays in the member or is skipped, with the reason: what progress reports as skipped."""
        return [(entry.ref, entry.reason) for entry in self.entries() if not entry.promoted]

    def detached(self, group_resource: str | None, action: DetachKind) -> list[ObjectPlan]:
        """The objects (of one type, or all) that detach acts on with `action`."""
        return [e for e in self.promoted(group_resource) if e.detach is not None and e.detach.kind is action]

    def detach_actions(self) -> Counter[DetachKind]:
        return Counter(entry.detach.kind for entry in self.entries() if entry.detach is not None)

    def owners_top_down(self) -> list[str]:
        """The group-resources detach deletes with Orphan propagation, top-down by their rules' owner
        level: a Deployment before its ReplicaSets, so nothing re-creates what was just deleted."""
        owners = {e.ref.group_resource for e in self.entries() if e.rollback is RollbackAction.RECREATE}
        return sorted(owners, key=lambda gr: (-RULES.for_(gr).owner_level, gr))

    def owners_bottom_up(self) -> list[str]:
        """The order a rollback re-creates owners in: ReplicaSets before the Deployment that adopts them
        (docs/control-plane-traps.md#deployment-before-its-replicasets)."""
        return sorted(self.owners_top_down(), key=lambda gr: (RULES.for_(gr).owner_level, gr))

    def to_json(self) -> dict[str, Any]:
        entries = sorted(
            self.objects.values(), key=lambda e: (e.ref.group_resource, e.ref.namespace, e.ref.name)
        )
        return {"format": FORMAT, "objects": [entry.to_json() for entry in entries]}

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def loads(cls, data: bytes) -> NamespacePlan:
        payload = orjson.loads(data)
        if payload.get("format") != FORMAT:
            raise PlanMismatch(f"plan format {payload.get('format')!r} is not {FORMAT}")
        steps: dict[bytes, DetachStep] = {}
        entries = (ObjectPlan.from_json(entry, steps) for entry in payload["objects"])
        return cls({entry.uid: entry for entry in entries})


def plan_namespace(
    items: Iterable[tuple[str, Obj]], context: Context, rules: RuleRegistry = RULES
) -> NamespacePlan:
    """The plan for `(group-resource, object)` pairs as backed up: the namespace, its selected types and
    the cluster-scoped objects they depend on. Pure: the same objects give the same plan on any worker."""
    items = list(items)
    decisions = decide_all(items, rules)
    tier_of = {gr: tier.name for tier, types in rebuild_tiers({gr for gr, _ in items}) for gr in types}
    objects = {}
    steps: dict[bytes, DetachStep] = {}
    for group_resource, obj in items:
        metadata = obj["metadata"]
        decision = decisions[metadata["uid"]]
        promoted = decision.move is Move.PROMOTE
        objects[metadata["uid"]] = ObjectPlan(
            ref=ItemRef.of(group_resource, obj),
            uid=metadata["uid"],
            move=decision.move,
            reason=decision.reason,
            detach=_shared(steps, rules.for_(group_resource).detach(obj, context)) if promoted else None,
            tier=tier_of[group_resource] if promoted else "",
        )
    return NamespacePlan(objects)
