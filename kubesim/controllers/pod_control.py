"""Go's `RealPodControl` (pkg/controller/controller_utils.go): how the ReplicaSet, Job and DaemonSet
controllers create and delete their pods, with the owner's Events and its expectations kept right."""

from __future__ import annotations

from kubesim.controllers.base import Controller
from kubesim.controllers.expectations import Expectations
from kubesim.controllers.workloads import key_of
from kubesim.errors import ApiError
from kubesim.objects import Obj, name_of, namespace_of


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
