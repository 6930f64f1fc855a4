"""The CronJob controller's bookkeeping: `status.active`, `lastSuccessfulTime`, history limits.

Jobs are not created on schedule here (nothing in promote waits for a schedule); a test or the seed
creates a Job owned by the CronJob, as the controller would. What the controller then does is emulated
(pkg/controller/cronjob `syncCronJob`): it lists the Jobs it controls, keeps the unfinished ones in
`status.active` (ObjectReferences), records `SawCompletedJob` and `lastSuccessfulTime` when one
finishes, forgets one that went missing, and deletes finished Jobs beyond `successfulJobsHistoryLimit`
and `failedJobsHistoryLimit`, oldest first. `suspend` only stops scheduling, so a suspended CronJob
keeps its status up to date just the same.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, cast

from kubesim.controllers.base import Controller
from kubesim.controllers.jobs import finished_condition
from kubesim.controllers.workloads import Key, key_of
from kubesim.objects import Obj, controller_ref, is_terminating, meta, name_of, namespace_of, uid_of
from kubesim.store import Store, WatchEvent


def _reference(job: Obj) -> dict[str, Any]:
    return {
        "kind": "Job",
        "namespace": namespace_of(job),
        "name": name_of(job),
        "uid": uid_of(job),
        "apiVersion": "batch/v1",
        "resourceVersion": meta(job).get("resourceVersion", ""),
    }


class CronJobController(Controller):
    """Tracks the Jobs a CronJob owns in its status and trims its finished history."""

    name = "cronjob-controller"
    watches = ("cronjobs.batch", "jobs.batch")
    live = ("cronjobs.batch",)

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.cronjobs = self.type("batch", "cronjobs")
        self.jobs = self.type("batch", "jobs")

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        if event.rt == self.cronjobs:
            return [key_of(event.obj)]
        keys = set()
        for job in (event.obj, event.old):
            ref = controller_ref(job) if job is not None else None
            if ref is not None and ref.get("kind") == self.cronjobs.kind:
                keys.add((namespace_of(job or {}), ref.get("name", "")))
        return keys

    def reconcile(self, key: Hashable) -> float | None:
        namespace, name = cast(Key, key)
        cronjob = self.store.get(self.cronjobs, namespace, name)
        if cronjob is None or is_terminating(cronjob):
            return None
        jobs = [
            job
            for job in self.store.iter(self.jobs, namespace)
            if (controller_ref(job) or {}).get("uid") == uid_of(cronjob)
        ]
        status = dict(cronjob.get("status") or {})
        was_active = {ref.get("uid"): ref for ref in status.get("active") or []}
        present = {uid_of(job) for job in jobs}
        for uid, ref in was_active.items():
            if uid not in present:
                self.record_event(
                    cronjob, "Normal", "MissingJob", f"Active job went missing: {ref.get('name')}"
                )
        active = []
        for job in jobs:
            outcome = finished_condition(job)
            if outcome is None:
                if not is_terminating(job):
                    active.append(_reference(job))
                continue
            if uid_of(job) in was_active:
                message = f"Saw completed job: {name_of(job)}, status: {outcome}"
                self.record_event(cronjob, "Normal", "SawCompletedJob", message)
            completed = (job.get("status") or {}).get("completionTime")
            if outcome == "Complete" and completed and completed > status.get("lastSuccessfulTime", ""):
                status["lastSuccessfulTime"] = completed
        status["active"] = sorted(active, key=lambda ref: ref["name"])
        if not status["active"]:
            del status["active"]
        self.store.write_status(self.cronjobs, cronjob, status)
        self._trim_history(cronjob, jobs)
        return None

    def _trim_history(self, cronjob: Obj, jobs: list[Obj]) -> None:
        """`cleanupFinishedJobs`: oldest finished Jobs beyond each limit go, with their pods."""
        spec = cronjob["spec"]
        for outcome, limit_field, default in (
            ("Complete", "successfulJobsHistoryLimit", 3),
            ("Failed", "failedJobsHistoryLimit", 1),
        ):
            finished = sorted(
                (job for job in jobs if finished_condition(job) == outcome and not is_terminating(job)),
                key=lambda job: (
                    (job.get("status") or {}).get("startTime") or meta(job).get("creationTimestamp", "")
                ),
            )
            limit = int(spec.get(limit_field, default))
            for job in finished[: max(len(finished) - limit, 0)]:
                self.store.delete(self.jobs, namespace_of(job), name_of(job), propagation="Background")
                self.record_event(cronjob, "Normal", "SuccessfulDelete", f"Deleted job {name_of(job)}")
