"""Pods: the objects that must not restart. Everything else in promote exists to keep them running.

Member side, a pod is only labelled `kosmos-io/pod=true`, last of all; from then on Kosmos treats it as the
member half of a control-plane pod (docs/control-plane-traps.md#kosmos-pods). Control-plane side, it is
created already bound to the virtual node with the member's name and namespace and an otherwise identical
spec: Kosmos finds the running member pod and only updates it, and spec fields that are immutable on a running
pod must match.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.items import GroupResource, ItemRef, Obj
from shared.kinds.helpers import (
    controller_kind,
    mark,
    remove_markers,
    restore_metadata,
    set_metadata,
    stays_with_its_controller,
)
from shared.kinds.registry import (
    CREATED_BY_CONTROL_PLANE,
    NO_OWNERS,
    PROMOTE,
    RULES,
    Catalog,
    Context,
    Decision,
    DetachStep,
    KindRule,
    Move,
)
from shared.markers import KOSMOS_NODE_KEY, KOSMOS_TOLERATION, POD_MARKER, SYNCED_LABEL

PRIORITY_CLASSES = GroupResource("priorityclasses.scheduling.k8s.io")
MIRROR_POD = "kubernetes.io/config.mirror"

_STAYS_WITH_OWNER = {
    "DaemonSet": "runs with its DaemonSet, which stays in the member",
    "Job": "runs with its Job, which stays in the member until it finishes",
}


def tolerates_virtual_node(toleration: Mapping[str, str]) -> bool:
    """Whether `toleration` already tolerates the virtual node's taint `kosmos.io/node=true:NoSchedule`
    (Kubernetes toleration matching: an empty key with Exists matches every taint)."""
    key, operator = toleration.get("key", ""), toleration.get("operator", "Equal")
    if key not in ("", KOSMOS_NODE_KEY) or (not key and operator != "Exists"):
        return False
    if toleration.get("effect", "") not in ("", "NoSchedule"):
        return False
    return operator == "Exists" or toleration.get("value", "") == "true"


@RULES.register
class PodRule(KindRule):
    group_resources = ("pods",)
    promoted_with = ("ReplicaSet", "StatefulSet")
    delete_grace_seconds = 0
    """A bound pod deleted with a grace period stays Terminating where no kubelet confirms it."""
    checked_when_skipped = True
    """A finished pod stays as it was: the rollback proves it."""

    def decide(self, obj: Obj) -> Decision:
        """Finished pods are not moved (Velero and Kosmos skip them); pods of a DaemonSet or a Job stay with
        their owner (docs/control-plane-traps.md#duplicate-workloads), static pods with their kubelet, and
        pods an operator's own resource controls (a StrimziPodSet, a TaskRun) with that operator, which
        would otherwise go on managing them in the member while the control plane's copies look promoted."""
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return Decision(Move.SKIP, "finished pod, not moved")
        if MIRROR_POD in (obj["metadata"].get("annotations") or {}):
            return Decision(Move.STAY, "static pod, run by the member's kubelet")
        owner = controller_kind(obj)
        if owner in _STAYS_WITH_OWNER:
            return Decision(Move.STAY, _STAYS_WITH_OWNER[owner])
        return stays_with_its_controller(obj, self.promoted_with) or PROMOTE

    def related(self, obj: Obj, catalog: Catalog | None = None) -> list[ItemRef]:
        """Its PriorityClass: Priority admission rejects a pod whose class is missing
        (docs/control-plane-traps.md#pod-admission)."""
        name = (obj.get("spec") or {}).get("priorityClassName")
        return [ItemRef(PRIORITY_CLASSES, "", name)] if name else []

    def detach(self, obj: Obj, ctx: Context) -> DetachStep:
        """Labels only, never spec: a running pod's spec is mostly immutable, and any change is visible."""
        return mark(obj, "member pod marked as the Kosmos twin", labels={POD_MARKER: "true"})

    def revert_detach(
        self, backed_up: Obj, live: Obj, ctx: Context, owner_uids: Mapping[str, str] = NO_OWNERS
    ) -> Obj | None:
        """Labels and annotations exactly as backed up (our marker, `kosmos-io/synced` and whatever Kosmos
        copied down go). ownerReferences are left alone: the re-created owners adopt their pods."""
        return restore_metadata(backed_up, live, owner_uids, owner_references=False)

    def tailor(self, body: Obj, original: Obj, ctx: Context) -> None:
        """Bound to the virtual node, marked, and tolerating its taint; the rest of spec unchanged (the
        projected kube-api-access volume, serviceAccountName and priority are accepted as they are,
        docs/control-plane-traps.md#pod-admission). The toleration goes on pods only, never on templates
        (docs/control-plane-traps.md#template-changes), and is added to an absent list too (the original
        left nil lists untouched, docs/design.md#original-kosmos-promote)."""
        spec = body.setdefault("spec", {})
        spec["nodeName"] = ctx.virtual_node
        tolerations = spec.get("tolerations") or []
        if not any(tolerates_virtual_node(toleration) for toleration in tolerations):
            spec["tolerations"] = [*tolerations, dict(KOSMOS_TOLERATION)]
        set_metadata(body, "labels", POD_MARKER, "true")
        set_metadata(body, "labels", SYNCED_LABEL, "true")

    def rollback_differences(self, backed_up: Obj, live: Obj) -> list[str]:
        return ["pod spec changed"] if backed_up.get("spec") != live.get("spec") else []

    def revert_rebuild(self, live: Obj, ctx: Context) -> Obj | None:
        """Removes `kosmos-io/pod`, as Kosmos' own revert does (`kosmos-io/synced` is read by nothing).
        What keeps the member pod alive is that the rollback removed the member's marker first
        (docs/control-plane-traps.md#kosmos-pods)."""
        return remove_markers(live, labels=[POD_MARKER])


@RULES.register
class PriorityClassRule(KindRule):
    group_resources = (PRIORITY_CLASSES,)

    def decide(self, obj: Obj) -> Decision:
        """`system-` names are reserved for the built-in classes every cluster already has."""
        if obj["metadata"]["name"].startswith("system-"):
            return Decision(Move.SKIP, CREATED_BY_CONTROL_PLANE)
        return PROMOTE
