"""Decisions for a whole backup at once, so that an object never leaves without its controller.

A rule decides from one object alone. That is not enough when a controller stays in the member: its
dependents, which their own rules would promote, must stay too, or the member controller and a
control-plane copy would both manage them (pods of a StatefulSet kept back by its collisionCount, of a
Deployment owned by an operator's resource). The steps should ask here rather than rule by rule.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.items import Obj
from shared.kinds.helpers import controller_ref
from shared.kinds.registry import RULES, Decision, Move, RuleRegistry


def decide_all(items: Iterable[tuple[str, Obj]], rules: RuleRegistry = RULES) -> dict[str, Decision]:
    """Decision by object UID for (group-resource, object) pairs as backed up: each rule's own, except
    that an object whose controller (by UID, transitively) stays in the member stays with it."""
    objects = {obj["metadata"]["uid"]: (group_resource, obj) for group_resource, obj in items}
    decisions = {uid: rules.for_(gr).decide(obj) for uid, (gr, obj) in objects.items()}
    pending = True
    while pending:
        pending = False
        for uid, (_, obj) in objects.items():
            ref = controller_ref(obj)
            if ref is None or decisions[uid].move is not Move.PROMOTE:
                continue
            owner = decisions.get(ref.get("uid", ""))
            if owner is not None and owner.move is Move.STAY:
                decisions[uid] = Decision(Move.STAY, f"its {ref['kind']} {ref['name']} stays in the member")
                pending = True
    return decisions
