"""What the controllers of pods' owners (ReplicaSet, Job, DaemonSet) share: Go's `RealPodControl`
(pkg/controller/controller_utils.go), how they create and delete their pods with the owner's Events and
its expectations kept right, and the event handlers that wake an owner for its own events and its pods'."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import cast

from kubesim.controllers.base import Controller
from kubesim.controllers.expectations import Expectations
from kubesim.controllers.workloads import Key, key_of, owner_keys
from kubesim.errors import ApiError
from kubesim.objects import Obj, name_of, namespace_of
from kubesim.store import Store, WatchEvent


class PodControl:
    def __init__(self, controller: Controller, expectations: Expectations) -> None:
        self.controller = controller
        self.expectations = expectations
        self.pods = controller.type("", "pods")

    def create(self, owner: Obj, body: Obj) -> Obj:
        """Create `body` in the owner's namespace. Admission may refuse (403 until the namespace's `default`
        ServiceAccount exists): the error propagates so the manager retries with backoff, as the real
        controller's rate-limited queue does, and the owner gets a FailedCreate Event."""
        try:
            pod = self.controller.store.create(self.pods, body, namespace=namespace_of(owner))
        except ApiError as error:
            self.controller.record_event(owner, "Warning", "FailedCreate", f"Error creating: {error.message}")
            raise
        self.controller.record_event(owner, "Normal", "SuccessfulCreate", f"Created pod: {name_of(pod)}")
        return pod

    def delete(self, owner: Obj, pod: Obj) -> None:
        """A pod already gone (a stale cache) is fine, as in Go's `manageReplicas`; a delete that failed will
        never be seen, so the owner stops expecting it at once."""
        try:
            self.controller.store.delete(self.pods, namespace_of(pod), name_of(pod))
        except ApiError as error:
            self.expectations.deletion_observed(key_of(owner), f"{namespace_of(pod)}/{name_of(pod)}")
            if error.code != 404:
                raise
            return
        self.controller.record_event(owner, "Normal", "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")


class PodOwnerController(Controller):
    """A controller whose owners (`group`, `plural`) create pods: `self.owners`, `self.pods`, the
    expectations of its own writes and the PodControl that keeps them."""

    def __init__(self, store: Store, group: str, plural: str) -> None:
        super().__init__(store)
        self.owners = self.type(group, plural)
        self.pods = self.type("", "pods")
        self.expectations = Expectations()
        self.pod_control = PodControl(self, self.expectations)

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        """An owner's own event wakes it; a pod's counts down its owner's expectations first; any other
        dependent's (a DaemonSet's ControllerRevision) wakes the owner that controls it."""
        if event.rt == self.owners:
            return [key_of(event.obj)]
        if event.rt == self.pods:
            self.expectations.observe_pod(event, self.owners.kind)
        return owner_keys(self.store, event, self.owners)

    def owner(self, key: Hashable) -> Obj | None:
        """The owner at `key`, or None once it is gone (its expectations forgotten with it)."""
        namespace, name = cast(Key, key)
        owner = self.store.get(self.owners, namespace, name)
        if owner is None:
            self.expectations.forget(key)
        return owner
