"""Backup tasks (queue `backup`): start a namespace, collect a few types, seal the archive."""

from __future__ import annotations

from typing import Any

from shared.celery_app import app, task_name
from shared.models import NamespacePhase
from shared.models.times import now_rfc3339
from shared.pipeline import backup_canvas
from shared.runtime import forward_run, runtime
from shared.steps import backup


@app.task(name=task_name("backup", "start"))
def start(policy: str, namespace: str, run_id: str) -> None:
    run = forward_run(policy, namespace, run_id)
    runtime().progress(run).set(
        namespace, phase=NamespacePhase.BACKING_UP.value, step="discover types", startTime=now_rfc3339()
    )
    types = backup.types_to_collect(runtime(), run)
    backup_canvas(app, run, types).apply_async()


@app.task(name=task_name("backup", "collect"))
def collect(policy: str, namespace: str, run_id: str, group_resources: list[str]) -> list[dict[str, Any]]:
    return backup.collect(runtime(), forward_run(policy, namespace, run_id), group_resources)


@app.task(name=task_name("backup", "seal"))
def seal(collected: list[list[dict[str, Any]]], policy: str, namespace: str, run_id: str) -> dict[str, Any]:
    return backup.seal(runtime(), forward_run(policy, namespace, run_id), collected)
