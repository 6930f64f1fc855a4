"""A whole installation for pipeline tests: a simulated Kosmos pair, Redis, and the real processes.

The watcher and the workers run as separate `kpromote` processes, exactly as deployed; the simulated
clusters run in this process and are reached by everyone over HTTP. One installation serves the whole
session; tests isolate themselves by policy and namespace names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kubernetes import client

from kubesim import SimulatedCluster, SimulatorThread
from kubesim.kosmos import KosmosLink
from kubesim.seed import seed_cluster_scoped
from kubesim.serve import start_pair
from kubesim.testing import MERGE_PATCH, api_client, wait_until
from services.celery_app import create_app
from services.install import install
from tests.s3_server import S3Server, s3_server

REPO = Path(__file__).resolve().parents[2]
TERMINAL = ("Completed", "PartiallyFailed", "Failed", "FailedPrecheck", "RolledBack", "FailedRollback")


@dataclass
class Installation:
    control_plane: SimulatedCluster
    member: SimulatedCluster
    link: KosmosLink
    cp_api: client.ApiClient
    member_api: client.ApiClient
    env: dict[str, str]
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    """Log name (`worker-1`, `watcher`) -> the port of that process's Prometheus `/metrics`."""

    @property
    def policies(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.cp_api)

    def apply(self, name: str, **spec: Any) -> None:
        body = {
            "apiVersion": "kosmos.io/v1alpha1",
            "kind": "PromotePolicy",
            "metadata": {"name": name},
            "spec": {"clusterName": "member1", **spec},
        }
        self.policies.create_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", body)

    def request_rollback(self, name: str) -> None:
        self.policies.patch_cluster_custom_object(
            "kosmos.io",
            "v1alpha1",
            "promotepolicies",
            name,
            {"spec": {"rollback": "true"}},
            _content_type=MERGE_PATCH,
        )

    def status(self, name: str) -> dict[str, Any]:
        obj = self.policies.get_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", name)
        return obj.get("status") or {}

    def wait_done(
        self, name: str, timeout: float = 120.0, phases: tuple[str, ...] = TERMINAL
    ) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in phases else None

        try:
            return wait_until(done, timeout=timeout, interval=0.2, what=f"policy {name} to finish")
        except AssertionError:
            raise AssertionError(f"{name} did not finish: {self.status(name)}\n{self.logs()}") from None

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-6000:]}" for p in sorted(self.workdir.glob("*.log")))

    def celery(self) -> Celery:
        """A Celery app on this installation's broker, to ping or inspect its workers (close it after)."""
        return create_app(self.env["KPROMOTE_BROKER_URL"], self.env["KPROMOTE_KEY_PREFIX"])

    def add_worker(self, wait: bool = True) -> subprocess.Popen[bytes]:
        """One more worker process consuming every queue (a replacement, say); `wait` until it answers."""
        log = self.workdir / f"worker-{len(list(self.workdir.glob('worker-*.log'))) + 1}.log"
        self.metrics_ports[log.stem] = port = free_port()
        env = {**self.env, "KPROMOTE_METRICS_PORT": str(port)}
        process = _spawn(["worker", "-Q", WORKER_QUEUES, "-c", "8"], env, log)
        self.processes.append(process)
        if wait:
            _wait_for_workers(self, expected=len(self.workers))
        return process

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if "worker" in p.args]

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL, as when a node is lost: no shutdown, no acknowledgement, no message restored. A process
        that has already exited is only forgotten."""
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        self.processes.remove(process)


def free_port() -> int:
    """A port nobody listens on now (the OS's pick), for a process about to bind it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "services", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
    )


WORKER_QUEUES = "backup,detach,rebuild,rollback"


