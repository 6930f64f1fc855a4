"""What the ReplicaSet, Deployment and StatefulSet controllers share: claiming dependents and finding owners.

Claiming is Go's `ControllerRefManager.ClaimObject`: an owner keeps what it controls and still selects,
releases what it controls but no longer selects, and adopts orphans it selects that are not being deleted.
Adoption is how promote moves running pods between clusters without restarting them: pods, ReplicaSets and
revisions restored without ownerReferences are taken over by the re-created owners
(docs/control-plane-traps.md#adoption). Callers never claim for an owner that is being deleted; the real
managers refuse to adopt for one, which is what lets an orphaning delete of Deployment then ReplicaSets leave
pods alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubesim.informers import StoreView
from kubesim.objects import (
    Obj,
    clone,
    controller_ref,
    is_terminating,
    labels_of,
    name_of,
    namespace_of,
    owner_reference,
    owner_refs,
    uid_of,
)
from kubesim.resources import ResourceType
from kubesim.selectors import LabelSelector
from kubesim.store import WatchEvent

Key = tuple[str, str]
"""(namespace, name) of the object a controller reconciles."""


def key_of(obj: Mapping[str, Any]) -> Key:
    return namespace_of(obj), name_of(obj)


def selector_of(owner: Mapping[str, Any]) -> LabelSelector:
    return LabelSelector.from_api((owner.get("spec") or {}).get("selector"))


def claim(
    store: StoreView, rt: ResourceType, owner: Obj, candidates: Iterable[Obj], matches: Callable[[Obj], bool]
) -> list[Obj]:
    """The candidates `owner` controls once adoptions and releases are written, in candidate order."""
    owned: list[Obj] = []
    for obj in candidates:
        ref = controller_ref(obj)
        if ref is not None:
            if ref.get("uid") != uid_of(owner):
                continue
            if matches(obj):
                owned.append(obj)
            else:
                _release(store, rt, owner, obj)
        elif matches(obj) and not is_terminating(obj):
            owned.append(adopt(store, rt, owner, obj))
    return owned


def adopt(store: StoreView, rt: ResourceType, owner: Obj, obj: Obj) -> Obj:
    """Append a controller reference; other (non-controller) references are kept, as the SMP does."""
    adopted = clone(obj)
    adopted["metadata"]["ownerReferences"] = [*owner_refs(obj), owner_reference(owner)]
    return store.update(rt, adopted)


def _release(store: StoreView, rt: ResourceType, owner: Obj, obj: Obj) -> None:
    released = clone(obj)
    refs = [ref for ref in owner_refs(obj) if ref.get("uid") != uid_of(owner)]
    if refs:
        released["metadata"]["ownerReferences"] = refs
    else:
        released["metadata"].pop("ownerReferences", None)
    store.update(rt, released)


def owner_keys(store: StoreView, event: WatchEvent, owner_rt: ResourceType) -> set[Key]:
    """The owners a dependent's event concerns, before and after the change.

    A controlled object wakes its controller; an orphan wakes every owner in its namespace whose selector
    matches it, since each of them may adopt it (Go's `getPodReplicaSets` and friends).
    """
    keys: set[Key] = set()
    for obj in (event.obj, event.old):
        if obj is None:
            continue
        namespace = namespace_of(obj)
        ref = controller_ref(obj)
        if ref is None:
            keys.update(
                key_of(owner)
                for owner in store.iter(owner_rt, namespace)
                if selector_of(owner).matches(labels_of(obj))
            )
        elif ref.get("kind") == owner_rt.kind and ref.get("apiVersion") == owner_rt.api_version:
            keys.add((namespace, ref.get("name", "")))
    return keys


def desired_replicas(obj: Mapping[str, Any]) -> int:
    """`spec.replicas`, which admission defaults to 1 for every workload type."""
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def pod_from_template(owner: Obj, template: Mapping[str, Any]) -> Obj:
    """Go's `controller.GetPodFromTemplate`: template labels, annotations and finalizers, a controller
    reference to `owner` and a copy of the spec; callers name the pod."""
    template_meta = template.get("metadata") or {}
    metadata = {
        key: clone(template_meta[key])
        for key in ("labels", "annotations", "finalizers")
        if template_meta.get(key)
    }
    metadata |= {"namespace": namespace_of(owner), "ownerReferences": [owner_reference(owner)]}
    return {"metadata": metadata, "spec": clone(template.get("spec") or {})}


def omit_empty(status: dict[str, Any], *fields: str) -> dict[str, Any]:
    """Drop zero-valued `omitempty` fields, so a status reads as the Go-encoded one does."""
    return {key: value for key, value in status.items() if key not in fields or value}
