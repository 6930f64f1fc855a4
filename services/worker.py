"""`kpromote worker`: one Celery worker process consuming the given step queues.

Threads, not processes: every task waits on the Kubernetes API, and one process with N threads shares
one connection pool per cluster (research/celery.md §3.4).
"""

from __future__ import annotations

import os
import socket

from shared import logs, metrics
from shared.celery_app import QUEUES
from shared.settings import settings


def run(queues: list[str], concurrency: int, kubeconfig: str | None) -> None:
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        raise SystemExit(f"unknown queue(s) {', '.join(unknown)}; choose from {', '.join(QUEUES)}")
    if kubeconfig:
        os.environ["KPROMOTE_KUBECONFIG"] = kubeconfig
        settings.cache_clear()  # read again: importing the Celery app read it before the flag was known
    from shared.celery_app import app

    logs.configure("worker")
    metrics.instrument_worker()
    metrics.serve(settings().metrics_port)

    name = f"{'+'.join(queues)}-{os.getpid()}@{socket.gethostname()}"
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--concurrency",
            str(concurrency),
            "--pool",
            "threads",
            "--hostname",
            name,
            "--task-events",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
    )
