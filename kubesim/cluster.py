"""A whole simulated cluster (store, admission, controllers, HTTP server) and a thread to run clusters in.

`SimulatedCluster` is the asyncio object; `SimulatorThread` runs one or more of them on a private
event loop so that synchronous code (tests, the CLI, the official Kubernetes client) can use them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from kubesim import admission, quota
from kubesim.controllers import default_controllers
from kubesim.controllers.base import ControllerManager
from kubesim.controllers.crds import validate_crd
from kubesim.controllers.namespaces import NamespaceController, NamespaceProvisioner
from kubesim.faults import Faults
from kubesim.informers import Informers
from kubesim.objects import Obj
from kubesim.rbac import Rbac
from kubesim.schemas import CustomResourceSchemas
from kubesim.server import ApiServer
from kubesim.store import Store
from kubesim.tokens import TokenIssuer
from kubesim.versions import GIT_VERSION

T = TypeVar("T")


class SimulatedCluster:
    def __init__(
        self,
        name: str = "kubesim",
        *,
        latency_ms: float = 0.0,
        service_cidr: str = "10.96.0.0/16",
        git_version: str = GIT_VERSION,
        controllers: bool = True,
        informer_lag_ms: float = 0.0,
        namespace_deletion_grace_s: float = 0.0,
        crd_schemas: bool = True,
        rbac: bool = False,
    ) -> None:
        """`informer_lag_ms`: how far behind the store its controllers run (kubesim/informers.py);
        `namespace_deletion_grace_s`: how long the namespace controller leaves a terminating namespace
        alone before deleting its content (kube-controller-manager: 5 s; kubesim/controllers/namespaces.py);
        `crd_schemas`: custom resources pruned and validated by their CRD's schema (kubesim/schemas.py);
        `rbac`: requests authenticated and authorized (kubesim/rbac.py)."""
        self.name = name
        self.store = Store()
        admission.install(self.store, service_cidr=service_cidr)
        self.store.admission.append(validate_crd)
        self.schemas = CustomResourceSchemas(crd_schemas)
        self.store.admission.append(self.schemas)
        self.rbac = Rbac(self.store, TokenIssuer(self.store), enabled=rbac)
        self.rbac.admin_tokens = {"kubesim", f"kubesim-{name}"}
        self.store.admission.append(self.rbac.check_escalation)
        self.store.admission.append(quota.admit)
        self.faults = Faults(latency_ms)
        self.informers = Informers(self.store, informer_lag_ms / 1000)
        self.api = ApiServer(
            self.store, self.faults, self.informers, self.schemas, self.rbac, git_version=git_version
        )
        self.manager = ControllerManager(self.store, self.informers)
        if controllers:
            for controller in default_controllers(self.store, git_version):
                self.manager.add(controller)
        self.set_namespace_deletion_grace(namespace_deletion_grace_s)
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def provision_namespaces(self, objects: list[tuple[str, str, Obj]]) -> None:
        """Give every namespace created from now on these objects ((group, plural, body) each), as a
        platform's policy engine does (kubesim/controllers/namespaces.py NamespaceProvisioner)."""
        for controller in self.manager.controllers:
            if isinstance(controller, NamespaceProvisioner):
                controller.objects = list(objects)

    def set_namespace_deletion_grace(self, seconds: float) -> None:
        """How long the namespace controller waits before emptying a namespace deleted from now on."""
        for controller in self.manager.controllers:
            if isinstance(controller, NamespaceController):
                controller.deletion_grace = seconds

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.manager.start()
        self._runner = web.AppRunner(
            self.api.app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self.host, self.port = self._runner.addresses[0][:2]
        self.api.address = f"{self.host}:{self.port}"
        namespaces = self.store.namespaces
        for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if self.store.get(namespaces, "", namespace) is None:
                self.store.create(namespaces, {"metadata": {"name": namespace}})

    async def stop(self) -> None:
        await self.manager.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def settle(self, quiet_for: float = 0.05, timeout: float = 10.0) -> None:
        """Wait until the controllers have had nothing to do for `quiet_for` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_since = loop.time()
        last_rv = self.store.resource_version
        while loop.time() < deadline:
            await asyncio.sleep(0.01)
            if self.store.resource_version != last_rv or not self.manager.idle():
                last_rv, quiet_since = self.store.resource_version, loop.time()
            elif loop.time() - quiet_since >= quiet_for:
                return

    def kubeconfig(self, user: str = "admin") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {"server": self.url}}],
            "users": [{"name": user, "user": {"token": f"kubesim-{self.name}"}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": user}}],
            "current-context": self.name,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        partial.chmod(0o600)
        partial.replace(target)
        return target


class SimulatorThread:
    """An event loop in a daemon thread hosting simulated clusters for synchronous callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="kubesim", daemon=True)
        self._thread.start()
        self.clusters: list[SimulatedCluster] = []

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def call(self, function: Callable[[], T], timeout: float = 60.0) -> T:
        """Run plain code on the loop thread, where the store may be touched safely."""

        async def wrapper() -> T:
            return function()

        return self.run(wrapper(), timeout)

    def start_cluster(self, cluster: SimulatedCluster, port: int = 0) -> SimulatedCluster:
        self.run(cluster.start(port=port))
        self.clusters.append(cluster)
        return cluster

    def settle(self, *clusters: SimulatedCluster, quiet_for: float = 0.05, timeout: float = 10.0) -> None:
        for cluster in clusters or tuple(self.clusters):
            self.run(cluster.settle(quiet_for, timeout), timeout + 5)

    def close(self) -> None:
        for cluster in reversed(self.clusters):
            self.run(cluster.stop())
        self.clusters.clear()
        self.run(self._cancel_leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    @staticmethod
    async def _cancel_leftovers() -> None:
        """Watch streams and links still waiting: end them here rather than when the loop is closed."""
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def __enter__(self) -> SimulatorThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
