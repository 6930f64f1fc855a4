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
from collections.abc import Mapping
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

_OUR_ANNOTATIONS = (PROMOTED_BY, PROMOTED_IN_RUN)
"""Set by us on what we create: they say nothing about the object's content."""


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
    """`obj` reduced to what two clusters agree on, whatever its kind: `strip_for_rebuild`, without our
    annotations and without empty label/annotation maps. Each kind's rule removes on top what each cluster
    allocates for itself (`KindRule.drop_allocated`); `KindRule.conflicts` compares the two."""
    body = strip_for_rebuild(obj)
    metadata = body["metadata"]
    for key in _OUR_ANNOTATIONS:
        (metadata.get("annotations") or {}).pop(key, None)
    for key in ("labels", "annotations"):
        if not metadata.get(key):
            metadata.pop(key, None)
    return body
