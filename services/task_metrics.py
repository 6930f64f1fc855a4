"""The worker's Celery task signals, turned into the metrics `shared.metrics` defines: task durations,
tasks in progress, failures, compensation outcomes, and each step's end-to-end duration (`StepClock`).

Here rather than in `shared/`, which knows nothing of Celery: only a worker process has task signals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
from celery import Task
from celery.signals import task_failure, task_postrun, task_prerun

from shared.metrics import (
    COMPENSATE,
    COMPENSATION_OUTCOMES,
    COMPENSATIONS,
    FAILURES,
    OUTCOMES,
    PREFIX,
    STEP_DURATION,
    STEP_ENDED_BY,
    STEP_STARTED_BY,
    STEPS,
    STEPS_STARTED,
    TASK_DURATION,
    TASKS,
    TASKS_IN_PROGRESS,
    StepClock,
)

log = logging.getLogger(__name__)
_started: dict[str, float] = {}
_clock: list[Callable[[], StepClock]] = []


def _default_clock() -> StepClock:
    from shared.runtime import runtime

    return StepClock(runtime().redis)


def instrument_worker(client: redis.Redis | None = None) -> None:
    """Connect the task signals; called once by the worker process before it consumes (`client`: the
    Redis of the step clock, by default the broker's). Every task's and step's series start at zero."""
    _clock[:] = [(lambda: StepClock(client)) if client is not None else _default_clock]
    for task in TASKS:
        TASK_DURATION.labels(task)
        TASKS_IN_PROGRESS.labels(task)
        FAILURES.labels(task)
    for step in STEPS:
        STEPS_STARTED.labels(step)
        for outcome in OUTCOMES:
            STEP_DURATION.labels(step, outcome)
    for outcome in COMPENSATION_OUTCOMES:
        COMPENSATIONS.labels(outcome)
    task_prerun.connect(_prerun)
    task_postrun.connect(_postrun)
    task_failure.connect(_failure)


def _name(task: Task) -> str:
    return str(task.name).removeprefix(PREFIX)


def _ours(task: Task | None) -> bool:
    return task is not None and str(task.name or "").startswith(PREFIX)


def _step_of(task: str) -> str:
    """The step a task belongs to: its queue, except on the rollback queue, where each task is one."""
    queue, _, name = task.partition(".")
    return (
        {"compensate": "compensate", "namespace": "rollback"}.get(name, queue)
        if queue == "rollback"
        else queue
    )


def _clocked(kwargs: Mapping[str, Any] | None, act: Callable[[StepClock, str, str, str], object]) -> None:
    """`act(clock, policy, run_id, namespace)` for a task of ours; a Redis problem costs the metric, never
    the task (a warning says so)."""
    kwargs = kwargs or {}
    if not _clock or not all(isinstance(kwargs.get(k), str) for k in ("policy", "run_id", "namespace")):
        return
    try:
        act(_clock[0](), kwargs["policy"], kwargs["run_id"], kwargs["namespace"])
    except Exception as error:  # metrics must never fail a migration
        log.warning("step duration not recorded: %s: %s", type(error).__name__, error)


def _prerun(task_id: str, task: Task, kwargs: Mapping[str, Any] | None = None, **_: Any) -> None:
    if not _ours(task):
        return
    name = _name(task)
    _started[task_id] = time.monotonic()
    TASKS_IN_PROGRESS.labels(name).inc()
    step = STEP_STARTED_BY.get(name)
    if step is not None:
        _clocked(kwargs, lambda clock, policy, run, ns: clock.start(policy, run, ns, step))


def _postrun(
    task_id: str,
    task: Task,
    retval: Any = None,
    state: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    **_: Any,
) -> None:
    if not _ours(task):
        return
    name = _name(task)
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(name).observe(time.monotonic() - started)
        TASKS_IN_PROGRESS.labels(name).dec()
    if task.name == COMPENSATE:
        by_state = {"SUCCESS": "failed_rollback" if retval else "rolled_back", "RETRY": "retry"}
        COMPENSATIONS.labels(by_state.get(state or "", "error")).inc()
    step = STEP_ENDED_BY.get(name)
    if step is not None and state == "SUCCESS":
        # A rollback that returns what it could not restore has ended, as FailedRollback.
        outcome = "failed" if step in ("compensate", "rollback") and retval else "succeeded"
        _clocked(kwargs, lambda clock, policy, run, ns: clock.end(policy, run, ns, step, outcome))


def _failure(sender: Task, kwargs: Mapping[str, Any] | None = None, **_: Any) -> None:
    if not _ours(sender):
        return
    name = _name(sender)
    FAILURES.labels(name).inc()
    step = _step_of(name)
    _clocked(kwargs, lambda clock, policy, run, ns: clock.end(policy, run, ns, step, "failed"))
