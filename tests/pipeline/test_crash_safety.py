"""Crashes mid-run: a worker SIGKILLed in detach or in rebuild, and Redis restarted with everything in it.

Each test holds one request of one namespace in the simulated API server (a fault that hangs), so the
crash lands exactly in the step under test: the test waits until that request is hanging, then kills the
worker that is waiting on it, or restarts Redis. The installation is this module's own, on an embedded
Redis that can be restarted, with a watchdog stall timeout of 8 s.

What is deterministic: the step the crash interrupts, and what must hold afterwards (every namespace
ends Completed or RolledBack, no member pod deleted or re-created, the member consistent with that end
state, the watchdog having resumed the interrupted namespace).

What is not, and why:
- Which other tasks die with the killed worker. Two workers of eight threads share the queues, so
  whether the sibling namespace had a task on the killed process depends on Celery's scheduling; the
  sibling is either untouched or resumed like the first, and the assertions hold either way.
- Which end state a namespace reaches. A resumed run normally completes, but every step is re-run, and
  if resumes keep stalling the watchdog compensates after KPROMOTE_MAX_RESUMES; both are correct ends.
- Whether the killed task's own message comes back. With late acknowledgement a SIGKILLed worker's
  message stays in Redis' unacked set and kombu restores it once it is older than the visibility timeout
  (20 s here), but its sweep runs only every ~100 s (unacked_restore_interval 10 s x throttle 10); a
  replacement worker sweeps once at start, before the message is old enough
  (docs/celery.md#visibility-timeout). So recovery must come from the watchdog, and a late duplicate may
  or may not arrive: steps are idempotent and a rolled-back namespace ignores it.
- After a Redis restart, what each process was doing when its connection broke (a publish, a running
  task, the watcher's status pass) and how long each takes to reconnect. That every worker process
  survives it, with no replacement, is asserted here and in test_broker_restart.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from kubesim import SimulatorThread
from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin, wait_until
from shared.embedded_redis import EmbeddedRedis
from tests.pipeline.conftest import Installation, start_installation
from tests.pipeline.snapshots import diff, pod_uids, snapshot

STALL_TIMEOUT = 8
HANG_SECONDS = 25.0
"""Longer than it takes to see the hang and act on it; shorter than the API client's read timeout."""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="module")
def crashable(
    simulator: SimulatorThread, redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    settings = {"KPROMOTE_STALL_TIMEOUT": str(STALL_TIMEOUT), "KPROMOTE_VISIBILITY_TIMEOUT": "20"}
    with start_installation(
        simulator, redis_server.url, tmp_path_factory.mktemp("crash-safety"), extra_env=settings
    ) as installation:
        yield installation


@dataclass
class Seeded:
    before: dict[str, dict[str, Any]]
    pods: dict[str, str]


def _seed(installation: Installation, namespaces: list[str]) -> dict[str, Seeded]:
    with ThreadPoolExecutor(max_workers=len(namespaces)) as pool:
        list(pool.map(lambda ns: seed_namespace(installation.member_api, ns, full=False), namespaces))
    return {
        ns: Seeded(snapshot(installation.member_api, ns), pod_uids(installation.member_api, ns))
        for ns in namespaces
    }


def _hang(admin: SimAdmin, verb: str, resource: str, namespace: str) -> int:
    """Hold the first matching request for HANG_SECONDS, then drop it; later ones pass."""
    fault = admin.add_fault(
        verb=verb,
        resource=resource,
        namespace=namespace,
        status="timeout",
        timeout_seconds=HANG_SECONDS,
        times=1,
    )
    return int(fault["id"])


def _wait_hanging(admin: SimAdmin, fault_id: int) -> None:
    admin.wait_fired(fault_id, f"the request held by fault {fault_id}")


def _wait_phase(installation: Installation, policy: str, namespace: str, phase: str) -> None:
    """The status is written every half second: wait for it to show `namespace` in `phase`."""

    def shown() -> bool:
        namespaces = installation.status(policy).get("namespaces", [])
        return any(ns["name"] == namespace and ns["phase"] == phase for ns in namespaces)

    wait_until(shown, timeout=10, interval=0.1, what=f"{namespace} to show {phase}")


def _pid(hostname: str) -> int:
    """Worker names are `<queues>-<pid>@<host>` (services/worker.py)."""
    return int(hostname.split("@")[0].rsplit("-", 1)[1])


def _worker_running(installation: Installation, task: str, namespace: str) -> subprocess.Popen[bytes]:
    """The worker process whose thread is running `task` for `namespace`."""
    app = installation.celery()
    try:
        active = wait_until(
            lambda: app.control.inspect(timeout=1.0).active(), timeout=10, what="workers to report"
        )
    finally:
        app.close()
    pids = {
        _pid(hostname)
        for hostname, tasks in active.items()
        for entry in tasks
        if entry["type"] == task and entry["kwargs"].get("namespace") == namespace
    }
    assert len(pids) == 1, f"{task} for {namespace} runs on {pids}: {active}"
    return next(p for p in installation.processes if p.pid in pids)


def _assert_settled(installation: Installation, status: dict[str, Any], seeded: dict[str, Seeded]) -> None:
    """Each namespace Completed or RolledBack, every member pod kept, and the member matching that end."""
    phases = {ns["name"]: ns["phase"] for ns in status["namespaces"]}
    assert set(phases) == set(seeded) and set(phases.values()) <= {"Completed", "RolledBack"}, status
    member_core = client.CoreV1Api(installation.member_api)
    member_apps = client.AppsV1Api(installation.member_api)
    cp_core = client.CoreV1Api(installation.cp_api)
    for namespace, seed in seeded.items():
        pods = member_core.list_namespaced_pod(namespace).items
        assert {p.metadata.name: p.metadata.uid for p in pods} == seed.pods, namespace
        assert all(p.metadata.deletion_timestamp is None for p in pods), namespace
        if phases[namespace] == "RolledBack":
            assert diff(seed.before, snapshot(installation.member_api, namespace)) == [], namespace
        else:
            assert all(p.metadata.labels.get("kosmos-io/pod") == "true" for p in pods), namespace
            assert member_apps.list_namespaced_deployment(namespace).items == [], namespace
            assert member_apps.list_namespaced_replica_set(namespace).items == [], namespace
            rebuilt = cp_core.list_namespaced_pod(namespace).items
            assert {p.metadata.name for p in rebuilt} == set(seed.pods), namespace
    assert installation.link.member_deletions == []


def _resumes(installation: Installation, policy: str, namespace: str) -> int:
    """How many times the watcher's watchdog resumed `namespace`, from its log."""
    return (installation.workdir / "watcher.log").read_text().count(f"namespace {namespace} of {policy} made")


@pytest.mark.parametrize(
    ("step", "side", "verb", "resource", "phase", "task"),
    [
        ("detach", "member", "delete", "deployments.apps", "Detaching", "kosmos_promote.detach.run"),
        ("rebuild", "control_plane", "create", "pods", "Rebuilding", "kosmos_promote.rebuild.batch"),
    ],
    ids=["in-detach", "in-rebuild"],
)
def test_a_worker_killed_mid_step_is_replaced_and_the_namespace_is_resumed(
    crashable: Installation, step: str, side: str, verb: str, resource: str, phase: str, task: str
) -> None:
    policy, held = f"kill-{step}", f"kill-{step}-1"
    seeded = _seed(crashable, [held, f"kill-{step}-2"])
    cluster = SimAdmin(getattr(crashable, side).url)
    fault = _hang(cluster, verb, resource, held)
    try:
        crashable.apply(policy, includedNamespaces=sorted(seeded))
        _wait_hanging(cluster, fault)
        _wait_phase(crashable, policy, held, phase)
        crashable.kill(_worker_running(crashable, task, held))
        crashable.add_worker()
        status = crashable.wait_done(policy, timeout=150)
    finally:
        cluster.clear_faults()
    _assert_settled(crashable, status, seeded)
    assert _resumes(crashable, policy, held) >= 1


def test_a_redis_restart_mid_run_loses_every_message_and_the_watchdog_resumes(
    crashable: Installation, redis_server: EmbeddedRedis
) -> None:
    seeded = _seed(crashable, ["restart-1", "restart-2"])
    control_plane = SimAdmin(crashable.control_plane.url)
    fault = _hang(control_plane, "create", "pods", "restart-1")
    try:
        crashable.apply("restart", includedNamespaces=sorted(seeded))
        _wait_hanging(control_plane, fault)
        _wait_phase(crashable, "restart", "restart-1", "Rebuilding")
        workers = list(crashable.workers)
        redis_server.restart()
        status = crashable.wait_done("restart", timeout=150)
    finally:
        control_plane.clear_faults()
    exited = {p.pid: p.returncode for p in workers if p.poll() is not None}
    assert not exited and crashable.workers == workers, f"workers lost: {exited}\n{crashable.logs()}"
    _assert_settled(crashable, status, seeded)
    assert _resumes(crashable, "restart", "restart-1") == 1, (
        "resumed once, a stall timeout after the restart; lost records are no reason to resume every second"
    )
