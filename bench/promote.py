"""Promote and rollback throughput against the API's own limit, with the real services, in one run.

Starts a simulated Kosmos pair in its own process (`kpromote sim-pair`, with per-request latency and a
real kube-controller-manager's 5 s wait before it empties a deleted namespace), a private Redis for the
run (so its memory and command counts are the run's own; `--redis URL` to use another), the watcher
and N worker processes, seeds the member, and measures:

* the **limits**: raw creates/s, merge patches/s and deletes/s of ConfigMaps in the same control plane,
  with the official client's connection pool at the workers' total concurrency (each the best of three
  rounds of 1,000);
* **promote throughput**: objects rebuilt per second from `apply` to `Completed` in the policy's status,
  and its ratio to the raw create rate (every promoted object costs at least two writes, a create in the
  control plane and a patch or delete in the member, so 0.5 is the ceiling);
* **rollback throughput** of the same namespaces right after (`spec.rollback: "true"` to `RolledBack`):
  objects per second, its ratio to the raw delete rate (each object costs a delete in the control plane
  and a patch in the member: 0.5 again) and to promote's objects per second (the target is 0.9);
* the **pipeline time** of each: from the request to the last namespace's final progress write by a
  worker, i.e. without the watcher's once-a-second status refresh;
* **worker CPU seconds per 1,000 objects**, promote and rollback, summed over the worker process trees;
* with `--namespaces 1 20` (any one and twenty of the same size), the **scaling bound** of many small
  namespaces: T(20) <= 1.25 x max(T(1), R(20) / raw request rate), T the pipeline seconds and R(20) the
  API requests the twenty namespaces made in both clusters (one simulator process serves both, so the
  raw create rate is its request rate);
* Redis peak memory, Celery tasks and task messages per namespace (messages = LPUSHes on the broker,
  including chord bodies and replaced canvases), each worker's peak RSS, and the CPU seconds each process
  (simulators, workers, watcher, Redis) spent during the promote: on a small machine they share the
  cores, so this says where the time went.

With `--profile DIR`, py-spy samples every worker during the promote and the hottest functions are
printed (the raw stacks stay in DIR for flame graphs).

    python bench/promote.py --namespaces 20 --objects 20 --workers 2          # one run
    python bench/promote.py --namespaces 1 20 --objects 20 200                # four runs, two bounds
    python bench/promote.py --suite                                           # the README's table

Prints a table and writes JSON (bench/results/promote.json). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
import yaml
from kubernetes import client

from kubesim.testing import SimAdmin, api_client, busiest_window, most_in_flight, wait_until
from services.celery_app import QUEUES, create_app
from services.console.common import phase_of
from services.console.rollback import rollback_finished
from shared.backup import write_atomically
from shared.embedded_redis import EmbeddedRedis
from shared.kube import Kube
from shared.kube.client import USER_AGENT
from shared.progress import Progress

CRD = Path(__file__).resolve().parents[1] / "shared" / "crds" / "promotepolicies.kosmos.io.yaml"
INSTALL_NAMESPACE = "kosmos-promote"
"""Where the workers keep namespace claims (the default KPROMOTE_NAMESPACE), as deploy/ creates it."""


@dataclass
class Rollback:
    """The rollback of the promoted namespaces, measured like the promote."""

    seconds: float
    """From the request (`spec.rollback: "true"`) to `RolledBack` in the policy's status."""
    pipeline_seconds: float
    """From the request to the last namespace's final progress write by a worker."""
    objects_per_s: float
    ratio_to_limit: float
    """Objects per second over the raw delete rate."""
    ratio_to_promote: float
    """Rollback objects per second over promote's (both from the policy's status)."""
    phase: str
    worker_cpu_per_1000: float
    cpu_seconds: dict[str, float]
    api: dict[str, dict[str, Any]]


