"""Rebuild tasks (queue `rebuild`): plan the tiers, create small tiers in one task and the batches of a
large one in parallel tasks, verify adoption."""

from __future__ import annotations

from shared.celery_app import app, task_name
from shared.models import NamespacePhase
from shared.pipeline import rebuild_canvas
from shared.runtime import forward_run, runtime
from shared.steps import rebuild, verify


@app.task(name=task_name("rebuild", "start"))
def start(policy: str, namespace: str, run_id: str) -> None:
    run = forward_run(policy, namespace, run_id)
    rebuild_canvas(app, run, rebuild.plan(runtime(), run)).apply_async()


@app.task(name=task_name("rebuild", "tiers"))
def tiers(policy: str, namespace: str, run_id: str, names: list[str]) -> int:
    return rebuild.run_tiers(runtime(), forward_run(policy, namespace, run_id), names)


@app.task(name=task_name("rebuild", "batch"))
def batch(
    policy: str, namespace: str, run_id: str, tier: int, group_resource: str, offset: int, limit: int
) -> int:
    run = forward_run(policy, namespace, run_id)
    return rebuild.rebuild_batch(runtime(), run, rebuild.Batch(tier, group_resource, offset, limit))


@app.task(name=task_name("rebuild", "tier_done"))
def tier_done(policy: str, namespace: str, run_id: str, tier: str) -> None:
    rebuild.tier_done(runtime(), forward_run(policy, namespace, run_id), tier)


@app.task(name=task_name("rebuild", "verify"))
def verify_namespace(policy: str, namespace: str, run_id: str) -> list[str]:
    run = forward_run(policy, namespace, run_id)
    verdict = verify.verify(runtime(), run)
    if not verdict.ok:
        raise RuntimeError("verification failed: " + "; ".join(verdict.problems[:10]))
    runtime().progress(run).phase(
        namespace,
        NamespacePhase.COMPLETED,
        "done",
        "adopted by the control plane; every member pod kept its UID",
    )
    return verdict.problems
