"""The object store: what etcd plus the generic registry of kube-apiserver do.

One global resourceVersion counter, metadata bookkeeping (uid, generation, timestamps), optimistic
concurrency, graceful deletion with finalizers, status subresources, and a bounded event history that
watches resume from. Stored objects are shared, never mutated in place: every write stores a new dict,
so readers (watches, controllers, responses) can hold them without copying.

Everything here runs on the simulator's event loop thread; there is no locking.
"""

from __future__ import annotations

import bisect
import builtins
import itertools
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from kubesim import errors
from kubesim.objects import Obj, clone, go_json, is_terminating, now_rfc3339
from kubesim.resources import ResourceRegistry, ResourceType

HISTORY_SIZE = 200_000
"""Watch events kept for resumption; a watch from an older resourceVersion gets 410 Gone."""
NAMESPACE_BEING_EMPTIED = (
    "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace "
    "will automatically be purged by the system."
)
"""kube-apiserver's 409 to deleting a namespace that is already terminating (its finalizers not done)."""

#: Types whose objects carry metadata.generation (those with a spec that controllers observe).
_NO_GENERATION = frozenset({"configmaps", "secrets", "events", "endpoints", "serviceaccounts", "pods"})


_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""apimachinery's rand.String alphabet, used for generateName suffixes."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    rt: ResourceType
    obj: Obj
    old: Obj | None
    rv: int


@dataclass
class AdmissionRequest:
    """What admission plugins see; they may mutate `obj` or raise an ApiError."""

    operation: str  # CREATE, UPDATE
    rt: ResourceType
    obj: Obj
    old: Obj | None
    subresource: str | None
    store: Store
    raw_data: bytes | None = None
    """ControllerRevision `data` exactly as it will be stored (the apiserver keeps the bytes sent)."""
    dry_run: bool = False
    """Nothing may be allocated or recorded for a dry run."""


Admission = Callable[[AdmissionRequest], None]
Subscriber = Callable[[WatchEvent], None]


MAX_STORED_BYTES = 1536 * 1024
"""etcd's default --max-request-bytes: it refuses to store a larger object."""


def _check_stored_size(rt: ResourceType, obj: Obj) -> None:
    """A custom resource is stored in etcd as the JSON it is, so its size there is this JSON's. Built-in
    types are stored as protobuf, smaller by a margin this simulator does not model: they are not checked
    (their own validation, e.g. a ConfigMap's 1 MiB of data, refuses them first in practice)."""
    if rt.custom and len(orjson.dumps(obj)) > MAX_STORED_BYTES:
        raise errors.etcd_request_too_large()


