"""Informer lag: controllers see the store as it was a moment ago, not as it is.

kube-controller-manager's controllers read from informer caches fed by watch streams, and under load
those streams fall behind by hundreds of milliseconds. A ReplicaSet created right after its pods may then
not see them, create pods of its own and delete the surplus once the originals show up (issue #10,
item 8). The simulator models that with one delay line per cluster: every store event reaches the lagged
controllers `lag` seconds after the write, in the order of the writes, and until it does, their reads
show the object as it was before that write (or not at all). Writes always go to the real store, so a
controller acting on a stale copy meets the same 409s and AlreadyExists a real one does.

Which types a controller reads through the delay line is its own choice (`Controller.live`): the
workload controllers see the kind they reconcile at once and its dependents late, the worst case in which
the owner's informer has caught up and the dependents' has not, which is what makes the race reproducible.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection, Iterator
from typing import Any

from kubesim.objects import Obj, name_of, namespace_of, uid_of
from kubesim.resources import ResourceRegistry, ResourceType
from kubesim.store import Store, WatchEvent

ObjectKey = tuple[str, str, str, str]
"""(group, plural, namespace, name) of one stored object."""

Deliver = Callable[[WatchEvent], None]


def _key(rt: ResourceType, namespace: str, name: str) -> ObjectKey:
    return rt.group, rt.plural, namespace if rt.namespaced else "", name


class Informers:
    """The delay line between the store and the lagged controllers, and the stale state it implies.

    With no lag and nothing in flight, events pass straight through and reads go to the store, so a
    cluster without lag behaves exactly as one without this class.
    """

    def __init__(self, store: Store, lag: float = 0.0) -> None:
        self.store = store
        self._lag = max(lag, 0.0)
        self._deliver: Deliver | None = None
        self._pending: deque[tuple[float, WatchEvent]] = deque()
        self._stale: dict[ObjectKey, tuple[Obj | None, int]] = {}
        """Objects with undelivered events -> (what the controllers still see, events in flight)."""
        self._stale_names: dict[tuple[str, str], set[tuple[str, str]]] = {}
        """(group, plural) -> (namespace, name) of its stale objects, for listing."""
        self._stale_uids: dict[str, tuple[ResourceType, ObjectKey]] = {}
        """uid -> type and key of each stale object still visible, including ones deleted since."""
        self._timer: asyncio.TimerHandle | None = None

    @property
    def lag(self) -> float:
        return self._lag

    @property
    def pending(self) -> int:
        return len(self._pending)

    def set_lag(self, seconds: float) -> None:
        """A new lag applies to later writes; setting 0 delivers everything in flight at once."""
        self._lag = max(seconds, 0.0)
        if not self._lag:
            self._release(until=None)

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def in_step(self) -> bool:
        """True when the lagged controllers are up to date and every new event reaches them at once."""
        return not self._lag and not self._pending

    def publish(self, event: WatchEvent) -> None:
        """Hand a store event to the lagged controllers, now or `lag` seconds from now."""
        if self.in_step():
            self._send(event)
            return
        self._hide(event)
        loop = asyncio.get_running_loop()
        self._pending.append((loop.time() + self._lag, event))
        self._schedule(loop)

    # ----------------------------------------------------------------------------- the delay line
    def _send(self, event: WatchEvent) -> None:
        if self._deliver is not None:
            self._deliver(event)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._pending:
            self._timer = loop.call_at(self._pending[0][0], self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        self._release(until=loop.time())
        self._schedule(loop)

    def _release(self, until: float | None) -> None:
        """Deliver, in write order, every event due by `until` (all of them for None)."""
        while self._pending and (until is None or self._pending[0][0] <= until):
            _, event = self._pending.popleft()
            self._reveal(event)
            self._send(event)

    def _hide(self, event: WatchEvent) -> None:
        key = _key(event.rt, namespace_of(event.obj), name_of(event.obj))
        seen, in_flight = self._stale.get(key, (event.old, 0))
        self._stale[key] = (seen, in_flight + 1)
        self._stale_names.setdefault(key[:2], set()).add(key[2:])
        if seen is not None:
            self._stale_uids[uid_of(seen)] = (event.rt, key)

    def _reveal(self, event: WatchEvent) -> None:
        key = _key(event.rt, namespace_of(event.obj), name_of(event.obj))
        seen, in_flight = self._stale[key]
        if seen is not None:
            self._stale_uids.pop(uid_of(seen), None)
        if in_flight > 1:
            now_seen = None if event.type == "DELETED" else event.obj
            self._stale[key] = (now_seen, in_flight - 1)
            if now_seen is not None:
                self._stale_uids[uid_of(now_seen)] = (event.rt, key)
            return
        del self._stale[key]
        names = self._stale_names[key[:2]]
        names.discard(key[2:])
        if not names:
            del self._stale_names[key[:2]]

    # ----------------------------------------------------------------------------------- reading
    def lags(self, rt: ResourceType) -> bool:
        """Whether any object of this type currently looks different to the lagged controllers."""
        return (rt.group, rt.plural) in self._stale_names

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        entry = self._stale.get(_key(rt, namespace, name))
        return self.store.get(rt, namespace, name) if entry is None else entry[0]

    def iter(self, rt: ResourceType, namespace: str | None = None) -> Iterator[Obj]:
        """Objects in (namespace, name) order, as the stale state holds them."""
        names = self._stale_names.get((rt.group, rt.plural))
        if not names:
            yield from self.store.iter(rt, namespace)
            return
        wanted = None if namespace is None else (namespace if rt.namespaced else "")
        merged = {(namespace_of(obj), name_of(obj)): obj for obj in self.store.iter(rt, namespace)}
        for ns, name in names:
            if wanted is not None and ns != wanted:
                continue
            seen = self._stale[(rt.group, rt.plural, ns, name)][0]
            if seen is None:
                merged.pop((ns, name), None)
            else:
                merged[(ns, name)] = seen
        for position in sorted(merged):
            yield merged[position]

    def by_uid(self, uid: str) -> tuple[ResourceType, Obj] | None:
        found = self.store.by_uid(uid)
        if found is not None:
            rt, obj = found
            seen = self.get(rt, namespace_of(obj), name_of(obj))
            return (rt, seen) if seen is not None and uid_of(seen) == uid else None
        stale = self._stale_uids.get(uid)
        if stale is None:
            return None
        rt, key = stale
        seen = self._stale[key][0]
        return (rt, seen) if seen is not None else None

    def describe(self) -> dict[str, Any]:
        return {"seconds": self._lag, "pending_events": len(self._pending)}


class StoreView:
    """The store as one controller sees it: the types in `live` as they are, the others through the
    informers' delay line. Writes, and reads a real controller makes through the API rather than its
    caches, go to `live_store`."""

    def __init__(
        self, store: Store, informers: Informers | None = None, live: Collection[str] = ("*",)
    ) -> None:
        self.live_store = store
        self.informers = informers
        self._all_live = "*" in live
        self._live = frozenset(live)

    def _lagged(self, rt: ResourceType) -> Informers | None:
        informers = self.informers
        if informers is None or self._all_live or rt.group_resource in self._live:
            return None
        return informers if informers.lags(rt) else None

    # reads -------------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        informers = self._lagged(rt)
        if informers is None:
            return self.live_store.get(rt, namespace, name)
        return informers.get(rt, namespace, name)

    def iter(self, rt: ResourceType, namespace: str | None = None) -> Iterator[Obj]:
        informers = self._lagged(rt)
        return self.live_store.iter(rt, namespace) if informers is None else informers.iter(rt, namespace)

    def list(self, rt: ResourceType, namespace: str | None = None) -> list[Obj]:
        return list(self.iter(rt, namespace))

    def count(self, rt: ResourceType) -> int:
        return self.live_store.count(rt) if self._lagged(rt) is None else sum(1 for _ in self.iter(rt))

    def by_uid(self, uid: str) -> tuple[ResourceType, Obj] | None:
        found = self.live_store.by_uid(uid)
        if self.informers is None or self._all_live or (found is not None and self._lagged(found[0]) is None):
            return found
        return self.informers.by_uid(uid)

    # the store's own --------------------------------------------------------------------------
    @property
    def registry(self) -> ResourceRegistry:
        return self.live_store.registry

    @property
    def raw_data(self) -> dict[str, bytes]:
        return self.live_store.raw_data

    @property
    def namespaces(self) -> ResourceType:
        return self.live_store.namespaces

    def type(self, group: str, version: str, plural: str) -> ResourceType:
        return self.live_store.type(group, version, plural)

    # writes ------------------------------------------------------------------------------------
    def create(
        self, rt: ResourceType, body: Obj, *, namespace: str = "", raw_data: bytes | None = None
    ) -> Obj:
        return self.live_store.create(rt, body, namespace=namespace, raw_data=raw_data)

    def update(self, rt: ResourceType, body: Obj) -> Obj:
        return self.live_store.update(rt, body)

    def delete(self, rt: ResourceType, namespace: str, name: str, **options: Any) -> tuple[Obj, bool]:
        return self.live_store.delete(rt, namespace, name, **options)

    def write_status(self, rt: ResourceType, obj: Obj, status: dict[str, Any]) -> Obj:
        return self.live_store.write_status(rt, obj, status)

    def finalize_namespace(self, name: str) -> None:
        self.live_store.finalize_namespace(name)
