"""The Job controller: run a Job's pods until enough succeed, then mark it Complete.

What promote meets: a running Job's pods carry the `batch.kubernetes.io/job-tracking` finalizer and
labels with the Job's uid (admission put them in the template), so a copied Job or pod cannot be adopted
in another cluster; a finished Job has `status.succeeded`, `completionTime` and a `Complete` condition
and its pods no longer carry the finalizer. There is no kubelet: a test reports a pod Succeeded or
Failed through its status, and the controller counts it.

The logic follows pkg/controller/job for NonIndexed Jobs: pods are claimed by the generated selector,
terminal pods are counted once (their tracking finalizer removed, Go's `uncountedTerminatedPods` done in
one step), `min(parallelism, completions - succeeded)` pods are kept active, `suspend` deletes the
active pods and resets `startTime`, `backoffLimit` failures fail the Job. Not emulated: Indexed
completion, pod failure policies, activeDeadlineSeconds, backoff delays between retries, TTL.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, cast

from kubesim.controllers.pod_control import PodOwnerController
from kubesim.controllers.workloads import Key, claim, key_of, pod_from_template, selector_of
from kubesim.errors import ApiError
from kubesim.objects import (
    Obj,
    clone,
    controller_ref,
    is_pod_ready,
    is_terminating,
    labels_of,
    meta,
    name_of,
    namespace_of,
    now_rfc3339,
)
from kubesim.store import Store

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
TERMINAL = ("Succeeded", "Failed")


def _phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "")


def finished_condition(job: Mapping[str, Any]) -> str | None:
    """`Complete` or `Failed` when the Job has finished, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def _condition(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    now = now_rfc3339()
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }
    if reason:
        condition |= {"reason": reason, "message": message}
    return condition


