"""Rollback tasks (queue `rollback`): compensation of a failed namespace and a user's rollback.

Both run the same idempotent routine (`shared.steps.rollback`); they differ only in what the status
says. A rollback that leaves differences is retried, then reported with what is left for a person.
"""

from __future__ import annotations

import time

from celery import Task
from celery.result import AsyncResult

from shared.celery_app import app, task_name
from shared.models import NamespacePhase
from shared.progress import NamespaceRun
from shared.runtime import runtime
from shared.steps import rollback, state

MAX_RETRIES = 2
ERROR_RECORD_WAIT = 5.0
RETRY_DELAY = 5.0


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


def _undo(task: Task, run: NamespaceRun, why: str, done_message: str) -> list[str]:
    rt = runtime()
    progress = rt.progress(run)
    backup = rt.backup(run)
    state.write(backup.root, state.ROLLING_BACK, reason=why)
    progress.phase(run.namespace, NamespacePhase.COMPENSATING, "rolling back", why)
    try:
        differences = rollback.rollback(rt, run).differences
    except Exception as error:  # retried, then reported like a difference: never stuck in Compensating
        differences = [
            f"the rollback stopped at {type(error).__name__}: {error}; the steps after it were not done"
        ]
    if differences:
        left = "; ".join(differences[:10])
        if task.request.retries < MAX_RETRIES:
            raise task.retry(
                countdown=RETRY_DELAY * (task.request.retries + 1),
                exc=RuntimeError(f"rollback left differences: {left}"),
            )
        progress.phase(
            run.namespace,
            NamespacePhase.FAILED_ROLLBACK,
            "needs a person",
            f"rollback could not restore everything after {MAX_RETRIES + 1} attempts; "
            f"left to fix by hand: {left}",
        )
        return differences
    state.write(backup.root, state.ROLLED_BACK, reason=why)
    progress.phase(run.namespace, NamespacePhase.ROLLED_BACK, "rolled back", done_message)
    return []


@app.task(name=task_name("rollback", "compensate"), bind=True, max_retries=MAX_RETRIES, base=Task)
def compensate(self: Task, failed_task_id: str, policy: str, namespace: str, run_id: str) -> list[str]:
    """A bound errback, so Celery routes it here as a real task; it may fire more than once."""
    run = NamespaceRun(policy, namespace, run_id)
    why = _error_text(failed_task_id, run)
    return _undo(self, run, why, f"rolled back after a failure: {why}")


@app.task(name=task_name("rollback", "namespace"), bind=True, max_retries=MAX_RETRIES, base=Task)
def rollback_namespace(self: Task, policy: str, namespace: str, run_id: str) -> list[str]:
    return _undo(
        self,
        NamespaceRun(policy, namespace, run_id),
        "rollback requested",
        "rolled back on request; the member is as it was before the promote",
    )
