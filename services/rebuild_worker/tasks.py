"""Rebuild tasks (queue `rebuild`): plan the tiers and create the first small ones, create later small
tiers in one task and the batches of a large one in parallel tasks, verify adoption; the last one marks
the claim completed. A namespace whose tiers are all small is rebuilt and verified by `start` alone: a
task hop costs a small namespace more CPU than its creates (bench/promote.py)."""

from __future__ import annotations

from services.celery_app import app, failing_as, task_name
from services.pipeline import leading_tiers, rebuild_canvas
from shared.models import NamespacePhase
from shared.progress import NamespaceRun
from shared.runtime import forward_run, runtime
from shared.steps import rebuild, verify


@app.task(name=task_name("rebuild", "start"))
def start(policy: str, namespace: str, run_id: str, cluster: str, attempt: int) -> None:
    run = forward_run(NamespaceRun(policy, namespace, run_id, cluster, attempt))
    first, rest = leading_tiers(rebuild.plan(runtime(), run))
    if first:
        with failing_as("rebuild.tiers"):
            rebuild.run_tiers(runtime(), run, [tier.name for tier in first])
    if rest:
        rebuild_canvas(app, run, rest).apply_async()
    else:
        with failing_as("rebuild.verify"):
            _verify_and_complete(run)


@app.task(name=task_name("rebuild", "tiers"))
def tiers(policy: str, namespace: str, run_id: str, cluster: str, attempt: int, names: list[str]) -> int:
    run = forward_run(NamespaceRun(policy, namespace, run_id, cluster, attempt))
    return rebuild.run_tiers(runtime(), run, names)


@app.task(name=task_name("rebuild", "batch"), ignore_result=False)  # a chord header's: its body counts them
def batch(
    policy: str,
    namespace: str,
    run_id: str,
    cluster: str,
    attempt: int,
    group_resource: str,
    offset: int,
    limit: int,
) -> int:
    run = forward_run(NamespaceRun(policy, namespace, run_id, cluster, attempt))
    return rebuild.rebuild_batch(runtime(), run, rebuild.Batch(group_resource, offset, limit))


@app.task(name=task_name("rebuild", "tier_done"))
def tier_done(policy: str, namespace: str, run_id: str, cluster: str, attempt: int, tier: str) -> None:
    run = forward_run(NamespaceRun(policy, namespace, run_id, cluster, attempt))
    rebuild.tier_done(runtime(), run, tier)


@app.task(name=task_name("rebuild", "verify"))
def verify_namespace(policy: str, namespace: str, run_id: str, cluster: str, attempt: int) -> None:
    _verify_and_complete(forward_run(NamespaceRun(policy, namespace, run_id, cluster, attempt)))


def _verify_and_complete(run: NamespaceRun) -> None:
    verdict = verify.verify(runtime(), run)
    if not verdict.ok:
        raise RuntimeError("verification failed: " + "; ".join(verdict.problems[:10]))
    verify.complete(runtime(), run)
    runtime().progress(run).phase(
        run.namespace,
        NamespacePhase.COMPLETED,
        "done",
        "adopted by the control plane; every member pod kept its UID",
    )
