"""Detach task (queue `detach`): the member-side step, owners orphan-deleted and markers set."""

from __future__ import annotations

from services.celery_app import app, task_name
from shared.progress import NamespaceRun
from shared.runtime import forward_run, runtime
from shared.steps import detach


@app.task(name=task_name("detach", "run"))
def run(policy: str, namespace: str, run_id: str, cluster: str, attempt: int) -> dict[str, int]:
    return detach.detach(runtime(), forward_run(NamespaceRun(policy, namespace, run_id, cluster, attempt)))