@contextlib.contextmanager
def start_installation(
    simulator: SimulatorThread,
    broker_url: str,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    workers: int = 2,
    **pair_options: Any,
) -> Iterator[Installation]:
    """A fresh simulated Kosmos pair with the watcher and `workers` worker processes on `broker_url`;
    `extra_env` overrides settings (e.g. a short stall timeout), `pair_options` the clusters (e.g. their
    Kubernetes versions, `kubesim.serve.start_pair`). Stops everything on exit."""
    control_plane, member, link = simulator.run(start_pair("member1", **pair_options))
    cp_kubeconfig = control_plane.write_kubeconfig(workdir / "control-plane.kubeconfig")
    env = {
        **os.environ,
        "KPROMOTE_BROKER_URL": broker_url,
        "KPROMOTE_BACKUP_DIR": str(workdir / "backups"),
        "KPROMOTE_KUBECONFIG": str(cp_kubeconfig),
        "KPROMOTE_KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}:",
        "KPROMOTE_ADOPTION_TIMEOUT": "20",
        # Tiny rebuild batches: a tier of one object runs in a `rebuild.tiers` task with its small
        # neighbours, a tier of several fans out as `rebuild.batch` tasks, so every run exercises both.
        "KPROMOTE_REBUILD_BATCH_SIZE": "1",
        "KPROMOTE_METRICS_PORT": "0",  # several processes on one host: no fixed /metrics port
        # A rollback that cannot finish is reported after this long (a test of riding out an outage sets
        # its own): the default of ten minutes would hold every such test for ten minutes.
        "KPROMOTE_ROLLBACK_RETRY_BUDGET": "10",
        "KPROMOTE_WATCHER_METRICS_PORT": "0",
        # The look at completed namespaces lists their member pods every interval: off here, so that the
        # requests other tests count are their own; tests/pipeline/test_aftercare.py turns it on.
        "KPROMOTE_COMPLETED_CHECK_INTERVAL": "0",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    try:
        with api_client(control_plane.url) as cp_api, api_client(member.url) as member_api:
            install(cp_api, env.get("KPROMOTE_NAMESPACE", "kosmos-promote"))
            seed_cluster_scoped(member_api)
            wait_until(lambda: _served(cp_api), what="the PromotePolicy CRD to be served")
            installation = Installation(control_plane, member, link, cp_api, member_api, env, workdir)
            try:
                installation.metrics_ports["watcher"] = port = free_port()
                watcher_env = {**env, "KPROMOTE_WATCHER_METRICS_PORT": str(port)}
                installation.processes.append(_spawn(["watcher"], watcher_env, workdir / "watcher.log"))
                for _ in range(workers):
                    installation.add_worker(wait=False)
                _wait_for_workers(installation, expected=workers)
                yield installation
            finally:
                for process in installation.processes:
                    process.terminate()
                for process in installation.processes:
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
    finally:
        simulator.run(link.stop())
        simulator.run(member.stop())
        simulator.run(control_plane.stop())


@pytest.fixture(scope="session")
def installation(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    with start_installation(simulator, redis_url, tmp_path_factory.mktemp("installation")) as installation:
        yield installation


def _served(api: client.ApiClient) -> bool:
    try:
        resources = client.CustomObjectsApi(api).get_api_resources("kosmos.io", "v1alpha1").resources
    except client.ApiException:
        return False
    return any(r.name == "promotepolicies" for r in resources)


def _wait_for_workers(installation: Installation, expected: int) -> None:
    app = installation.celery()
    deadline = time.monotonic() + 60
    try:
        while len(app.control.ping(timeout=0.5) or []) < expected:
            exited = any(p.poll() is not None for p in installation.processes)
            if time.monotonic() > deadline or exited:
                raise AssertionError(f"workers did not come up\n{installation.logs()}")
    finally:
        app.close()


@dataclass
class S3Installation:
    """An installation whose backups are kept in S3 (moto's server over HTTP): each worker has its own
    working directory and cache, so no two processes share a folder."""

    installation: Installation
    server: S3Server
    bucket: str
    caches: list[Path]

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/kpromote"


S3_CACHE_IDLE = 2.0
"""Seconds the S3 installation's workers keep an unused working copy: short, so that steps of one run
often find theirs swept and fetch it again, as after a long pause."""


@pytest.fixture(scope="module")
def s3_installation(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Installation]:
    workdir = tmp_path_factory.mktemp("s3-installation")
    with s3_server() as server:
        bucket = server.make_bucket(f"pipeline-{uuid.uuid4().hex[:8]}")
        extra = {
            **server.env(f"s3://{bucket}/kpromote"),
            "KPROMOTE_BACKUP_DIR": str(workdir / "watcher-logs"),
            "KPROMOTE_BACKUP_CACHE_DIR": str(workdir / "cli-cache"),  # the watcher's and kpromote's
        }
        with start_installation(simulator, redis_url, workdir, extra_env=extra, workers=0) as installation:
            caches = []
            for number in (1, 2):
                home = workdir / f"worker-{number}-home"
                home.mkdir()
                caches.append(home / "cache")
                env = {
                    **installation.env,
                    "KPROMOTE_BACKUP_CACHE_DIR": str(caches[-1]),
                    "KPROMOTE_BACKUP_DIR": str(home / "run-logs"),
                    "KPROMOTE_BACKUP_CACHE_IDLE": str(S3_CACHE_IDLE),
                    "PYTHONPATH": str(REPO),
                }
                log = (workdir / f"worker-{number}.log").open("wb")
                installation.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "services", "worker", "-Q", WORKER_QUEUES, "-c", "8"],
                        env=env,
                        cwd=home,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            _wait_for_workers(installation, expected=2)
            yield S3Installation(installation, server, bucket, caches)
