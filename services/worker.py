"""`kpromote worker`: one Celery worker process consuming the given step queues.

Threads, not processes: every task waits on the Kubernetes API, and one process with N threads shares
one connection pool per cluster (research/celery.md §3.4).
"""

from __future__ import annotations

import os
import socket

from shared.celery_app import QUEUES


def run(queues: list[str], concurrency: int, kubeconfig: str | None) -> None:
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        raise SystemExit(f"unknown queue(s) {', '.join(unknown)}; choose from {', '.join(QUEUES)}")
    if kubeconfig:
        os.environ["KPROMOTE_KUBECONFIG"] = kubeconfig
    from shared.celery_app import app

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
