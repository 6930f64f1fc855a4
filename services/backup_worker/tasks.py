"""Backup task (queue `backup`): list a namespace and seal its archive."""

from __future__ import annotations

from typing import Any

from services.celery_app import app, task_name
from shared.progress import NamespaceRun
from shared.runtime import forward_run, runtime
from shared.steps import backup


@app.task(name=task_name("backup", "run"))
def run(policy: str, namespace: str, run_id: str, cluster: str, attempt: int) -> dict[str, Any]:
    return backup.back_up(runtime(), forward_run(NamespaceRun(policy, namespace, run_id, cluster, attempt)))
