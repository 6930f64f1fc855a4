"""Rollback tasks (queue `rollback`): what happens when a namespace's pipeline fails."""

from __future__ import annotations

from celery import Task
from celery.result import AsyncResult

from shared.celery_app import app, task_name
from shared.models import NamespacePhase
from shared.progress import NamespaceRun
from shared.runtime import runtime


@app.task(name=task_name("rollback", "namespace_failed"), bind=True)
def namespace_failed(self: Task, failed_task_id: str, policy: str, namespace: str, run_id: str) -> None:
    """Bound, so Celery routes it here as a real task; it may fire more than once, and records once."""
    error = AsyncResult(failed_task_id, app=app).result
    message = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    run = NamespaceRun(policy, namespace, run_id)
    runtime().progress(run).phase(namespace, NamespacePhase.FAILED, "failed", message)