@dataclass
class Result:
    namespaces: int
    objects_per_namespace: int
    workers: int
    concurrency: int
    latency_ms: float
    namespace_deletion_grace_s: float
    objects_promoted: int
    promote_seconds: float
    pipeline_seconds: float
    promote_objects_per_s: float
    raw_creates_per_s: float
    raw_patches_per_s: float
    raw_deletes_per_s: float
    file_write_cpu_us: float
    """CPU microseconds of one backup file write in the run's backup folder, measured before the run (see
    `_file_write_cost`): the disk's share of the workers' CPU, which differs between folders of one disk."""
    ratio_to_limit: float
    redis_peak_mib: float
    tasks_per_namespace: float
    messages_per_namespace: float
    tasks_left_behind: int
    """Messages still queued or delivered but unacknowledged once the policy is Completed (a moment
    allowed for the last acknowledgement)."""
    status_kib: float
    """Size of the policy's final status as JSON: etcd refuses objects over 1.5 MiB."""
    worker_peak_rss_mib: list[float]
    worker_cpu_per_1000: float
    """Worker CPU seconds (every worker process and its children) per 1,000 objects promoted."""
    cpu_seconds: dict[str, float]
    api: dict[str, dict[str, Any]]
    """Per cluster, the workers' requests as the simulated server logged them: per namespace, the busiest
    second, the most in flight at once (to check `--qps` and `--max-in-flight`), the requests per
    namespace by verb and type (the most frequent)."""
    rollback: Rollback | None = None

    @property
    def worker_to_simulator_cpu(self) -> float:
        """Worker CPU over the simulators' CPU in the same run: the simulators serve the same requests
        whatever the workers' code, so the machine's drift from hour to hour (a quarter and more) mostly
        cancels out. Not wholly: their controllers' work depends on timing, and at 20 x 200 their CPU
        differed by a tenth between two versions of the workers making the same requests."""
        return round(self.cpu_seconds["workers"] / max(self.cpu_seconds["simulators"], 0.01), 2)

    @property
    def api_requests(self) -> float:
        """R: every request the run's namespaces made, both clusters."""
        return sum(c["requests_per_namespace"] for c in self.api.values()) * self.namespaces


def _as_json(result: Result) -> dict[str, Any]:
    return {**asdict(result), "worker_to_simulator_cpu": result.worker_to_simulator_cpu}


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services", *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def _seed(member: Kube, namespace: str, objects: int) -> None:
    """One Deployment (its ReplicaSet and pod count too) and ConfigMaps for the rest."""
    core = member.discovery
    member.create(core.resolve("namespaces"), {"metadata": {"name": namespace}})
    wait_until(lambda: member.get(core.resolve("serviceaccounts"), namespace, "default"), what="default SA")
    configmaps = core.resolve("configmaps")
    for index in range(max(objects - 3, 0)):
        member.create(configmaps, {"metadata": {"name": f"cm-{index}"}, "data": {"k": "v" * 200}}, namespace)
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
    }
    member.create(
        core.resolve("deployments.apps"),
        {
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template},
        },
        namespace,
    )
    pods = core.resolve("pods")
    pod = wait_until(lambda: next(iter(member.list(pods, namespace)), None), what="the pod")
    member.patch(
        pods,
        namespace,
        pod["metadata"]["name"],
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        subresource="status",
    )


LIMIT_OBJECTS, LIMIT_ROUNDS = 1000, 3
"""Each limit is the best of three rounds of 1,000 requests: one round varied by ±15 % between runs."""


@dataclass(frozen=True)
class Limits:
    creates_per_s: float
    patches_per_s: float
    deletes_per_s: float


def _raw_rates(control_plane: Kube, total: int, threads: int) -> Limits:
    """Raw creates, merge patches and deletes a second of small ConfigMaps, `threads` at a time: what the
    control plane takes from this many client threads, the promote's and the rollback's yardstick."""
    rounds = [_raw_round(control_plane, total, threads) for _ in range(LIMIT_ROUNDS)]
    return Limits(*(max(round_[verb] for round_ in rounds) for verb in ("create", "patch", "delete")))


