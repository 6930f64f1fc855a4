"""`kpromote worker`: one Celery worker process consuming the given step queues.

Threads, not processes: every task waits on the Kubernetes API, and one process with N threads shares
one connection pool per cluster (docs/celery.md#pools). A broker restart is survived: see
`survive_broker_restarts`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from typing import TextIO

import celery

from services import task_logs, task_metrics
from shared import logs, metrics
from shared.backup import BackupDir, working_copy
from shared.backup.store import is_remote, store_from_settings
from shared.settings import (
    ConfigurationError,
    Settings,
    check_kubeconfig,
    control_plane_kubeconfig,
    settings,
    startup_settings,
)

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.1
"""How long a worker's progress writes wait to be sent together (the watcher reads every half second)."""


def survive_broker_restarts() -> None:
    """Make a lost Redis connection a connection error again, so the consumer reconnects instead of dying.

    Celery 5.7's consumer handles a lost broker by `collect()`ing the connection, which detaches kombu's
    transport from it, and then `close()`ing it (celery/celery#10242). The Redis channel's close inside
    `collect()` fails on the dead socket, so the second close restores the channel's unacknowledged
    messages (a late-acknowledged task running now has one) through a new connection pool built from the
    detached transport: `AttributeError: 'NoneType' object has no attribute 'hostname'` (the failure of
    celery/kombu#582, still in kombu 5.7.0). `ignore_errors` lets only connection errors through, so the
    worker stops ("Unrecoverable error"). A task that ends after the reconnect acknowledges through the
    same old channel and fails the same way. No setting avoids it: the unacknowledged messages are those
    of `task_acks_late`, and `worker_cancel_long_running_tasks_on_connection_loss` runs after the close.

    Raising redis' ConnectionError there instead is what both callers already handle: the close is
    ignored and the consumer reconnects; the late acknowledgement is logged ("Couldn't ack") and the
    message, if Redis still holds it, comes back after the visibility timeout like any message of a lost
    connection. Remove this once kombu's Redis channel survives a close after `collect()`.
    """
    import redis
    from kombu.transport import redis as kombu_redis

    connparams = kombu_redis.Channel._connparams
    if getattr(connparams, "survives_broker_restart", False):
        return

    def _connparams(channel: kombu_redis.Channel, asynchronous: bool = False) -> dict[str, object]:
        if channel.connection.client is None:
            raise redis.ConnectionError("this channel's broker connection was lost and released")
        return connparams(channel, asynchronous=asynchronous)

    _connparams.survives_broker_restart = True  # type: ignore[attr-defined]
    # Replacing a method of kombu's class is the point of this workaround (see above).
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]


def say_in_json() -> None:
    """Celery's few words outside logging ("worker: Warm shutdown (MainProcess)", said from its signal
    handlers straight to a file descriptor, where logging's locks could deadlock) as JSON lines too:
    formatted without a lock, written the same way."""
    from celery.apps import worker as celery_worker

    formatter = logs.JsonLines("worker")
    shown = logging.getLogger().isEnabledFor(logging.INFO)  # decided now: no lock in a signal handler

    def say(message: str, f: TextIO | None = sys.__stderr__) -> None:
        if not shown or f is None:  # no stderr at all (pythonw, a closed descriptor): nowhere to say it
            return
        fields = {"name": "celery.apps.worker", "levelno": logging.INFO, "levelname": "INFO"}
        record = logging.makeLogRecord({**fields, "msg": message.strip()})
        # As Celery's own: losing the line must not abort a shutdown.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.write(f.fileno(), (formatter.format(record) + "\n").encode())

    celery_worker.safe_say = say


SWEEP_INTERVAL_MAX = 300.0
"""The longest a working copy outlives its idle time (seconds)."""


def sweep_working_copies(current: Settings) -> threading.Thread:
    """Every so often, remove this worker's working copies of backups kept in S3 that no task has used for
    KPROMOTE_BACKUP_CACHE_IDLE seconds, so that they do not fill its disk (shared/backup/working_copy.py)."""
    root = BackupDir.working_copies(store_from_settings(current), current.backup_cache_dir)
    idle = current.backup_cache_idle

    def keep_sweeping() -> None:
        while True:
            time.sleep(min(idle / 2, SWEEP_INTERVAL_MAX))
            try:
                removed = working_copy.sweep(root, idle)
            except Exception:  # a sweeper that died would let the disk fill up again, unseen
                log.exception("could not sweep the working copies of backups in %s; trying again later", root)
                continue
            if removed:
                log.info("removed %d working copies idle for %gs from %s", len(removed), idle, root)

    sweeper = threading.Thread(target=keep_sweeping, name="working-copy-sweeper", daemon=True)
    sweeper.start()
    return sweeper


def run(queues: list[str], concurrency: int, kubeconfig: str | None) -> None:
    """Consume until SIGTERM; `ConfigurationError` before anything starts when the configuration is bad."""
    if kubeconfig:
        os.environ["KPROMOTE_KUBECONFIG"] = kubeconfig
        settings.cache_clear()
    current = startup_settings()  # before the Celery app, which reads the settings when imported
    from services.celery_app import QUEUES, app

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
    task_logs.install()
    # Each run's own log beside its backup, for `kpromote logs` (every write, retry and skip of the run).
    logs.install_run_log(current.backup_dir, "worker")
    task_metrics.instrument_worker()
    metrics.serve(current.metrics_port)
    survive_broker_restarts()
    from shared.runtime import runtime

    runtime().progress_writes.send_behind(PROGRESS_INTERVAL)
    if is_remote(current.backup_location):
        sweep_working_copies(current)

    name = f"{'+'.join(queues)}-{os.getpid()}@{socket.gethostname()}"
    # Celery prints its ASCII banner (configuration, queues, tasks) to stdout, outside logging: on a
    # terminal it helps, in JSON logs it is a dozen unparsable lines, so one JSON line says the same.
    quiet = logs.current_format() == "json"
    if quiet:
        say_in_json()
        log.info(
            "worker %s consuming %s with %d threads (Celery %s)",
            name,
            ",".join(queues),
            concurrency,
            celery.__version__,
        )
    app.worker_main(
        [
            *(["--quiet"] if quiet else []),
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
            current.log_level,
            "--without-mingle",
            "--without-gossip",
        ]
    )
