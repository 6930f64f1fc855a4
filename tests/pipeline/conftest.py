"""A whole installation for pipeline tests: a simulated Kosmos pair, Redis, and the real processes.

The watcher and the workers run as separate `kpromote` processes, exactly as deployed; the simulated
clusters run in this process and are reached by everyone over HTTP. One installation serves the whole
session; tests isolate themselves by policy and namespace names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubesim import SimulatedCluster, SimulatorThread
from kubesim.kosmos import KosmosLink
from kubesim.seed import seed_cluster_scoped
from kubesim.serve import start_pair
from kubesim.testing import api_client, wait_until
from shared.celery_app import create_app

REPO = Path(__file__).resolve().parents[2]
POLICY_CRD = REPO / "shared" / "crds" / "promotepolicies.kosmos.io.yaml"
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


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "services", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
    )


@pytest.fixture(scope="session")
def installation(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    workdir = tmp_path_factory.mktemp("installation")
    control_plane, member, link = simulator.run(start_pair("member1"))
    cp_kubeconfig = control_plane.write_kubeconfig(workdir / "control-plane.kubeconfig")
    env = {
        **os.environ,
        "KPROMOTE_BROKER_URL": redis_url,
        "KPROMOTE_BACKUP_DIR": str(workdir / "backups"),
        "KPROMOTE_KUBECONFIG": str(cp_kubeconfig),
        "KPROMOTE_KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}:",
        "KPROMOTE_ADOPTION_TIMEOUT": "20",
        "PYTHONUNBUFFERED": "1",
    }
    with api_client(control_plane.url) as cp_api, api_client(member.url) as member_api:
        client.ApiextensionsV1Api(cp_api).create_custom_resource_definition(
            yaml.safe_load(POLICY_CRD.read_text())
        )
        seed_cluster_scoped(member_api)
        wait_until(lambda: _served(cp_api), what="the PromotePolicy CRD to be served")
        installation = Installation(control_plane, member, link, cp_api, member_api, env, workdir)
        installation.processes = [
            _spawn(
                ["worker", "-Q", "backup,detach,rebuild,rollback", "-c", "8"], env, workdir / "worker-1.log"
            ),
            _spawn(
                ["worker", "-Q", "backup,detach,rebuild,rollback", "-c", "8"], env, workdir / "worker-2.log"
            ),
            _spawn(["watcher"], env, workdir / "watcher.log"),
        ]
        _wait_for_workers(env, expected=2, installation=installation)
        try:
            yield installation
        finally:
            for process in installation.processes:
                process.terminate()
            for process in installation.processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
    simulator.run(link.stop())
    simulator.run(member.stop())
    simulator.run(control_plane.stop())


def _served(api: client.ApiClient) -> bool:
    try:
        resources = client.CustomObjectsApi(api).get_api_resources("kosmos.io", "v1alpha1").resources
    except client.ApiException:
        return False
    return any(r.name == "promotepolicies" for r in resources)


def _wait_for_workers(env: dict[str, str], expected: int, installation: Installation) -> None:
    app = create_app(env["KPROMOTE_BROKER_URL"], env["KPROMOTE_KEY_PREFIX"])
    deadline = time.monotonic() + 60
    while len(app.control.ping(timeout=0.5) or []) < expected:
        if time.monotonic() > deadline or any(p.poll() is not None for p in installation.processes):
            raise AssertionError(f"workers did not come up\n{installation.logs()}")
    app.close()
