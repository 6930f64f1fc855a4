"""Workload controllers of the apps group.

Deployments, ReplicaSets and StatefulSets are orphan-deleted in the member and re-created in the
control plane after their pods, where they adopt them: no new pod and no new ReplicaSet as long as the
template is untouched (docs/control-plane-traps.md#adoption). Their rebuild is therefore the generic strip and
nothing else: not even our annotation goes on the template (any template change is a rollout:
docs/control-plane-traps.md#template-changes).
"""

from __future__ import annotations

from shared.items import Obj
from shared.kinds.bases import OwnerRule
from shared.kinds.helpers import controller_kind
from shared.kinds.registry import RULES, Decision, KindRule, Move

DAEMONSET_STAYS = "a control-plane copy would run duplicate pods through the virtual node"
UNOBSERVED = "its controller has not yet seen its latest spec"


def _unobserved(obj: Obj) -> bool:
    """A spec change its controller has not acted on: whatever the status says is of an older spec."""
    observed = (obj.get("status") or {}).get("observedGeneration") or 0
    return observed < (obj["metadata"].get("generation") or 0)


@RULES.register
class DeploymentRule(OwnerRule):
    """The Deployment finds its restored ReplicaSet by template equality (`EqualIgnoreHash`) and keeps
    `deployment.kubernetes.io/revision` (docs/control-plane-traps.md#adoption)."""

    group_resources = ("deployments.apps",)
    owner_level = 2
    dependents = ("replicasets.apps",)

    def unsettled(self, obj: Obj) -> str | None:
        """A rollout `kubectl rollout status` would still wait for, unless paused (the copy is paused too).
        The control plane's controller would carry it on: new pods there lack the virtual node's
        toleration and stay Pending, while old ones are deleted, and through Kosmos in the member too."""
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if spec.get("paused"):
            return None
        wanted = spec.get("replicas", 1)
        updated, replicas = status.get("updatedReplicas") or 0, status.get("replicas") or 0
        if _unobserved(obj):
            return UNOBSERVED
        if updated < wanted or replicas > updated:
            return f"rolling out: {updated} of {wanted} replicas updated, {replicas} in all"
        return None


@RULES.register
class ReplicaSetRule(OwnerRule):
    """Every ReplicaSet, the scaled-down history ones included: left out, the Deployment makes a new one
    and history is lost (docs/control-plane-traps.md#deployment-before-its-replicasets). Its
    `deployment.kubernetes.io/revision` annotation is kept by the generic strip, so the Deployment's
    revision does not fall back to 1."""

    group_resources = ("replicasets.apps",)
    promoted_with = ("Deployment",)
    owner_level = 1
    dependents = ("pods",)


@RULES.register
class StatefulSetRule(OwnerRule):
    group_resources = ("statefulsets.apps",)
    owner_level = 1
    dependents = ("pods", "controllerrevisions.apps")

    def decide(self, obj: Obj) -> Decision:
        """The revision name hashes the template *and* `status.collisionCount`, which starts empty in the
        control plane: a member StatefulSet with collisions would get a new revision name there, so its
        pods would be rolled (docs/control-plane-traps.md#collisioncount)."""
        collisions = (obj.get("status") or {}).get("collisionCount") or 0
        if collisions > 0:
            return Decision(
                Move.STAY,
                f"collisionCount {collisions} would give a new revision name in the control plane "
                "(a rollout); not promoted",
            )
        return super().decide(obj)

    def unsettled(self, obj: Obj) -> str | None:
        """A RollingUpdate with pods still on the old revision above the partition: the control plane's
        controller would go on deleting them, and their replacements could not run on the virtual node.
        OnDelete replaces nothing by itself."""
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return None
        if _unobserved(obj):
            return UNOBSERVED
        partition = (strategy.get("rollingUpdate") or {}).get("partition") or 0
        wanted, updated = spec.get("replicas", 1), status.get("updatedReplicas") or 0
        if status.get("currentRevision") != status.get("updateRevision") and updated < wanted - partition:
            return f"rolling out: {updated} of {wanted - partition} pods on the new revision"
        return None


@RULES.register
class ControllerRevisionRule(KindRule):
    group_resources = ("controllerrevisions.apps",)

    def decide(self, obj: Obj) -> Decision:
        """Not carried over: the StatefulSet controller re-creates the current revision under the same name
        and its pods match it, while a copy sent through the Python client's JSON is never adopted and
        wedges the StatefulSet (docs/control-plane-traps.md#controllerrevision-bytes). Only rollout history
        is lost. A DaemonSet's revisions stay with the DaemonSet."""
        if controller_kind(obj) == "DaemonSet":
            return Decision(Move.STAY, "belongs to a DaemonSet, which stays in the member")
        return Decision(
            Move.SKIP,
            "the StatefulSet controller re-creates the current revision under the same name; "
            "a copy breaks adoption, as the controller compares revision data byte for byte and JSON "
            "re-encoding changes the bytes",
        )


@RULES.register
class DaemonSetRule(KindRule):
    group_resources = ("daemonsets.apps",)

    def decide(self, obj: Obj) -> Decision:
        """Its pods run on every member node; a copy in the control plane would target the virtual node
        and start duplicates there (docs/control-plane-traps.md#duplicate-workloads)."""
        return Decision(Move.STAY, DAEMONSET_STAYS)
