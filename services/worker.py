"""`kpromote worker`: one Celery worker process consuming the given step queues.

Threads, not processes: every task waits on the Kubernetes API, and one process with N threads shares
one connection pool per cluster (research/celery.md §3.4).
"""

from __future__ import annotations

import os
import socket

from shared import logs, metrics
from shared.settings import (
    ConfigurationError,
    check_kubeconfig,
    control_plane_kubeconfig,
    settings,
    startup_settings,
)


def run(queues: list[str], concurrency: int, kubeconfig: str | None) -> None:
    """Consume until SIGTERM; `ConfigurationError` before anything starts when the configuration is bad."""
    if kubeconfig:
        os.environ["KPROMOTE_KUBECONFIG"] = kubeconfig
        settings.cache_clear()
    current = startup_settings()  # before the Celery app, which reads the settings when imported
    from shared.celery_app import QUEUES, app

    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise ConfigurationError(
            f"unknown queue(s) {', '.join(unknown) or '(none given)'}: --queues takes a comma-separated "
            f"list of {', '.join(QUEUES)}"
        )
    if current.kubeconfig:
        # A file named by --kubeconfig or KPROMOTE_KUBECONFIG must be there now; the ~/.kube/config default
        # is read when the first task needs the cluster, as before.
        check_kubeconfig(control_plane_kubeconfig(current))

    logs.configure("worker")
    metrics.instrument_worker()
    metrics.serve(current.metrics_port)

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
