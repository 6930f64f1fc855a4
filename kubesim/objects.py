"""Small helpers over raw Kubernetes object dicts, shared by the store, admission and controllers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import orjson

Obj = dict[str, Any]


def clone(obj: Any) -> Any:
    """A deep copy; stored objects are shared and must never be mutated in place."""
    return orjson.loads(orjson.dumps(obj))


def now_rfc3339(offset_seconds: float = 0) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def name_of(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("name", "")


def namespace_of(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("namespace", "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("uid", "")


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("labels") or {}


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("annotations") or {}


def owner_refs(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(meta(obj).get("ownerReferences") or [])


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in owner_refs(obj):
        if ref.get("controller"):
            return ref
    return None


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> Obj:
    """The reference a built-in controller stamps on what it creates or adopts."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def go_json(value: Any) -> bytes:
    """Bytes as Go's encoding/json writes a map[string]interface{}: compact, sorted keys, HTML-safe.

    The StatefulSet controller compares ControllerRevision data byte for byte, so this is the one
    encoding a revision must have to be adopted.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode()


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """Counted by ReplicaSet/StatefulSet controllers: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_terminating(pod)
