"""Worker processes survive a Redis restart: they reconnect and keep consuming, and none is replaced.

The installation is this module's own, on an embedded Redis the test restarts (same port, nothing
persisted), with two real worker processes. One namespace's detach holds a member request (a fault that
hangs), so when Redis goes away a worker is running a late-acknowledged task: the case that crashed a
worker for good (issue #10 item 5; see `services/worker.py`). The test then requires, of every worker
process started before the restart: still running, answering a ping, still running after the held task
has ended (its acknowledgement goes through the lost connection), and new work done: a policy applied
after the restart reaches Completed.

What the interrupted policy itself ends as is test_crash_safety.py's subject, not this one's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import redis
from kombu.exceptions import OperationalError

from kubesim import SimulatorThread
from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin, wait_until
from shared.embedded_redis import EmbeddedRedis
from tests.pipeline.conftest import Installation, start_installation

HANG_SECONDS = 15.0
"""How long the member holds the detach request: it outlasts the restart and the reconnect."""
HELD_TASK = "kosmos_promote.detach.run"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="module")
def restartable(
    simulator: SimulatorThread, redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    settings = {"KPROMOTE_STALL_TIMEOUT": "8", "KPROMOTE_VISIBILITY_TIMEOUT": "20"}
    with start_installation(
        simulator, redis_server.url, tmp_path_factory.mktemp("broker-restart"), extra_env=settings
    ) as installation:
        yield installation


def _pid(hostname: str) -> int:
    """Worker names are `<queues>-<pid>@<host>` (services/worker.py)."""
    return int(hostname.split("@")[0].rsplit("-", 1)[1])


def _active(installation: Installation) -> dict[str, list[dict]] | None:
    """Each worker's running tasks, or None while this process cannot reach Redis yet."""
    app = installation.celery()
    try:
        return app.control.inspect(timeout=1.0).active()
    except (redis.ConnectionError, OperationalError):
        return None
    finally:
        app.close()


def _answering(installation: Installation) -> set[int]:
    """The PIDs of the worker processes that answer a Celery ping."""
    app = installation.celery()
    try:
        replies = app.control.ping(timeout=1.0) or []
    except (redis.ConnectionError, OperationalError):  # this process's first call after the restart
        replies = []
    finally:
        app.close()
    return {_pid(name) for reply in replies for name in reply}


def _held_task(installation: Installation, namespace: str) -> str:
    """The id of the detach task of `namespace`, once a worker reports it running."""

    def running() -> str | None:
        for tasks in (_active(installation) or {}).values():
            for task in tasks:
                if task["type"] == HELD_TASK and task["kwargs"].get("namespace") == namespace:
                    return str(task["id"])
        return None

    return wait_until(running, timeout=20, interval=0.2, what=f"{HELD_TASK} of {namespace} to be running")


def _assert_all_alive_and_answering(
    installation: Installation, workers: list[subprocess.Popen[bytes]]
) -> None:
    exited = {p.pid: p.returncode for p in workers if p.poll() is not None}
    assert not exited, f"worker processes exited {exited}\n{installation.logs()}"
    pids = {p.pid for p in workers}
    try:
        wait_until(
            lambda: pids <= _answering(installation), timeout=30, interval=0.5, what="every worker's pong"
        )
    except AssertionError:
        raise AssertionError(
            f"{pids - _answering(installation)} do not answer\n{installation.logs()}"
        ) from None


def test_every_worker_survives_a_redis_restart_mid_task_and_keeps_working(
    restartable: Installation, redis_server: EmbeddedRedis
) -> None:
    held, later = "restart-held", "restart-later"
    for namespace in (held, later):
        seed_namespace(restartable.member_api, namespace, full=False)
    workers = list(restartable.workers)
    member = SimAdmin(restartable.member.url)
    fault = member.add_fault(
        verb="delete",
        resource="deployments.apps",
        namespace=held,
        status="timeout",
        timeout_seconds=HANG_SECONDS,
        times=1,
    )["id"]
    try:
        restartable.apply("before-restart", includedNamespaces=[held])
        member.wait_fired(fault, "the member to hold the detach request")
        task = _held_task(restartable, held)

        redis_server.restart()
        _assert_all_alive_and_answering(restartable, workers)

        # The held task ends on its own (the member drops the request): it acknowledges its message
        # through the connection that was lost, which must not take its worker down either.
        wait_until(
            lambda: (
                (active := _active(restartable)) is not None
                and all(t["id"] != task for tasks in active.values() for t in tasks)
            ),
            timeout=HANG_SECONDS + 30,
            interval=0.5,
            what=f"the held task {task} to end",
        )
        _assert_all_alive_and_answering(restartable, workers)

        restartable.apply("after-restart", includedNamespaces=[later])
        status = restartable.wait_done("after-restart", timeout=60)
    finally:
        member.clear_faults()
    assert status["phase"] == "Completed", status
    assert restartable.workers == workers, "no worker was added or replaced"
    _assert_all_alive_and_answering(restartable, workers)
    logs = "".join(p.read_text() for p in restartable.workdir.glob("worker-*.log"))
    assert "Unrecoverable error" not in logs, restartable.logs()
