"""Leases of the namespace's own leader elections (coordination.k8s.io).

A Lease is renewed every few seconds by its holder, a pod that keeps running in the member: a copy in the
control plane would be stale at once, read by nothing there, and would differ from the member's on every
comparison. Not moved; the member keeps renewing its own.
"""

from __future__ import annotations

from shared.items import Obj
from shared.kinds.registry import RULES, Decision, KindRule, Move


@RULES.register
class LeaseRule(KindRule):
    group_resources = ("leases.coordination.k8s.io",)

    def decide(self, obj: Obj) -> Decision:
        return Decision(Move.SKIP, "renewed by its holder in the member; a control-plane copy would be stale")
