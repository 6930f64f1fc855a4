"""Prometheus metrics of the workers and the watcher, each process serving its own `/metrics`.

Counters are fed where the facts already are, so nothing here decides anything about a migration:
objects by `Progress.count` (once per unit of work, since Celery delivers at least once), Kubernetes
requests and retries by the `Kube` client, step durations, failures and compensation outcomes by
Celery's task signals, and namespaces by phase by the watcher from the policy status it wrote.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from celery import Task
from celery.signals import task_failure, task_postrun, task_prerun
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from shared.models import NamespacePhase

PREFIX = "kosmos_promote."
COMPENSATE = f"{PREFIX}rollback.compensate"
STEP_OF_COUNT = {"backedUp": "backup", "detached": "detach", "rebuilt": "rebuild"}
"""`Progress.count` kinds -> the `step` label, named like the queues."""

OBJECTS = Counter(
    "kpromote_objects_total", "Objects handled, counted once per unit of work.", ["step", "resource"]
)
STEP_DURATION = Histogram(
    "kpromote_step_duration_seconds",
    "Run time of one task, by step (`<queue>.<task>`), whatever its outcome.",
    ["step"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
NAMESPACES = Gauge("kpromote_namespaces", "Namespaces of existing policies, by phase.", ["phase"])
FAILURES = Counter("kpromote_failures_total", "Tasks that failed, by step (`<queue>.<task>`).", ["step"])
COMPENSATIONS = Counter(
    "kpromote_compensations_total",
    "Compensations of failed namespaces: rolled_back, failed_rollback (left for a person), retry, error.",
    ["outcome"],
)
API_REQUESTS = Counter(
    "kpromote_api_requests_total",
    "Kubernetes API answers, by cluster, HTTP verb and code.",
    ["cluster", "verb", "code"],
)
API_RETRIES = Counter("kpromote_api_retries_total", "Kubernetes API requests repeated.", ["cluster"])

log = logging.getLogger(__name__)
_BATCH_OFFSET = re.compile(r"\[\d+\]$")
_started: dict[str, float] = {}
_policies: dict[str, list[str]] = {}
_policies_lock = threading.Lock()


def serve(port: int) -> bool:
    """Serve `/metrics` on all interfaces (Prometheus scrapes pods), in a daemon thread; 0 disables.

    A port already taken (two workers on one host network) costs the endpoint, not the process: the
    work matters more than its metrics, so this logs a warning and returns False."""
    if not port:
        return False
    try:
        start_http_server(port)
    except OSError as error:
        log.warning(
            "metrics port %d is not available (%s): running on without /metrics; set "
            "KPROMOTE_METRICS_PORT / KPROMOTE_WATCHER_METRICS_PORT to a free port (0 disables it)",
            port,
            error.strerror or error,
        )
        return False
    return True


def count_objects(kind: str, unit: str, value: int) -> None:
    """A unit recorded for the first time by `Progress.count`.

    Units name the resource, decorated by the step: `related <type>` for cluster objects a backup
    pulled in, `<type>[<offset>]` for a rebuild batch; the label is the bare resource.
    """
    resource = _BATCH_OFFSET.sub("", unit.removeprefix("related "))
    OBJECTS.labels(STEP_OF_COUNT.get(kind, kind), resource).inc(value)


def observe_policy(type: str | None, name: str, status: Mapping[str, Any], **_: Any) -> None:
    """kopf event handler of the watcher: every PromotePolicy event carries the status as written, so
    the gauge follows the status (including the watcher's own patches) without polling anything."""
    with _policies_lock:
        if type == "DELETED":
            _policies.pop(name, None)
        else:
            _policies[name] = [ns.get("phase") or "Pending" for ns in status.get("namespaces") or ()]
        tally = Tally(phase for phases in _policies.values() for phase in phases)
        for phase in NamespacePhase:
            NAMESPACES.labels(phase.value).set(tally.get(phase.value, 0))


def instrument_worker() -> None:
    """Connect the task signals; called once by the worker process before it consumes."""
    task_prerun.connect(_prerun)
    task_postrun.connect(_postrun)
    task_failure.connect(_failure)


def _step(task: Task) -> str:
    return task.name.removeprefix(PREFIX)


def _prerun(task_id: str, **_: Any) -> None:
    _started[task_id] = time.monotonic()


def _postrun(task_id: str, task: Task, retval: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        STEP_DURATION.labels(_step(task)).observe(time.monotonic() - started)
    if task.name == COMPENSATE:
        outcome = {"SUCCESS": "failed_rollback" if retval else "rolled_back", "RETRY": "retry"}
        COMPENSATIONS.labels(outcome.get(state or "", "error")).inc()


def _failure(sender: Task, **_: Any) -> None:
    FAILURES.labels(_step(sender)).inc()
