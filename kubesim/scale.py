"""The `scale` subresource of Deployments, ReplicaSets and StatefulSets, as `kubectl scale` and the
HorizontalPodAutoscaler use it: an autoscaling/v1 `Scale` showing the parent's replicas and selector,
whose writes change the parent's `spec.replicas` and nothing else (a new generation, as any spec change).

Not emulated: the scale subresource of custom resources (`subresources.scale` in a CRD).
"""

from __future__ import annotations

from typing import Any

from kubesim import errors
from kubesim.objects import Obj, clone
from kubesim.resources import ResourceType
from kubesim.selectors import label_selector_string

SCALABLE = frozenset({("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets")})
SCALE_GROUP, SCALE_VERSION, SCALE_KIND = "autoscaling", "v1", "Scale"


def scalable(rt: ResourceType) -> bool:
    return (rt.group, rt.plural) in SCALABLE


def scale_of(obj: Obj) -> dict[str, Any]:
    metadata = obj["metadata"]
    return {
        "kind": SCALE_KIND,
        "apiVersion": f"{SCALE_GROUP}/{SCALE_VERSION}",
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in metadata
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": label_selector_string((obj.get("spec") or {}).get("selector")),
        },
    }


def scaled(obj: Obj, scale: Any) -> Obj:
    """`obj` with the replicas `scale` asks for; its resourceVersion, if it names one, is a precondition
    (409 Conflict when stale, as on any update)."""
    name = obj["metadata"]["name"]
    replicas = ((scale or {}).get("spec") or {}).get("replicas") if isinstance(scale, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        shown = errors.shown(replicas)
        raise errors.invalid_kind(
            f"{SCALE_KIND}.{SCALE_GROUP}",
            name,
            [("spec.replicas", f"Invalid value: {shown}: must be greater than or equal to 0")],
            SCALE_GROUP,
            details_kind=SCALE_KIND,
        )
    updated = clone(obj)
    updated["spec"]["replicas"] = replicas
    version = (scale.get("metadata") or {}).get("resourceVersion")
    if version:
        updated["metadata"]["resourceVersion"] = version
    return updated
