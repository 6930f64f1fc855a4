"""Rollback tasks (queue `rollback`): compensation of a failed namespace and a user's rollback.

Both run the same idempotent routine (`shared.steps.rollback`) once the namespace's claim says the run
is rolling back; they differ in how it comes to say so. A compensation sets it itself, unless it is
stale (an attempt that was superseded, or a run that has completed since); a user's rollback finds it
set by the watcher. A rollback that fails or leaves differences is retried with exponential backoff
for `KPROMOTE_ROLLBACK_RETRY_BUDGET` seconds (an API server restart must not strand a namespace half
way), then reported as FailedRollback with what is left for a person. Done, it releases the claim.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from celery import Task
from celery.result import AsyncResult

from services.celery_app import PromoteTask, app, task_name
from shared.backup import BackupTampered
from shared.claims import Claim, ClaimState, RunHalted, compensation_verdict, rollback_verdict
from shared.models import NamespacePhase
from shared.progress import NamespaceRun
from shared.runtime import runtime
from shared.steps import rollback

ERROR_RECORD_WAIT = 5.0
FIRST_RETRY_DELAY = 2.0
MAX_RETRY_DELAY = 60.0
log = logging.getLogger(__name__)


def _error_text(failed_task_id: str, run: NamespaceRun) -> str:
    """The failing step's own record first (a chord's errback only sees the chord). Celery publishes the
    errback before the failing task's on_failure has run, so give that record a moment to appear."""
    progress = runtime().progress(run)
    deadline = time.monotonic() + ERROR_RECORD_WAIT
    while (recorded := progress.error(run.namespace)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if recorded:
        return recorded
    if not failed_task_id:
        return "the pipeline stopped making progress"
    error = AsyncResult(failed_task_id, app=app).result
    return f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)


def retry_delay(retries: int) -> float:
    """2, 4, 8 … seconds, at most a minute apart."""
    return min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2**retries)


def _undo(
    task: Task, run: NamespaceRun, begin: Callable[[], None], why: str, done_message: str, since: float
) -> list[str]:
    """`begin` (the claim's move to rolling back, which decides whether this message may act at all),
    then the rollback; anything that fails, the claim's API included, is retried within the budget."""
    rt = runtime()
    progress = rt.progress(run)
    try:
        begin()
        progress.rollback_started(run.namespace)
        progress.phase(run.namespace, NamespacePhase.COMPENSATING, "rolling back", why)
        report = rollback.rollback(rt, run, progress)
        differences = report.differences
        if not differences:
            _release(run)
    except RunHalted:
        raise
    except BackupTampered as error:  # retrying cannot help, and nothing may be done from it
        progress.phase(run.namespace, NamespacePhase.FAILED_ROLLBACK, "needs a person", str(error))
        return [str(error)]
    except Exception as error:  # retried, then reported like a difference: never stuck in Compensating
        report = rollback.RollbackReport()
        differences = [
            f"the rollback stopped at {type(error).__name__}: {error}; the steps after it were not done"
        ]
    if differences:
        left = "; ".join(differences[:10])
        if time.time() - since < rt.settings.rollback_retry_budget:
            log.warning("rollback of %s left differences, retrying: %s", run.namespace, left)
            raise task.retry(
                countdown=retry_delay(task.request.retries),
                kwargs={**task.request.kwargs, "since": since},
                exc=RuntimeError(f"rollback left differences: {left}"),
            )
        progress.phase(
            run.namespace,
            NamespacePhase.FAILED_ROLLBACK,
            "needs a person",
            f"rollback could not restore everything within {rt.settings.rollback_retry_budget:.0f}s "
            f"({task.request.retries + 1} attempts); left to fix by hand: {left}",
        )
        return differences
    notes = f"; kept in the control plane: {', '.join(report.kept)}" if report.kept else ""
    if report.namespace_terminating:
        notes += (
            f'; the control-plane namespace "{report.namespace_terminating}" is being removed by its '
            f"namespace controller"
        )
    progress.phase(run.namespace, NamespacePhase.ROLLED_BACK, "rolled back", done_message + notes)
    return []


def _release(run: NamespaceRun) -> None:
    """The namespace is back: its claim goes, and another run may take it. Should this worker die before
    it records RolledBack, the watchdog finds the claim gone and records it."""
    runtime().claims.release_run(run.cluster, run.namespace, run.run_id)


def _halt_unless(run: NamespaceRun, verdict: str | None) -> None:
    if verdict is not None:
        raise RunHalted(run, verdict)


@app.task(name=task_name("rollback", "compensate"), bind=True, base=PromoteTask, max_retries=None)
def compensate(
    self: Task,
    failed_task_id: str,
    policy: str,
    namespace: str,
    run_id: str,
    cluster: str,
    attempt: int,
    since: float = 0.0,
) -> list[str]:
    """A bound errback, so Celery routes it here as a real task; it may fire more than once, and late."""
    run = NamespaceRun(policy, namespace, run_id, cluster, attempt)

    def rolling_back(claim: Claim | None) -> Claim | None:
        _halt_unless(run, compensation_verdict(claim, run_id, attempt))
        assert claim is not None
        return replace(claim, state=ClaimState.ROLLING_BACK)

    def begin() -> None:
        runtime().claims.change(cluster, namespace, rolling_back)

    why = _error_text(failed_task_id, run)
    return _undo(self, run, begin, why, f"rolled back after a failure: {why}", since or time.time())


@app.task(name=task_name("rollback", "namespace"), bind=True, base=PromoteTask, max_retries=None)
def rollback_namespace(
    self: Task, policy: str, namespace: str, run_id: str, cluster: str, attempt: int, since: float = 0.0
) -> list[str]:
    run = NamespaceRun(policy, namespace, run_id, cluster, attempt)

    def begin() -> None:
        _halt_unless(run, rollback_verdict(runtime().claims.get(cluster, namespace), run_id))

    return _undo(
        self,
        run,
        begin,
        "rollback requested",
        "rolled back on request; the member is as it was before the promote",
        since or time.time(),
    )
