"""What a worker or watcher process keeps between tasks: one connection pool per cluster and to Redis.

Tasks receive references (policy, namespace, run) and look everything else up here, so a task re-run
after a crash sees the world as it is now rather than as a message once described it.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TypeVar, cast

import redis

from shared.backup import BackupDir
from shared.backup.store import store_from_settings
from shared.claims import Claim, Claims, RunHalted, RunSpec, forward_verdict
from shared.kube import ClusterLimits, Kube
from shared.kube.connect import connect_member, member_identity
from shared.progress import NamespaceRun, Progress
from shared.progress_writes import ProgressWrites
from shared.settings import Settings, settings

IDENTITY_TTL = 5.0
T = TypeVar("T")
R = TypeVar("R")
CONTROL_PLANE = "control-plane"


class Runtime:
    def __init__(self, config: Settings | None = None) -> None:
        self.settings = config or settings()
        self._members: dict[str, Kube] = {}
        self._specs: dict[str, RunSpec] = {}
        self._identities: dict[str, tuple[float, str | None]] = {}
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
        """`call` on every item on the process's API threads, results in order; the first failure (by
        item order) is raised once every call started has ended, and no further call starts after one
        failed.

        One pool per process, made once: a fresh 16-thread pool per call cost ~3 ms of CPU, and a small
        namespace made a dozen. Only calls that submit nothing further come here, so tasks sharing it
        cannot deadlock; they only queue behind each other. The pool gets one job per thread it may use,
        each taking item after item, rather than one job per item: a job handed to a pool thread costs
        a wake-up and ~30 us of CPU, as much as a tenth of the request it carries. A fan-out of one item
        (most of a small namespace's) runs in the caller's thread. The caller does not take items of a
        larger one: with several tasks fanning out at once, that put more calls in flight than the pool
        has threads, and a 1 x 10,000 rollback took 17.5-17.9 s instead of 15.0-15.3 s (bench/promote.py)."""
        work = list(enumerate(items))
        if not work:
            return []
        results: list[R | None] = [None] * len(work)
        failures: dict[int, BaseException] = {}
        pending = iter(work)
        lock = threading.Lock()
        # Each call runs in a copy of the caller's context: a log line on an API thread names the task
        # (shared/logs.py) that asked for it.
        context = contextvars.copy_context()

        def drain() -> None:
            while True:
                with lock:
                    nxt = None if failures else next(pending, None)
                if nxt is None:
                    return
                index, item = nxt
                try:
                    results[index] = context.copy().run(call, item)
                except BaseException as error:  # re-raised in the caller's thread, below
                    with lock:
                        failures[index] = error

        if len(work) == 1:
            drain()
        else:
            threads = min(len(work), self.settings.api_concurrency)
            jobs = [self._api_threads.submit(drain) for _ in range(threads)]
            for job in jobs:
                job.result()
        if failures:
            raise failures[min(failures)]
        return cast(list[R], results)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.broker_url)

    @cached_property
    def claims(self) -> Claims:
        return Claims(self.control_plane, self.settings.namespace)

    def guard(self, run: NamespaceRun) -> Claim:
        """The claim of `run`'s namespace if a forward step of this run and attempt may act; RunHalted
        (stale, cancelled or superseded work) otherwise. Read afresh every time: it is the point."""
        claim = self.claims.get(run.cluster, run.namespace)
        reason = forward_verdict(claim, run.run_id, run.attempt)
        if reason is not None or claim is None:
            raise RunHalted(run, reason or "no claim")
        self._specs[run.run_id] = claim.spec
        return claim

    def run_spec(self, run: NamespaceRun) -> RunSpec:
        """What the run acts on, as frozen when it started: from the sealed backup (so a rollback needs
        neither the policy nor its claim), else from the claim. Never from the live policy."""
        spec = self._specs.get(run.run_id)
        if spec is not None:
            return spec
        manifest = self.backup(run).manifest()
        spec = RunSpec.recorded_in(manifest.labels) if manifest is not None else None
        if spec is None:
            claim = self.claims.get(run.cluster, run.namespace)
            if claim is None or claim.run_id != run.run_id:
                raise RunHalted(run, "neither a sealed backup nor a claim records this run")
            spec = claim.spec
        self._specs[run.run_id] = spec
        return spec

    def member_of(self, spec: RunSpec) -> Kube:
        """The member the run started on: the Cluster object of that name may since point elsewhere, so
        its identity (the kube-system namespace UID) is compared before anything acts on it."""
        member = self.member(spec.cluster)
        if spec.member_id is None:
            return member
        checked = self._identities.get(spec.cluster)
        if checked is None or time.monotonic() - checked[0] > IDENTITY_TTL:
            checked = (time.monotonic(), member_identity(member))
            self._identities[spec.cluster] = checked
        if checked[1] != spec.member_id:
            raise MemberChanged(
                f'cluster "{spec.cluster}" is not the member run {spec.run_id} started on (its kube-system '
                f"namespace UID is {checked[1]}, was {spec.member_id}); nothing is done on it. Point the "
                f"Cluster object back at that member"
            )
        return member

    @cached_property
    def progress_writes(self) -> ProgressWrites:
        """Every step's progress writes in this process: at once, unless the worker sends them behind."""
        return ProgressWrites(self.redis)

    def progress(self, run: NamespaceRun) -> Progress:
        return Progress(self.redis, run.policy, run.run_id, self.progress_writes)

    def backup(self, run: NamespaceRun) -> BackupDir:
        """The run's backup in the configured store (KPROMOTE_BACKUP_URL), through this worker's own working
        copy when the store is not a local folder."""
        return BackupDir.of_run(
            store_from_settings(self.settings),
            run.policy,
            run.namespace,
            run.run_id,
            self.settings.backup_cache_dir,
        )


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The process-wide runtime (created on first use, after the worker has read its configuration)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime()
    return _runtime


class MemberChanged(RuntimeError):
    """The member cluster behind a name is no longer the one a run started on."""


def forward_run(run: NamespaceRun) -> NamespaceRun:
    """`run`, once its claim says that this run and attempt may act (RunHalted otherwise)."""
    runtime().guard(run)
    return run
