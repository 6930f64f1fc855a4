"""How the steps of one namespace are sequenced on Celery: a chain, with chords where rebuild fans out.

    backup.run ─▶ detach.run ─▶ rebuild.start
    rebuild.start (first small tiers) ─▶ chord(batches of a large tier) ─▶ tier_done ─▶ tiers(…) ─▶ verify

The canvas stays flat (one chord level at a time): the fan-out of the rebuild is only known once the
backup is sealed (how many objects each tier holds), so `rebuild.start` builds that part and publishes
it. Not with `Task.replace`: it raises an exception whose traceback Celery copies frame by frame,
measured at 15 % of a worker's CPU on small namespaces (bench/promote.py --profile). `rebuild.start`
creates the leading small tiers (a namespace, its accounts…) itself rather than publishing a
`rebuild.tiers` task for them: one task hop less for every namespace, and for a small one that is all
its tiers, so it verifies too (`rebuild.verify` is the canvas's last task only when there is a canvas).
Signatures are made by task name, so this module needs no worker code; every task carries references
only, as keyword arguments (policy, namespace, run, cluster, attempt), which is also what Flower shows,
under a shadow name that says which step of which policy/namespace a message is (`shadow_name`).
"""

from __future__ import annotations

from celery import Celery, chain, chord, group
from celery.canvas import Signature

from services.celery_app import task_name
from shared.progress import NamespaceRun
from shared.steps.rebuild import TierPlan, stages


def shadow_name(queue: str, step: str, run: NamespaceRun, **extra: object) -> str:
    """What Flower's Name column and the worker's "received/succeeded" lines call a message: its step, the
    policy/namespace it works for, then what part of the step it is (`rebuild.batch promote-shop/shop-1
    pods[0:250]`). Celery's `shadow` changes that displayed name only: the message keeps its task name,
    which routes it to its queue and picks the registered task."""
    name = f"{queue}.{step} {run.policy}/{run.namespace}"
    offset, limit, names = extra.get("offset"), extra.get("limit"), extra.get("names")
    if isinstance(offset, int) and isinstance(limit, int):
        name += f" {extra.get('group_resource')}[{offset}:{offset + limit}]"
    elif "tier" in extra:
        name += f" {extra['tier']}"
    elif isinstance(names, list):
        name += " " + ",".join(map(str, names))
    if run.attempt > 1:
        name += f" (attempt {run.attempt})"
    return name


def _sig(app: Celery, queue: str, step: str, run: NamespaceRun, **extra: object) -> Signature:
    return app.signature(
        task_name(queue, step),
        kwargs={**run.message(), **extra},
        immutable=True,
        shadow=shadow_name(queue, step, run, **extra),
    )


def on_failure(app: Celery, run: NamespaceRun) -> Signature:
    """Compensation of this namespace only: a bound errback, so it runs on the rollback queue as a real
    task (an unbound multi-argument errback would run inline on the failing worker); Celery passes the
    failed task's id as its first argument."""
    return app.signature(
        task_name("rollback", "compensate"),
        kwargs=run.message(),
        shadow=shadow_name("rollback", "compensate", run),
    )


def compensate_namespace(app: Celery, run: NamespaceRun) -> None:
    """The compensation of a stalled run (no failed task to name)."""
    _sig(app, "rollback", "compensate", run, failed_task_id="").apply_async()


def rollback_namespace(app: Celery, run: NamespaceRun) -> None:
    """A rollback its claim already records as requested (rolling back)."""
    _sig(app, "rollback", "namespace", run).apply_async()


def start_namespace(app: Celery, run: NamespaceRun) -> None:
    namespace_canvas(app, run).apply_async()


def namespace_canvas(app: Celery, run: NamespaceRun) -> Signature:
    canvas = chain(
        _sig(app, "backup", "run", run), _sig(app, "detach", "run", run), _sig(app, "rebuild", "start", run)
    )
    canvas.link_error(on_failure(app, run))
    return canvas


def leading_tiers(tiers: list[TierPlan]) -> tuple[list[TierPlan], list[TierPlan]]:
    """The first stage when it is one of small tiers (which `rebuild.start` creates itself), and the
    tiers left for the canvas."""
    grouped = stages(tiers)
    if grouped and not grouped[0][0].fans_out:
        return grouped[0], tiers[len(grouped[0]) :]
    return [], tiers


def rebuild_canvas(app: Celery, run: NamespaceRun, tiers: list[TierPlan]) -> Signature:
    steps: list[Signature] = []
    for stage in stages(tiers):
        if stage[0].fans_out:
            header = group(
                _sig(
                    app,
                    "rebuild",
                    "batch",
                    run,
                    group_resource=b.group_resource,
                    offset=b.offset,
                    limit=b.limit,
                )
                for b in stage[0].batches
            )
            steps.append(chord(header, _sig(app, "rebuild", "tier_done", run, tier=stage[0].name)))
        else:
            steps.append(_sig(app, "rebuild", "tiers", run, names=[tier.name for tier in stage]))
    steps.append(_sig(app, "rebuild", "verify", run))
    # The compensation on every step, and on a chord's body: a failing batch fails the body (ChordError),
    # which calls it, as Celery links a chord's errback by default. Not through `chain.link_error`, which
    # reaches `chord.link_error`: under that default it warns (CPendingDeprecationWarning about
    # task_allow_error_cb_on_chord_header) once per chord of every rebuild, into the worker's log.
    errback = on_failure(app, run)
    for step in steps:
        (step.body if isinstance(step, chord) else step).link_error(errback)
    return chain(*steps)
