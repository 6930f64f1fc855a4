"""Jobs and CronJobs.

A Job is never copied: a finished one has nothing left to do, and a running one would run again in the control
plane (a Job's selector also carries its member `controller-uid`, so the copy is refused anyway,
docs/control-plane-traps.md#duplicate-workloads). A CronJob moves: orphan-deleted in the member, so the Jobs
it already started keep running there, and the next runs are scheduled by the control plane.
"""

from __future__ import annotations

from shared.items import Obj
from shared.kinds.bases import OwnerRule
from shared.kinds.registry import RULES, Decision, KindRule, Move


def job_finished(job: Obj) -> bool:
    """Finished as the Job controller says: a completionTime, or a Complete/Failed condition that is True."""
    status = job.get("status") or {}
    if status.get("completionTime"):
        return True
    return any(
        condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True"
        for condition in status.get("conditions") or []
    )


@RULES.register
class JobRule(KindRule):
    """The same for Jobs started by a CronJob: the rule looks at the Job, not at its owner."""

    group_resources = ("jobs.batch",)

    def decide(self, obj: Obj) -> Decision:
        if job_finished(obj):
            return Decision(Move.SKIP, "finished Job, not moved")
        return Decision(Move.STAY, "a running Job stays in the member (a copy would re-run it)")


@RULES.register
class CronJobRule(OwnerRule):
    """Spec untouched: the job template is a template like any other
    (docs/control-plane-traps.md#template-changes)."""

    group_resources = ("cronjobs.batch",)
    owner_level = 2
    dependents = ("jobs.batch",)