def _spec_part(obj: Obj) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    def __init__(self, registry: ResourceRegistry | None = None) -> None:
        self.registry = registry or ResourceRegistry.with_builtins()
        self._objects: dict[tuple[str, str], dict[str, dict[str, Obj]]] = {}
        self._rv = itertools.count(1)
        self.resource_version = 0
        self._history: deque[WatchEvent] = deque(maxlen=HISTORY_SIZE)
        self._subscribers: list[Subscriber] = []
        self.admission: list[Admission] = []
        self._uids: dict[str, tuple[ResourceType, str, str]] = {}
        self._sorted: dict[tuple[str, str, str], list[str]] = {}
        self.raw_data: dict[str, bytes] = {}
        """ControllerRevision uid -> the `data` bytes as sent, served back verbatim."""

    @property
    def namespaces(self) -> ResourceType:
        return self.type("", "v1", "namespaces")

    def type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.registry.lookup(group, version, plural)
        if rt is None:
            raise KeyError(f"{plural}.{group}/{version} is not served")
        return rt

    # ----------------------------------------------------------------- reading
    def _bucket(self, rt: ResourceType) -> dict[str, dict[str, Obj]]:
        return self._objects.setdefault((rt.group, rt.plural), {})

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        """The stored object, read-only (clone it before changing it)."""
        return self._bucket(rt).get(namespace if rt.namespaced else "", {}).get(name)

    def must_get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.get(rt, namespace, name)
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    def iter(
        self, rt: ResourceType, namespace: str | None = None, after: tuple[str, str] | None = None
    ) -> Iterator[Obj]:
        """Objects ordered by (namespace, name), as etcd's key order lists them; `after` resumes a page."""
        bucket = self._bucket(rt)
        namespaces = [namespace if rt.namespaced else ""] if namespace is not None else sorted(bucket)
        for ns in namespaces:
            if after is not None and ns < after[0]:
                continue
            items = bucket.get(ns, {})
            names = self._sorted_names(rt, ns, items)
            start = bisect.bisect_right(names, after[1]) if after is not None and ns == after[0] else 0
            for name in names[start:]:
                yield items[name]

    def _sorted_names(self, rt: ResourceType, namespace: str, items: dict[str, Obj]) -> list[str]:
        """Kept between writes that add or remove names, so paging a large namespace stays cheap."""
        key = (rt.group, rt.plural, namespace)
        names = self._sorted.get(key)
        if names is None:
            names = self._sorted[key] = sorted(items)
        return names

    def count_after(self, rt: ResourceType, namespace: str | None, after: tuple[str, str]) -> int:
        """How many objects a list resumed `after` would still return (a page's remainingItemCount)."""
        bucket = self._bucket(rt)
        namespaces = [namespace if rt.namespaced else ""] if namespace is not None else list(bucket)
        remaining = 0
        for ns in namespaces:
            items = bucket.get(ns, {})
            if ns > after[0]:
                remaining += len(items)
            elif ns == after[0]:
                remaining += len(items) - bisect.bisect_right(self._sorted_names(rt, ns, items), after[1])
        return remaining

    def list(self, rt: ResourceType, namespace: str | None = None) -> list[Obj]:
        return list(self.iter(rt, namespace))

    def count(self, rt: ResourceType) -> int:
        return sum(len(items) for items in self._bucket(rt).values())

    def by_uid(self, uid: str) -> tuple[ResourceType, Obj] | None:
        entry = self._uids.get(uid)
        if entry is None:
            return None
        rt, namespace, name = entry
        obj = self.get(rt, namespace, name)
        return (rt, obj) if obj is not None else None

    # ------------------------------------------------------------------ events
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def history_since(self, rv: int) -> builtins.list[WatchEvent]:
        """Events after `rv`; raises 410 when they have already been dropped from history."""
        if self._history and rv < self._history[0].rv - 1:
            raise errors.gone(f"too old resource version: {rv} ({self._history[0].rv - 1})")
        return [event for event in self._history if event.rv > rv]

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        for subscriber in list(self._subscribers):
            subscriber(event)

    def _next_rv(self) -> int:
        self.resource_version = next(self._rv)
        return self.resource_version

    # ----------------------------------------------------------------- writing
    def _admit(
        self,
        operation: str,
        rt: ResourceType,
        obj: Obj,
        old: Obj | None,
        sub: str | None,
        raw: bytes | None,
        dry_run: bool = False,
    ) -> None:
        request = AdmissionRequest(operation, rt, obj, old, sub, self, raw, dry_run)
        for plugin in self.admission:
            plugin(request)

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns_type = self.namespaces
        ns = self.get(ns_type, "", namespace)
        if ns is None:
            raise errors.not_found(ns_type, namespace)
        if is_terminating(ns):
            raise errors.forbidden(
                rt,
                name,
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def create(
        self,
        rt: ResourceType,
        body: Obj,
        *,
        namespace: str = "",
        dry_run: bool = False,
        raw_data: bytes | None = None,
    ) -> Obj:
        obj = clone(body)
        metadata = obj.setdefault("metadata", {})
        if rt.namespaced:
            namespace = namespace or metadata.get("namespace") or ""
            if metadata.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + "".join(random.choices(_NAME_ALPHABET, k=5))
        name = metadata.get("name") or ""
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        for field in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            metadata.pop(field, None)
        if rt.has_status:
            obj.pop("status", None)
        if rt.plural == "controllerrevisions" and raw_data is None:
            raw_data = go_json(obj.get("data"))
        if not name:
            raise errors.invalid(
                rt, "", [("metadata.name", "Required value: name or generateName is required")]
            )
        # Refusals that allocate nothing come first: kube-apiserver releases an allocated cluster IP when
        # the create fails later, which this store models by never allocating for a refused create.
        self._check_namespace(rt, namespace, name)
        if self.get(rt, namespace, name) is not None:
            raise errors.already_exists(rt, name)
        self._admit("CREATE", rt, obj, None, None, raw_data, dry_run)
        _check_stored_size(rt, obj)
        if dry_run:
            return obj
        rv = self._next_rv()
        metadata["uid"] = str(uuid.uuid4())
        metadata["resourceVersion"] = str(rv)
        metadata["creationTimestamp"] = now_rfc3339()
        if rt.plural not in _NO_GENERATION:
            metadata["generation"] = 1
        self._bucket(rt).setdefault(namespace if rt.namespaced else "", {})[name] = obj
        self._sorted.pop((rt.group, rt.plural, namespace if rt.namespaced else ""), None)
        self._uids[metadata["uid"]] = (rt, namespace if rt.namespaced else "", name)
        if raw_data is not None:
            self.raw_data[metadata["uid"]] = raw_data
        self._emit(WatchEvent("ADDED", rt, obj, None, rv))
        return obj

    def update(
        self,
        rt: ResourceType,
        body: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        raw_data: bytes | None = None,
    ) -> Obj:
        metadata = body.get("metadata") or {}
        namespace, name = metadata.get("namespace", "") if rt.namespaced else "", metadata.get("name", "")
        old = self.must_get(rt, namespace, name)
        sent_rv = metadata.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        if metadata.get("uid") and metadata["uid"] != old["metadata"]["uid"]:
            raise errors.conflict(
                rt,
                name,
                f"Precondition failed: UID in precondition: {metadata['uid']}, "
                f"UID in object meta: {old['metadata']['uid']}",
            )
        new = self._merge_for_update(rt, old, clone(body), subresource)
        if rt.plural == "controllerrevisions" and raw_data is None:
            raw_data = go_json(new.get("data"))
        self._admit("UPDATE", rt, new, old, subresource, raw_data)
        if new == old:
            return old
        _check_stored_size(rt, new)
        if dry_run:
            return new
        return self._replace(rt, old, new)

    def _merge_for_update(self, rt: ResourceType, old: Obj, new: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            status_only = clone(old)
            status_only["status"] = new.get("status") or {}
            return status_only
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        metadata = new.setdefault("metadata", {})
        for field in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ):
            if field in old["metadata"]:
                metadata[field] = old["metadata"][field]
            else:
                metadata.pop(field, None)
        metadata.pop("managedFields", None)
        if rt.has_status and subresource != "binding":  # a binding sets PodScheduled with nodeName
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if "generation" in old["metadata"] and _spec_part(new) != _spec_part(old):
            metadata["generation"] = old["metadata"]["generation"] + 1
        metadata["resourceVersion"] = old["metadata"]["resourceVersion"]
        return new

    def _replace(self, rt: ResourceType, old: Obj, new: Obj) -> Obj:
        metadata = new["metadata"]
        namespace, name = metadata.get("namespace", ""), metadata["name"]
        if self._ready_to_remove(rt, new):
            return self._remove(rt, old)
        rv = self._next_rv()
        metadata["resourceVersion"] = str(rv)
        self._bucket(rt).setdefault(namespace, {})[name] = new
        self._emit(WatchEvent("MODIFIED", rt, new, old, rv))
        return new

    @staticmethod
    def _ready_to_remove(rt: ResourceType, obj: Obj) -> bool:
        metadata = obj["metadata"]
        if not metadata.get("deletionTimestamp") or metadata.get("finalizers"):
            return False
        if rt.plural == "namespaces" and (obj.get("spec") or {}).get("finalizers"):
            return False
        return metadata.get("deletionGracePeriodSeconds") in (None, 0)

    def _remove(self, rt: ResourceType, current: Obj) -> Obj:
        metadata = current["metadata"]
        namespace, name = metadata.get("namespace", ""), metadata["name"]
        rv = self._next_rv()
        final = dict(current, metadata=dict(metadata, resourceVersion=str(rv)))
        del self._bucket(rt)[namespace][name]
        self._sorted.pop((rt.group, rt.plural, namespace), None)
        self._uids.pop(metadata.get("uid", ""), None)
        self.raw_data.pop(metadata.get("uid", ""), None)
        self._emit(WatchEvent("DELETED", rt, final, current, rv))
        return final

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        grace_seconds: int | None = None,
        precondition_uid: str | None = None,
        precondition_rv: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete or start deleting; returns (object, removed-now)."""
        current = self.must_get(rt, namespace, name)
        metadata = current["metadata"]
        if precondition_uid and precondition_uid != metadata["uid"]:
            raise errors.conflict(
                rt,
                name,
                f"Precondition failed: UID in precondition: {precondition_uid}, "
                f"UID in object meta: {metadata['uid']}",
            )
        if precondition_rv and precondition_rv != metadata["resourceVersion"]:
            raise errors.conflict(rt, name)
        terminating_namespace = rt.plural == "namespaces" and is_terminating(current)
        if terminating_namespace and (current.get("spec") or {}).get("finalizers"):
            raise errors.conflict(rt, name, NAMESPACE_BEING_EMPTIED)
        if dry_run:
            return current, False
        new = clone(current)
        new_meta = new["metadata"]
        finalizers = list(new_meta.get("finalizers") or [])
        wanted = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(propagation or "")
        if wanted and wanted not in finalizers and not is_terminating(current):
            finalizers.append(wanted)
        grace = self._grace_period(rt, current, grace_seconds)
        if rt.plural == "namespaces":
            new.setdefault("status", {})["phase"] = "Terminating"
            grace = 0
        pending = bool(finalizers) or grace > 0 or rt.plural == "namespaces"
        if not pending:
            return self._remove(rt, current), True
        if is_terminating(current):
            shortened = grace < (metadata.get("deletionGracePeriodSeconds") or 0)
            if not shortened and finalizers == (metadata.get("finalizers") or []):
                return current, False
        else:
            new_meta["deletionTimestamp"] = now_rfc3339(grace)
        new_meta["deletionGracePeriodSeconds"] = grace
        if finalizers:
            new_meta["finalizers"] = finalizers
        return self._replace(rt, current, new), False

    @staticmethod
    def _grace_period(rt: ResourceType, obj: Obj, requested: int | None) -> int:
        """Only pods bound to a node wait for a kubelet; there is none here, so they stay Terminating."""
        if rt.plural != "pods":
            return 0
        spec = obj.get("spec") or {}
        if not spec.get("nodeName") or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(requested, 0)
        return int(spec.get("terminationGracePeriodSeconds", 30))

    def finalize_namespace(self, name: str) -> None:
        """What the namespace controller does once a terminating namespace is empty."""
        ns_type = self.namespaces
        current = self.get(ns_type, "", name)
        if current is None:
            return
        new = clone(current)
        spec = new.setdefault("spec", {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != "kubernetes"]
        self._replace(ns_type, current, new)

    def write_status(self, rt: ResourceType, obj: Obj, status: dict[str, Any]) -> Obj:
        """Controllers' status writes; a no-op when nothing changed, as the real apiserver does."""
        current = self.get(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if current is None or current.get("status") == status:
            return current or obj
        new = dict(current, status=status)
        return self._replace(rt, current, new)