def _set_condition(conditions: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Replace the condition of the same type, keeping its transition time when its status is unchanged."""
    old = next((c for c in conditions if c.get("type") == new["type"]), None)
    if old is not None and old.get("status") == new["status"]:
        new = new | {"lastTransitionTime": old.get("lastTransitionTime")}
    return [c for c in conditions if c.get("type") != new["type"]] + [new]


class JobController(PodOwnerController):
    """Creates a Job's pods, counts finished ones, completes, fails or suspends the Job."""

    name = "job-controller"
    watches = ("jobs.batch", "pods")
    live = ("jobs.batch",)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "batch", "jobs")
        self.jobs = self.owners

    def reconcile(self, key: Hashable) -> float | None:
        namespace, name = cast(Key, key)
        job = self.owner(key)
        candidates = self.store.list(self.pods, namespace)
        if job is None or is_terminating(job) or finished_condition(job):
            self._release_orphans(name, candidates)
            return None
        selector = selector_of(job)
        pods = claim(self.store, self.pods, job, candidates, lambda pod: selector.matches(labels_of(pod)))
        self._sync(job, pods)
        return None

    def _release_orphans(self, job_name: str, pods: list[Obj]) -> None:
        """A finished, deleted or orphaning Job no longer holds its pods' tracking finalizers, so
        they can go (the Job's default propagation orphans them)."""
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None or (ref.get("kind") == self.jobs.kind and ref.get("name") == job_name):
                self._remove_finalizer(pod)

    def _sync(self, job: Obj, pods: list[Obj]) -> None:
        spec, status = job["spec"], clone(job.get("status") or {})
        active = [pod for pod in pods if _phase(pod) not in TERMINAL and not is_terminating(pod)]
        uncounted = [
            pod for pod in pods if _phase(pod) in TERMINAL and TRACKING_FINALIZER in _finalizers(pod)
        ]
        for pod in uncounted:
            self._remove_finalizer(pod)
        succeeded = int(status.get("succeeded") or 0) + sum(_phase(p) == "Succeeded" for p in uncounted)
        failed = int(status.get("failed") or 0) + sum(_phase(p) == "Failed" for p in uncounted)
        conditions = list(status.get("conditions") or [])
        completions = spec.get("completions")
        if spec.get("suspend"):
            self._delete_pods(job, active)
            active = []
            if not _is_suspended(conditions):
                conditions = _set_condition(
                    conditions, _condition("Suspended", "True", "JobSuspended", "Job suspended")
                )
                self.record_event(job, "Normal", "Suspended", "Job suspended")
            status.pop("startTime", None)
        else:
            if _is_suspended(conditions):
                conditions = _set_condition(
                    conditions, _condition("Suspended", "False", "JobResumed", "Job resumed")
                )
                self.record_event(job, "Normal", "Resumed", "Job resumed")
            status.setdefault("startTime", now_rfc3339())
            if completions is not None and succeeded >= int(completions):
                self._delete_pods(job, active)
                active = []
                conditions = _set_condition(conditions, _condition("Complete", "True"))
                status["completionTime"] = now_rfc3339()
                self.record_event(job, "Normal", "Completed", "Job completed")
            elif failed > int(spec.get("backoffLimit", 6)):
                self._delete_pods(job, active)
                active = []
                message = "Job has reached the specified backoff limit"
                conditions = _set_condition(
                    conditions, _condition("Failed", "True", "BackoffLimitExceeded", message)
                )
                self.record_event(job, "Warning", "BackoffLimitExceeded", message)
            elif self.expectations.satisfied(key_of(job)):
                active = self._manage(job, active, succeeded)
        terminating = sum(is_terminating(pod) and _phase(pod) not in TERMINAL for pod in pods)
        status |= {
            "active": len(active),
            "ready": sum(is_pod_ready(pod) for pod in active),
            "succeeded": succeeded,
            "failed": failed,
            "terminating": terminating,
            "uncountedTerminatedPods": {},
            "conditions": conditions,
        }
        status = {
            k: v for k, v in status.items() if v or k in ("ready", "terminating", "uncountedTerminatedPods")
        }
        self.store.write_status(self.jobs, job, status)

    def _manage(self, job: Obj, active: list[Obj], succeeded: int) -> list[Obj]:
        """Keep `min(parallelism, completions - succeeded)` pods active; extras go newest first."""
        spec = job["spec"]
        wanted = int(spec.get("parallelism", 1))
        if spec.get("completions") is not None:
            wanted = min(wanted, int(spec["completions"]) - succeeded)
        elif succeeded:
            wanted = 0
        missing = wanted - len(active)
        extras = sorted(active, key=lambda pod: meta(pod).get("creationTimestamp", ""), reverse=True)
        extras = extras[: max(-missing, 0)]
        self.expectations.expect(
            key_of(job), adds=max(missing, 0), deletes=[f"{namespace_of(p)}/{name_of(p)}" for p in extras]
        )
        created = []
        for done in range(max(missing, 0)):
            try:
                created.append(self._create_pod(job))
            except ApiError:
                self.expectations.creation_observed(key_of(job), missing - done)
                raise
        self._delete_pods(job, extras)
        return [pod for pod in active if pod not in extras] + created

    def _create_pod(self, job: Obj) -> Obj:
        body = pod_from_template(job, job["spec"]["template"])
        body["metadata"]["generateName"] = f"{name_of(job)}-"
        body["metadata"]["finalizers"] = [*body["metadata"].get("finalizers", []), TRACKING_FINALIZER]
        return self.pod_control.create(job, body)

    def _delete_pods(self, job: Obj, pods: list[Obj]) -> None:
        for pod in pods:
            self.pod_control.delete(job, pod)

    def _remove_finalizer(self, pod: Obj) -> None:
        if TRACKING_FINALIZER not in _finalizers(pod):
            return
        updated = clone(pod)
        remaining = [f for f in _finalizers(pod) if f != TRACKING_FINALIZER]
        if remaining:
            updated["metadata"]["finalizers"] = remaining
        else:
            updated["metadata"].pop("finalizers", None)
        self.store.update(self.pods, updated)


def _finalizers(obj: Mapping[str, Any]) -> list[str]:
    return list(meta(obj).get("finalizers") or [])


def _is_suspended(conditions: list[dict[str, Any]]) -> bool:
    return any(c.get("type") == "Suspended" and c.get("status") == "True" for c in conditions)
