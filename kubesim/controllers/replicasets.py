"""The ReplicaSet controller: keep `spec.replicas` active pods, adopting orphans before creating any.

Adoption before creation is what makes promote restart-free: pods restored without ownerReferences are adopted
by the restored ReplicaSet within ~0.1 s and no new pod appears (docs/control-plane-traps.md#adoption);
without the pods, the ReplicaSet creates fresh, unscheduled ones (docs/control-plane-traps.md#missing-pods).
The logic follows pkg/controller/replicaset: claim active pods, `manageReplicas` once the controller has seen
its previous creations and deletions (expectations), `calculateStatus`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Mapping
from typing import Any, cast

from kubesim.controllers.pod_control import PodOwnerController
from kubesim.controllers.workloads import (
    Key,
    claim,
    desired_replicas,
    key_of,
    omit_empty,
    pod_from_template,
    selector_of,
)
from kubesim.errors import ApiError
from kubesim.objects import (
    Obj,
    controller_ref,
    is_pod_active,
    is_pod_ready,
    is_terminating,
    labels_of,
    meta,
    name_of,
    namespace_of,
    uid_of,
)
from kubesim.store import Store

_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}
"""`podPhaseToOrdinal` of pkg/controller: earlier phases are deleted first."""


def deletion_order(pod: Mapping[str, Any]) -> tuple[bool, int, bool, float]:
    """Sort key putting the pods a scale-down should delete first (Go's `ActivePods.Less`).

    Unscheduled before scheduled, Pending before Running, not-ready before ready, newer before older:
    the cheapest pods to lose go first. Rank by co-location and restart counts are not emulated.
    """
    status = pod.get("status") or {}
    created = meta(pod).get("creationTimestamp")
    age = dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() if created else 0.0
    return (
        bool((pod.get("spec") or {}).get("nodeName")),
        _PHASE_ORDER.get(status.get("phase", ""), 0),
        is_pod_ready(pod),
        -age,
    )


def replicaset_status(rs: Obj, pods: list[Obj]) -> dict[str, Any]:
    """`calculateStatus` over the active pods the ReplicaSet controls; minReadySeconds is ignored,
    so every ready pod counts as available."""
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    fully_labeled = [pod for pod in pods if template_labels.items() <= labels_of(pod).items()]
    ready = [pod for pod in pods if is_pod_ready(pod)]
    status = {
        "replicas": len(pods),
        "fullyLabeledReplicas": len(fully_labeled),
        "readyReplicas": len(ready),
        "availableReplicas": len(ready),
        "observedGeneration": meta(rs).get("generation", 0),
    }
    return omit_empty(
        status, "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"
    )


class ReplicaSetController(PodOwnerController):
    """Adopts matching orphan pods, creates missing ones from the template, deletes extras."""

    name = "replicaset-controller"
    watches = ("replicasets.apps", "pods")
    live = ("replicasets.apps",)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "apps", "replicasets")
        self.replicasets = self.owners

    def reconcile(self, key: Hashable) -> float | None:
        """A ReplicaSet being deleted does nothing, so an orphaning delete never replaces a pod."""
        namespace, _ = cast(Key, key)
        rs = self.owner(key)
        if rs is None or is_terminating(rs):
            return None
        selector = selector_of(rs)
        active = [pod for pod in self.store.list(self.pods, namespace) if is_pod_active(pod)]
        pods = claim(self.store, self.pods, rs, active, lambda pod: selector.matches(labels_of(pod)))
        if self.expectations.satisfied(key):
            self._manage_replicas(rs, pods)
        self.store.write_status(self.replicasets, rs, replicaset_status(rs, self._owned_active_pods(rs)))
        return None

    def _manage_replicas(self, rs: Obj, pods: list[Obj]) -> None:
        key = key_of(rs)
        excess = len(pods) - desired_replicas(rs)
        condemned = sorted(pods, key=deletion_order)[: max(excess, 0)]
        self.expectations.expect(
            key, adds=max(-excess, 0), deletes=[f"{namespace_of(pod)}/{name_of(pod)}" for pod in condemned]
        )
        for created in range(-excess):
            try:
                self._create_pod(rs)
            except ApiError:
                self.expectations.creation_observed(key, -excess - created)
                raise
        for pod in condemned:
            self.pod_control.delete(rs, pod)

    def _create_pod(self, rs: Obj) -> None:
        body = pod_from_template(rs, rs["spec"]["template"])
        body["metadata"]["generateName"] = f"{name_of(rs)}-"
        self.pod_control.create(rs, body)

    def _owned_active_pods(self, rs: Obj) -> list[Obj]:
        return [
            pod
            for pod in self.store.iter(self.pods, namespace_of(rs))
            if is_pod_active(pod) and (controller_ref(pod) or {}).get("uid") == uid_of(rs)
        ]
