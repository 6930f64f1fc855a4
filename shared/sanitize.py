"""Generic cleanup of an object backed up from the member before it is created in the control plane.

This runs once for every kind, before the kind's own delta (`shared.kinds`), as Velero's
`resetMetadata`/`resetStatus` do. What is removed and why:

* uid, resourceVersion, creationTimestamp, generation, selfLink, deletion fields: the member's
  bookkeeping; the control plane assigns its own.
* managedFields: a create ignores them anyway (docs/control-plane-traps.md#managedfields).
* ownerReferences: they carry member UIDs, and the control plane's garbage collector deletes a
  dependent whose owner UID does not exist. Pods created with them were deleted in both clusters
  (docs/control-plane-traps.md#stale-ownerreferences). Controllers re-adopt by selector instead
  (docs/control-plane-traps.md#adoption).
* generateName, when a name is set: the name is what must match; a leftover prefix is noise.
* finalizers: unlike the original Kosmos code, which kept them (docs/control-plane-traps.md#finalizers). A
  finalizer belongs to a controller of the member (or to a built-in one that re-adds it when it
  runs in the control plane too, such as `kubernetes.io/pvc-protection`). One whose controller does
  not run in the control plane would block the deletion there forever, rollback included.
* status: written by controllers; Kosmos copies the member pod status into the control plane
  (docs/control-plane-traps.md#kosmos-pods).

Labels, annotations (`kubectl.kubernetes.io/last-applied-configuration` included: the Service rule
reads it), name, namespace and all of spec are kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from shared.items import Obj
from shared.markers import PROMOTED_BY, PROMOTED_IN_RUN

_MEMBER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
    "managedFields",
    "ownerReferences",
    "finalizers",
)

_PER_CLUSTER_ANNOTATIONS = (
    PROMOTED_BY,
    PROMOTED_IN_RUN,
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
)
"""Set by us or by each cluster's volume controllers: they say nothing about the object's content."""


def strip_for_rebuild(obj: Mapping[str, Any]) -> Obj:
    """A deep copy of `obj` without the member's bookkeeping (see the module docstring)."""
    body = copy.deepcopy(dict(obj))
    metadata = body.setdefault("metadata", {})
    for key in _MEMBER_METADATA:
        metadata.pop(key, None)
    if metadata.get("name"):
        metadata.pop("generateName", None)
    body.pop("status", None)
    return body


def normalized(obj: Mapping[str, Any]) -> Obj:
    """`obj` reduced to what two clusters agree on, to compare an object that already exists in the
    control plane with the body we would create: equal means it is the same thing, different means a
    conflict that we report and leave alone (never take over someone else's:
    docs/control-plane-traps.md#shared-cluster-scoped-objects).

    Dropped on top of `strip_for_rebuild`: our PROMOTED_BY annotation, the volume controllers' binding
    annotations, empty label/annotation maps, and the per-kind values each cluster allocates itself
    (Service IPs and node ports, ServiceAccount token secrets, PV claim UID, aggregated ClusterRole rules).
    """
    body = strip_for_rebuild(obj)
    metadata = body["metadata"]
    for key in _PER_CLUSTER_ANNOTATIONS:
        (metadata.get("annotations") or {}).pop(key, None)
    for key in ("labels", "annotations"):
        if not metadata.get(key):
            metadata.pop(key, None)
    _ALLOCATED.get(body.get("kind", ""), _nothing)(body)
    return body


def _nothing(body: Obj) -> None:
    """Kinds without values allocated by the cluster."""


def _service_allocations(body: Obj) -> None:
    """Each cluster allocates cluster IPs and node ports from its own ranges
    (docs/control-plane-traps.md#cluster-ips)."""
    spec = body.get("spec") or {}
    if spec.get("clusterIP") != "None":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    spec.pop("healthCheckNodePort", None)
    for port in spec.get("ports") or []:
        port.pop("nodePort", None)


def _service_account_tokens(body: Obj) -> None:
    """Each cluster's token controller issues its own token Secret names
    (docs/control-plane-traps.md#token-secrets)."""
    body.pop("secrets", None)


def _volume_claim_uid(body: Obj) -> None:
    """claimRef.uid is the UID of the claim in whichever cluster bound it
    (docs/control-plane-traps.md#pv-binding)."""
    claim = (body.get("spec") or {}).get("claimRef") or {}
    for key in ("uid", "resourceVersion"):
        claim.pop(key, None)


def _aggregated_rules(body: Obj) -> None:
    """An aggregated ClusterRole's rules are filled in from the roles of the cluster it lives in."""
    if body.get("aggregationRule"):
        body.pop("rules", None)


_ALLOCATED: dict[str, Callable[[Obj], None]] = {
    "Service": _service_allocations,
    "ServiceAccount": _service_account_tokens,
    "PersistentVolume": _volume_claim_uid,
    "ClusterRole": _aggregated_rules,
}


def conflicts(existing: Mapping[str, Any], body: Mapping[str, Any], run: str) -> bool:
    """Whether an object already in the control plane blocks the one `run` would create: not when this
    run made it (a re-run) and not when it is the same once each cluster's own fields are ignored."""
    if ((existing.get("metadata") or {}).get("annotations") or {}).get(PROMOTED_IN_RUN) == run:
        return False
    return normalized(existing) != normalized(body)
