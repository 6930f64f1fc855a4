"""The controller machinery of kube-controller-manager, reduced to what the simulator needs.

A controller names the types it watches, maps each store event to the keys it must reconcile, and
reconciles one key at a time against the store. The manager runs every controller on the simulator's
event loop: keys are de-duplicated in a queue and drained in the next loop iterations, so, as in a
real cluster, a controller acts shortly *after* the write that woke it, never inside it.

Controllers read through a `StoreView`: with an informer lag set on the cluster, the types a controller
does not declare `live` reach it late and look as they were (kubesim/informers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from kubesim.errors import ApiError
from kubesim.informers import Informers, StoreView
from kubesim.objects import Obj, name_of, namespace_of, now_rfc3339, uid_of
from kubesim.resources import ResourceType
from kubesim.store import Store, WatchEvent
from kubesim.versions import GIT_VERSION

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0


class Controller:
    """Subclasses set `name` and `watches` and implement `keys_for` and `reconcile`."""

    name: ClassVar[str]
    watches: ClassVar[tuple[str, ...]]
    """`resource.group` strings (`pods`, `replicasets.apps`) whose events wake this controller;
    `("*",)` means every type, custom resources included (the garbage collector needs that)."""

    live: ClassVar[tuple[str, ...]] = ("*",)
    """Types this controller sees as they are, events and reads, whatever the informer lag; the others
    reach it through the informers' delay line. Real controllers that list through the API (the
    namespace deleter) or live in the apiserver keep `*`."""

    def wants(self, rt: ResourceType) -> bool:
        return "*" in self.watches or rt.group_resource in self.watches

    def sees_live(self, rt: ResourceType) -> bool:
        return "*" in self.live or rt.group_resource in self.live

    def __init__(self, store: Store) -> None:
        self.store = StoreView(store)
        """Replaced by the manager's view once the controller is added to it."""
        self.git_version = GIT_VERSION
        """The Kubernetes version the controller manager plays (kubesim/versions.py)."""

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        raise NotImplementedError

    def reconcile(self, key: Hashable) -> float | None:
        """Bring `key` to its desired state; return seconds after which to look again, or None."""
        raise NotImplementedError

    # Helpers every controller needs -------------------------------------------------------------
    def type(self, group: str, plural: str, version: str = "v1") -> ResourceType:
        return self.store.type(group, version, plural)

    def record_event(self, involved: Obj, event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event, as controllers emit them; tests read them to see what a controller did."""
        events = self.type("", "events")
        namespace = namespace_of(involved) or "default"
        # The recorder posts through the API, not from the informer caches: a namespace the lagging
        # caches do not show yet still takes the Event (only a namespace that is really gone refuses it).
        if self.store.live_store.get(self.store.namespaces, "", namespace) is None:
            return
        now = now_rfc3339()
        body = {
            "metadata": {"generateName": f"{name_of(involved)}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": name_of(involved),
                "namespace": namespace_of(involved),
                "uid": uid_of(involved),
            },
            "type": event_type,
            "reason": reason,
            "message": message,
            "source": {"component": self.name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.name,
        }
        try:
            self.store.create(events, body, namespace=namespace)
        except ApiError:
            log.debug("event %s for %s dropped", reason, name_of(involved))


@dataclass
class ControllerManager:
    store: Store
    informers: Informers
    controllers: list[Controller] = field(default_factory=list)
    _queue: dict[tuple[int, Hashable], None] = field(default_factory=dict)
    _wake: asyncio.Event | None = None
    _failures: dict[tuple[int, Hashable], int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def add(self, controller: Controller) -> None:
        controller.store = StoreView(self.store, self.informers, controller.live)
        self.controllers.append(controller)

    def start(self) -> None:
        self._wake = asyncio.Event()
        self.store.subscribe(self._on_event)
        self.informers.start(self._on_informed)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="controller-manager")
        for index, controller in enumerate(self.controllers):
            for rt in list(self.store.registry):
                if controller.wants(rt):
                    for obj in self.store.iter(rt):
                        self._enqueue_event(index, controller, WatchEvent("ADDED", rt, obj, None, 0))

    async def stop(self) -> None:
        self.informers.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_event(self, event: WatchEvent) -> None:
        """Without lag every controller hears of a write at once; with it, only those that see its type
        live, and the others when the informers deliver it."""
        if self.informers.in_step():
            for index, controller in enumerate(self.controllers):
                if controller.wants(event.rt):
                    self._enqueue_event(index, controller, event)
            return
        for index, controller in enumerate(self.controllers):
            if controller.wants(event.rt) and controller.sees_live(event.rt):
                self._enqueue_event(index, controller, event)
        self.informers.publish(event)

    def _on_informed(self, event: WatchEvent) -> None:
        for index, controller in enumerate(self.controllers):
            if controller.wants(event.rt) and not controller.sees_live(event.rt):
                self._enqueue_event(index, controller, event)

    def _enqueue_event(self, index: int, controller: Controller, event: WatchEvent) -> None:
        for key in controller.keys_for(event):
            self.enqueue(index, key)

    def enqueue(self, index: int, key: Hashable) -> None:
        self._queue[(index, key)] = None
        if self._wake is not None:
            self._wake.set()

    def _requeue_later(self, index: int, key: Hashable, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.enqueue, index, key)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = list(self._queue)
                self._queue.clear()
                for index, key in batch:
                    self._reconcile(index, key)
                await asyncio.sleep(0)

    def _reconcile(self, index: int, key: Hashable) -> None:
        controller = self.controllers[index]
        try:
            again = controller.reconcile(key)
        except ApiError as error:
            failures = self._failures.get((index, key), 0) + 1
            self._failures[(index, key)] = failures
            log.debug("%s: %s: %s", controller.name, key, error.message)
            self._requeue_later(index, key, min(0.005 * 2**failures, MAX_BACKOFF))
            return
        except Exception:
            log.exception("%s crashed on %s", controller.name, key)
            self._requeue_later(index, key, MAX_BACKOFF)
            return
        self._failures.pop((index, key), None)
        if again is not None:
            self._requeue_later(index, key, again)

    def idle(self) -> bool:
        return not self._queue and not self.informers.pending
