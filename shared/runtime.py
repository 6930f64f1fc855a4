"""What a worker or watcher process keeps between tasks: one connection pool per cluster and to Redis.

Tasks receive references (policy, namespace, run) and look everything else up here, so a task re-run
after a crash sees the world as it is now rather than as a message once described it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import redis

from shared.backup import BackupDir, backup_root
from shared.kube import ClusterLimits, Kube
from shared.kube.connect import connect_member
from shared.models import PromotePolicy
from shared.models.policy import GROUP, PLURAL
from shared.progress import NamespaceRun, Progress
from shared.settings import Settings, settings
from shared.steps.state import halt_if_rolling_back

POLICY_RESOURCE = f"{PLURAL}.{GROUP}"
POLICY_TTL = 5.0
T = TypeVar("T")
R = TypeVar("R")
CONTROL_PLANE = "control-plane"


class Runtime:
    def __init__(self, config: Settings | None = None) -> None:
        self.settings = config or settings()
        self._members: dict[str, Kube] = {}
        self._policies: dict[str, tuple[float, PromotePolicy]] = {}
        self._lock = threading.Lock()

    @cached_property
    def control_plane(self) -> Kube:
        source = self.settings.kubeconfig or str(Path.home() / ".kube" / "config")
        return Kube.from_kubeconfig(
            source,
            name=CONTROL_PLANE,
            pool_size=self.settings.api_concurrency,
            limits=self._limits(CONTROL_PLANE),
        )

    def member(self, cluster: str) -> Kube:
        with self._lock:
            if cluster not in self._members:
                self._members[cluster] = connect_member(
                    self.control_plane,
                    cluster,
                    self.settings.member_kubeconfigs,
                    pool_size=self.settings.api_concurrency,
                    limits=self.member_limits(cluster),
                )
            return self._members[cluster]

    def member_limits(self, cluster: str) -> ClusterLimits:
        """Keyed `member:<name>`, so that no member can share the control plane's limits."""
        return self._limits(f"member:{cluster}")

    def _limits(self, key: str) -> ClusterLimits:
        """The installation-wide request limits of one cluster (inactive unless configured)."""
        config = self.settings
        return ClusterLimits(
            self.redis,
            key,
            qps=config.api_qps,
            burst=config.api_burst,
            max_in_flight=config.api_max_in_flight,
            key_prefix=config.key_prefix,
        )

    @cached_property
    def _api_threads(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.settings.api_concurrency, thread_name_prefix="api")

    def fan_out(self, call: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`call` on every item on the process's API threads, results in order.

        One pool per process, made once: a fresh 16-thread pool per call cost ~3 ms of CPU, and a small
        namespace made a dozen. Only calls that submit nothing further come here, so tasks sharing it
        cannot deadlock; they only queue behind each other."""
        return list(self._api_threads.map(call, items))

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.broker_url)

    def policy(self, name: str) -> PromotePolicy:
        """Read at most every POLICY_TTL seconds: every task needs the spec (cluster, type filters), which
        a run never changes, and one GET per task was a visible share of a small namespace's time."""
        cached = self._policies.get(name)
        if cached is not None and time.monotonic() - cached[0] < POLICY_TTL:
            return cached[1]
        resource = self.control_plane.discovery.resolve(POLICY_RESOURCE)
        obj = self.control_plane.get(resource, "", name)
        if obj is None:
            raise LookupError(f'PromotePolicy "{name}" no longer exists')
        policy = PromotePolicy.from_api(obj)
        self._policies[name] = (time.monotonic(), policy)
        return policy

    def progress(self, run: NamespaceRun) -> Progress:
        return Progress(self.redis, run.policy, run.run_id)

    def backup(self, run: NamespaceRun) -> BackupDir:
        return BackupDir(backup_root(self.settings.backup_dir, run.policy, run.namespace, run.run_id))


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The process-wide runtime (created on first use, after the worker has read its configuration)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime()
    return _runtime


def forward_run(policy: str, namespace: str, run_id: str) -> NamespaceRun:
    """The run a forward task works on, unless that namespace is being rolled back (then Ignore)."""
    run = NamespaceRun(policy, namespace, run_id)
    halt_if_rolling_back(runtime().backup(run).root)
    return run