def _raw_round(control_plane: Kube, total: int, threads: int) -> dict[str, float]:
    """One round: `total` ConfigMaps created in a fresh namespace, then each patched, then each deleted."""
    configmaps = control_plane.discovery.resolve("configmaps")
    namespace = f"limit-{uuid.uuid4().hex[:6]}"
    control_plane.create(control_plane.discovery.resolve("namespaces"), {"metadata": {"name": namespace}})
    calls: dict[str, Callable[[int], object]] = {
        "create": lambda i: control_plane.create(
            configmaps, {"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 200}}, namespace
        ),
        "patch": lambda i: control_plane.patch(
            configmaps, namespace, f"cm-{i}", {"metadata": {"labels": {"patched": "yes"}}}
        ),
        "delete": lambda i: control_plane.delete(configmaps, namespace, f"cm-{i}"),
    }
    rates = {}
    with ThreadPoolExecutor(threads) as pool:
        for verb, call in calls.items():
            started = time.perf_counter()
            list(pool.map(call, range(total)))
            rates[verb] = total / (time.perf_counter() - started)
    return rates


FILE_WRITES = 200


def _file_write_cost(directory: Path) -> float:
    """CPU microseconds per file written as a backup writes its files (`write_atomically`: a temporary,
    fsync, rename, folder fsync) of 1 KiB, in a scratch folder beside the backups. A small namespace's
    backup writes about forty files, and where ext4 must search its inode table for a free inode, a file
    costs hundreds of microseconds of kernel CPU (seen here: 300-750 us in /tmp, 46 us in another folder of
    the same disk, 14 us on tmpfs), a tenth or more of the workers' CPU. The files stay until the run's
    folder goes: removing them would leave recently freed inodes for the run's own files to search."""
    scratch = directory / "file-write-cost"
    scratch.mkdir(parents=True)
    started = time.process_time()
    for index in range(FILE_WRITES):
        write_atomically(scratch / f"file-{index}", b"x" * 1024)
    return round(1e6 * (time.process_time() - started) / FILE_WRITES, 1)


def _served(kube: Kube, group_resource: str) -> Any:
    kube.discovery.refresh()
    return kube.discovery.by_group_resource(group_resource)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, with that of its children already waited for
    (/proc/<pid>/stat fields 14 to 17); 0 for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(FileNotFoundError):
            children += [int(child) for child in task.read_text().split()]
    return children


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and every process under it now: a worker runs its tasks in threads, but a
    pool of processes (or anything a task starts) would count too."""
    return _cpu_seconds(pid) + sum(_tree_cpu_seconds(child) for child in _children(pid))


def _redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _start_profilers(pids: list[int], directory: Path) -> list[subprocess.Popen[bytes]]:
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--nonblocking",
                "--gil",
                "-o",
                str(directory / f"worker-{index}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index, pid in enumerate(pids)
    ]


def _stop_profilers(profilers: list[subprocess.Popen[bytes]], directory: Path) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        profiler.wait(timeout=60)
    print_hottest(sorted(directory.glob("worker-*.txt")))


def print_hottest(files: list[Path], top: int = 25) -> None:
    """Functions by share of CPU samples: where the frame is on the stack (total) and on top (self)."""
    total: dict[str, int] = {}
    own: dict[str, int] = {}
    samples = 0
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            samples += int(count)
            for frame in set(frames):
                total[frame] = total.get(frame, 0) + int(count)
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
    print(f"\n{samples} CPU samples from {len(files)} worker(s); total% = on the stack, self% = on top")
    for frame, count in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * count / samples:6.1f}% {100 * own.get(frame, 0) / samples:6.1f}%  {frame}")
    print("self only:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * count / samples:6.1f}%  {frame}")


def _left_behind(client: redis.Redis, prefix: str) -> int:
    def count() -> int:
        queued = sum(int(client.llen(f"{prefix}{queue}")) for queue in QUEUES)
        return queued + int(client.hlen(f"{prefix}unacked"))

    deadline = time.monotonic() + 5
    while (left := count()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


BREAKDOWN_TOP = 12
"""How many (verb, type) pairs the request breakdown keeps per cluster: the rest are a long tail."""


def _api_figures(admin: SimAdmin, namespaces: int) -> dict[str, Any]:
    """The run's own requests: the workers' and the watcher's API client (kopf's watch and status
    patches, and this script's polling, have other User-Agents)."""
    log = [entry for entry in admin.requests() if entry["user_agent"] == USER_AGENT]
    kinds = Counter(
        f"{entry['verb']} {entry['resource']}{'/' + entry['subresource'] if entry['subresource'] else ''}"
        for entry in log
    )
    return {
        "requests_per_namespace": round(len(log) / namespaces, 1),
        "busiest_second": busiest_window(log, 1.0),
        "most_in_flight": most_in_flight(log),
        "per_namespace": {
            kind: round(count / namespaces, 1) for kind, count in kinds.most_common(BREAKDOWN_TOP)
        },
    }


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Measured:
    """One phase (promote or rollback) as every process saw it."""

    seconds: float
    pipeline_seconds: float
    status: dict[str, Any]
    cpu_seconds: dict[str, float]
    api: dict[str, dict[str, Any]]


class Cluster:
    """The processes of one run and how to read what they spent."""

    def __init__(
        self,
        roles: dict[str, list[int]],
        redis_client: redis.Redis,
        admins: dict[str, SimAdmin],
        observer: client.CustomObjectsApi,
        names: list[str],
    ) -> None:
        self.roles = roles
        self.redis = redis_client
        self.admins = admins
        self.observer = observer
        self.names = names

    def cpu(self) -> dict[str, float]:
        spent = {role: sum(map(_tree_cpu_seconds, pids)) for role, pids in self.roles.items()}
        spent["redis"] = _redis_cpu_seconds(self.redis)
        return spent

    def policy(self) -> dict[str, Any]:
        return self.observer.get_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", "bench")

    def measure(
        self, request: Callable[[], None], ended: Callable[[dict[str, Any]], bool], what: str
    ) -> Measured:
        """`request` (the apply, or the rollback request), then poll the policy until `ended` says so."""
        for admin in self.admins.values():
            admin.clear_requests()
        cpu_before = self.cpu()
        started, requested_at = time.perf_counter(), time.time()
        request()

        def finished() -> dict[str, Any] | None:
            policy = self.policy()
            return policy if ended(policy) else None

        # A policy of many namespaces has a status of hundreds of KB: polling it fast would load the
        # simulated control plane that the run is measured on.
        poll = 0.2 if len(self.names) <= 50 else 1.0
        policy = wait_until(finished, timeout=3600, interval=poll, what=what)
        elapsed = time.perf_counter() - started
        status = policy["status"]
        progress = Progress(self.redis, "bench", status["runId"])
        last_write = max(reading.updated or 0.0 for reading in progress.read(self.names))
        cpu_after = self.cpu()
        return Measured(
            round(elapsed, 2),
            round(last_write - requested_at, 2),
            status,
            {role: round(cpu_after[role] - cpu_before[role], 2) for role in cpu_after},
            {name: _api_figures(admin, len(self.names)) for name, admin in self.admins.items()},
        )


def run_once(
    namespaces: int,
    objects: int,
    workers: int,
    concurrency: int,
    latency_ms: float,
    redis_url: str,
    namespace_deletion_grace_s: float,
    profile: Path | None = None,
    keep: bool = False,
    qps: float = 0.0,
    max_in_flight: int = 0,
    rollback: bool = True,
) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="kpromote-bench-"))
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    sims = _spawn(
        [
            "sim-pair",
            "--dir",
            str(workdir),
            "--latency-ms",
            str(latency_ms),
            "--namespace-deletion-grace",
            str(namespace_deletion_grace_s),
        ],
        dict(os.environ),
        workdir / "sim.log",
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        wait_until(lambda: (workdir / "control-plane.kubeconfig").exists(), timeout=30, what="the simulators")
        threads = workers * concurrency
        control_plane = Kube.from_kubeconfig(workdir / "control-plane.kubeconfig", pool_size=threads)
        member = Kube.from_kubeconfig(workdir / "member1.kubeconfig", pool_size=16)
        control_plane.create(
            control_plane.discovery.resolve("customresourcedefinitions.apiextensions.k8s.io"),
            yaml.safe_load(CRD.read_text()),
        )
        control_plane.create(
            control_plane.discovery.resolve("namespaces"), {"metadata": {"name": INSTALL_NAMESPACE}}
        )
        names = [f"bench-{i:04d}" for i in range(namespaces)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda ns: _seed(member, ns, objects), names))
        limits = _raw_rates(control_plane, LIMIT_OBJECTS, threads)
        file_write_cpu_us = _file_write_cost(workdir)
        env = {
            **os.environ,
            "KPROMOTE_BROKER_URL": redis_url,
            "KPROMOTE_KEY_PREFIX": prefix,
            "KPROMOTE_BACKUP_DIR": str(workdir / "backups"),
            "KPROMOTE_KUBECONFIG": str(workdir / "control-plane.kubeconfig"),
            "KPROMOTE_METRICS_PORT": "0",
            "KPROMOTE_WATCHER_METRICS_PORT": "0",
            "KPROMOTE_API_QPS": str(qps),
            "KPROMOTE_API_MAX_IN_FLIGHT": str(max_in_flight),
        }
        processes = [
            _spawn(
                ["worker", "-Q", "backup,detach,rebuild,rollback", "-c", str(concurrency)],
                env,
                workdir / f"worker-{i}.log",
            )
            for i in range(workers)
        ]
        processes.append(_spawn(["watcher"], env, workdir / "watcher.log"))
        app = create_app(redis_url, prefix)
        wait_until(lambda: len(app.control.ping(timeout=0.5) or []) >= workers, timeout=60, what="workers")
        redis_client = redis.Redis.from_url(redis_url)
        redis_client.config_resetstat()
        wait_until(lambda: _served(control_plane, "promotepolicies.kosmos.io"), what="the CRD")
        roles = {
            "simulators": [sims.pid],
            "workers": [p.pid for p in processes[:workers]],
            "watcher": [processes[-1].pid],
        }
        admins = {"control-plane": SimAdmin(control_plane.url), "member": SimAdmin(member.url)}
        # The policy is applied, patched and polled with the official client, whose User-Agent keeps these
        # requests out of the run's figures.
        observer = client.CustomObjectsApi(api_client(control_plane.url))
        cluster = Cluster(roles, redis_client, admins, observer, names)
        profilers = _start_profilers(roles["workers"], profile / "promote") if profile else []
        promote = cluster.measure(
            lambda: observer.create_cluster_custom_object(
                "kosmos.io",
                "v1alpha1",
                "promotepolicies",
                {
                    "apiVersion": "kosmos.io/v1alpha1",
                    "kind": "PromotePolicy",
                    "metadata": {"name": "bench"},
                    "spec": {"clusterName": "member1", "includedNamespaces": names},
                },
            ),
            lambda policy: phase_of(policy) in ("Completed", "PartiallyFailed", "Failed"),
            "the promote",
        )
        if profile:
            _stop_profilers(profilers, profile / "promote")
        status = promote.status
        promoted = sum(ns["counts"]["rebuilt"] for ns in status["namespaces"])
        commands = redis_client.info("commandstats")
        left = _left_behind(redis_client, prefix)
        stats = app.control.inspect(timeout=2).stats() or {}
        tasks = sum(sum(worker.get("total", {}).values()) for worker in stats.values())
        info = redis_client.info("memory")
        if status["phase"] != "Completed":
            print(f"warning: the promote ended {status['phase']}: {status.get('message')}", file=sys.stderr)
        promote_rate = promoted / promote.seconds
        result = Result(
            namespaces,
            objects,
            workers,
            concurrency,
            latency_ms,
            namespace_deletion_grace_s,
            promoted,
            promote.seconds,
            promote.pipeline_seconds,
            round(promote_rate, 1),
            round(limits.creates_per_s, 1),
            round(limits.patches_per_s, 1),
            round(limits.deletes_per_s, 1),
            file_write_cpu_us,
            round(promote_rate / limits.creates_per_s, 3),
            round(info["used_memory_peak"] / 2**20, 1),
            round(tasks / namespaces, 1),
            round(commands.get("cmdstat_lpush", {}).get("calls", 0) / namespaces, 1),
            left,
            round(len(json.dumps(status)) / 1024, 1),
            [],
            round(1000 * promote.cpu_seconds["workers"] / max(promoted, 1), 3),
            promote.cpu_seconds,
            promote.api,
        )
        if rollback:
            profilers = _start_profilers(roles["workers"], profile / "rollback") if profile else []
            before = cluster.policy()
            undone = cluster.measure(
                lambda: observer.patch_cluster_custom_object(
                    "kosmos.io", "v1alpha1", "promotepolicies", "bench", {"spec": {"rollback": "true"}}
                ),
                lambda policy: rollback_finished(before, policy),
                "the rollback",
            )
            if profile:
                _stop_profilers(profilers, profile / "rollback")
            if undone.status["phase"] != "RolledBack":
                print(
                    f"warning: the rollback ended {undone.status['phase']}: {undone.status.get('message')}",
                    file=sys.stderr,
                )
            rate = promoted / undone.seconds
            result.rollback = Rollback(
                undone.seconds,
                undone.pipeline_seconds,
                round(rate, 1),
                round(rate / limits.deletes_per_s, 3),
                round(rate / promote_rate, 3),
                undone.status["phase"],
                round(1000 * undone.cpu_seconds["workers"] / max(promoted, 1), 3),
                undone.cpu_seconds,
                undone.api,
            )
        result.worker_peak_rss_mib = [round(_peak_rss_mib(p.pid), 1) for p in processes[:workers]]
        return result
    finally:
        for process in [*processes, sims]:
            process.terminate()
        for process in [*processes, sims]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if keep:
            print(f"logs and backups kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


SUITE = [
    {"namespaces": 1, "objects": 20, "workers": 2},
    {"namespaces": 20, "objects": 20, "workers": 2},
    {"namespaces": 1, "objects": 200, "workers": 2},
    {"namespaces": 20, "objects": 200, "workers": 2},
    {"namespaces": 1, "objects": 10_000, "workers": 2},
    {"namespaces": 1000, "objects": 20, "workers": 4},
]
"""The README's table: 1 vs 20 namespaces of two sizes (the scaling bound), one namespace of 10,000
objects (worker memory) and 1,000 namespaces (Redis memory, messages)."""
BOUND_FACTOR = 1.25


def _row(values: tuple[object, ...]) -> str:
    return " | ".join(str(value) for value in values)


def print_tables(results: list[Result], requests: bool = False) -> None:
    """The promote table, the rollback table, the scaling bounds and (`requests`) each run's requests
    per namespace by verb and type."""
    print(
        _row(
            (
                "ns",
                "obj/ns",
                "workers",
                "promoted",
                "seconds",
                "pipeline s",
                "obj/s",
                "raw create/s",
                "ratio",
                "worker CPU s /1k obj",
                "worker / sim CPU",
                "file write CPU us",
                "redis MiB",
                "tasks/ns",
                "msgs/ns",
                "left",
                "status KiB",
                "worker RSS MiB",
                "CPU s (sim/workers/watcher/redis)",
                "API req/ns cp/member",
                "busiest s cp/member",
                "in flight cp/member",
            )
        )
    )
    for r in results:
        print(
            _row(
                (
                    r.namespaces,
                    r.objects_per_namespace,
                    r.workers,
                    r.objects_promoted,
                    r.promote_seconds,
                    r.pipeline_seconds,
                    r.promote_objects_per_s,
                    r.raw_creates_per_s,
                    r.ratio_to_limit,
                    r.worker_cpu_per_1000,
                    r.worker_to_simulator_cpu,
                    r.file_write_cpu_us,
                    r.redis_peak_mib,
                    r.tasks_per_namespace,
                    r.messages_per_namespace,
                    r.tasks_left_behind,
                    r.status_kib,
                    r.worker_peak_rss_mib,
                    "/".join(str(v) for v in r.cpu_seconds.values()),
                    "/".join(str(v["requests_per_namespace"]) for v in r.api.values()),
                    "/".join(str(v["busiest_second"]) for v in r.api.values()),
                    "/".join(str(v["most_in_flight"]) for v in r.api.values()),
                )
            )
        )
    undone = [r for r in results if r.rollback is not None]
    if undone:
        print("\nrollback of the same namespaces")
        print(
            _row(
                (
                    "ns",
                    "obj/ns",
                    "workers",
                    "phase",
                    "seconds",
                    "pipeline s",
                    "obj/s",
                    "raw delete/s",
                    "raw patch/s",
                    "ratio to raw delete",
                    "x promote obj/s",
                    "worker CPU s /1k obj",
                    "CPU s (sim/workers/watcher/redis)",
                    "API req/ns cp/member",
                )
            )
        )
        for r in undone:
            b = r.rollback
            assert b is not None
            print(
                _row(
                    (
                        r.namespaces,
                        r.objects_per_namespace,
                        r.workers,
                        b.phase,
                        b.seconds,
                        b.pipeline_seconds,
                        b.objects_per_s,
                        r.raw_deletes_per_s,
                        r.raw_patches_per_s,
                        b.ratio_to_limit,
                        b.ratio_to_promote,
                        b.worker_cpu_per_1000,
                        "/".join(str(v) for v in b.cpu_seconds.values()),
                        "/".join(str(v["requests_per_namespace"]) for v in b.api.values()),
                    )
                )
            )
    bounds = scaling_bounds(results)
    if bounds:
        print(f"\nmany small namespaces: T(20) <= {BOUND_FACTOR} x max(T(1), R(20) / raw request rate)")
        print(_row(("obj/ns", "workers", "T(20) s", "T(1) s", "R(20)", "R(20)/raw s", "bound s", "met")))
        for bound in bounds:
            print(_row(tuple(bound.values())))
    if requests:
        for r in results:
            for name, phase in (("promote", r.api), ("rollback", r.rollback.api if r.rollback else {})):
                for cluster, figures in phase.items():
                    kinds = ", ".join(f"{kind} {count}" for kind, count in figures["per_namespace"].items())
                    print(f"{r.namespaces}x{r.objects_per_namespace} {name} {cluster} per ns: {kinds}")


def scaling_bounds(results: list[Result]) -> list[dict[str, object]]:
    """For each run of 20 namespaces with a run of one of the same size and workers: both sides of
    T(20) <= 1.25 x max(T(1), R(20) / raw request rate), T in pipeline seconds."""
    bounds = []
    for many in results:
        if many.namespaces != 20:
            continue
        for one in results:
            if (one.namespaces, one.objects_per_namespace, one.workers) != (
                1,
                many.objects_per_namespace,
                many.workers,
            ):
                continue
            floor = many.api_requests / many.raw_creates_per_s
            bound = BOUND_FACTOR * max(one.pipeline_seconds, floor)
            bounds.append(
                {
                    "objects": many.objects_per_namespace,
                    "workers": many.workers,
                    "t20": many.pipeline_seconds,
                    "t1": one.pipeline_seconds,
                    "r20": round(many.api_requests),
                    "floor": round(floor, 2),
                    "bound": round(bound, 2),
                    "met": "yes" if many.pipeline_seconds <= bound else "no",
                }
            )
            break
    return bounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, nargs="+", default=[20])
    parser.add_argument("--objects", type=int, nargs="+", default=[20])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument(
        "--namespace-deletion-grace",
        type=float,
        default=5.0,
        help="seconds the simulated namespace controller waits before emptying a deleted namespace "
        "(as a real kube-controller-manager does; 0 empties it at once)",
    )
    parser.add_argument("--suite", action="store_true", help="run the README's matrix")
    parser.add_argument("--no-rollback", action="store_true", help="measure the promote only")
    parser.add_argument("--requests", action="store_true", help="print requests per namespace by verb")
    parser.add_argument("--qps", type=float, default=0.0, help="KPROMOTE_API_QPS for the workers")
    parser.add_argument("--max-in-flight", type=int, default=0, help="KPROMOTE_API_MAX_IN_FLIGHT")
    parser.add_argument("--redis", help="a Redis URL to use instead of a private one per run")
    parser.add_argument("--keep", action="store_true", help="keep each run's logs and backups")
    parser.add_argument("--profile", type=Path, help="sample the workers with py-spy, raw stacks to this dir")
    parser.add_argument("--json", type=Path, default=Path("bench/results/promote.json"))
    args = parser.parse_args()
    runs = (
        SUITE
        if args.suite
        else [
            {"namespaces": namespaces, "objects": objects, "workers": args.workers}
            for objects in args.objects
            for namespaces in args.namespaces
        ]
    )
    results = []
    for config in runs:
        with contextlib.ExitStack() as stack:
            url = args.redis or stack.enter_context(EmbeddedRedis()).url
            results.append(
                run_once(
                    concurrency=args.concurrency,
                    latency_ms=args.latency_ms,
                    namespace_deletion_grace_s=args.namespace_deletion_grace,
                    redis_url=url,
                    profile=args.profile,
                    keep=args.keep,
                    qps=args.qps,
                    max_in_flight=args.max_in_flight,
                    rollback=not args.no_rollback,
                    **config,
                )
            )
        print(json.dumps(_as_json(results[-1])), flush=True)
    print_tables(results, requests=args.requests)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"runs": [_as_json(r) for r in results], "bounds": scaling_bounds(results)}, indent=2)
    )


if __name__ == "__main__":
    main()
