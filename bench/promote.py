"""Promote throughput against the API's own limit, with the real services, in one run.

Starts a simulated Kosmos pair in its own process (`kpromote sim-pair`, with per-request latency), a
private Redis for the run (so its memory and command counts are the run's own; `--redis URL` to use
another), the watcher and N worker processes, seeds the member, and measures:

* the **limit**: raw creates/s of ConfigMaps into the same control plane, with the official client's
  connection pool at the workers' total concurrency (the best of three rounds of 1,000);
* **promote throughput**: objects rebuilt per second from `apply` to `Completed` in the policy's status,
  and its ratio to the limit (every promoted object costs at least two writes, so 0.5 is the ceiling);
* the **pipeline time**: from `apply` to the last namespace's final progress write by a worker, i.e.
  without the watcher's once-a-second status refresh;
* Redis peak memory, Celery tasks and task messages per namespace (messages = LPUSHes on the broker,
  including chord bodies and replaced canvases), each worker's peak RSS, and the CPU seconds each process
  (simulators, workers, watcher, Redis) spent during the promote: on a small machine they share the
  cores, so this says where the time went.

With `--profile DIR`, py-spy samples every worker during the promote and the hottest functions are
printed (the raw stacks stay in DIR for flame graphs).

    python bench/promote.py --namespaces 20 --objects 20 --workers 2          # one run
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
import yaml
from kubernetes import client

from kubesim.testing import SimAdmin, api_client, busiest_window, most_in_flight, wait_until
from services.celery_app import QUEUES, create_app
from shared.embedded_redis import EmbeddedRedis
from shared.kube import Kube
from shared.kube.client import USER_AGENT
from shared.progress import Progress

CRD = Path(__file__).resolve().parents[1] / "shared" / "crds" / "promotepolicies.kosmos.io.yaml"
INSTALL_NAMESPACE = "kosmos-promote"
"""Where the workers keep namespace claims (the default KPROMOTE_NAMESPACE), as deploy/ creates it."""


@dataclass
class Result:
    namespaces: int
    objects_per_namespace: int
    workers: int
    concurrency: int
    latency_ms: float
    objects_promoted: int
    promote_seconds: float
    pipeline_seconds: float
    promote_objects_per_s: float
    raw_creates_per_s: float
    ratio_to_limit: float
    redis_peak_mib: float
    tasks_per_namespace: float
    messages_per_namespace: float
    tasks_left_behind: int
    status_kib: float
    """Size of the policy's final status as JSON: etcd refuses objects over 1.5 MiB."""
    """Messages still queued or delivered but unacknowledged once the policy is Completed (a moment
    allowed for the last acknowledgement)."""
    worker_peak_rss_mib: list[float]
    cpu_seconds: dict[str, float]
    api: dict[str, dict[str, float]]
    """Per cluster, the workers' requests as the simulated server logged them: per namespace, the busiest
    second, the most in flight at once (to check `--qps` and `--max-in-flight`)."""


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
"""The limit is the best of three rounds of 1,000 creates: one round varied by ±15 % between runs."""


def _raw_create_rate(control_plane: Kube, total: int, threads: int) -> float:
    namespace = f"limit-{uuid.uuid4().hex[:6]}"
    control_plane.create(control_plane.discovery.resolve("namespaces"), {"metadata": {"name": namespace}})
    configmaps = control_plane.discovery.resolve("configmaps")

    def create(index: int) -> None:
        control_plane.create(
            configmaps, {"metadata": {"name": f"cm-{index}"}, "data": {"k": "v" * 200}}, namespace
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(total)))
    return total / (time.perf_counter() - started)


def _served(kube: Kube, group_resource: str) -> Any:
    kube.discovery.refresh()
    return kube.discovery.by_group_resource(group_resource)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def _api_figures(admin: SimAdmin, namespaces: int) -> dict[str, float]:
    """The promote's own requests: the workers' and the watcher's API client (kopf's watch and status
    patches, and this script's polling, have other User-Agents)."""
    log = [entry for entry in admin.requests() if entry["user_agent"] == USER_AGENT]
    return {
        "requests_per_namespace": round(len(log) / namespaces, 1),
        "busiest_second": busiest_window(log, 1.0),
        "most_in_flight": most_in_flight(log),
    }


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_once(
    namespaces: int,
    objects: int,
    workers: int,
    concurrency: int,
    latency_ms: float,
    redis_url: str,
    profile: Path | None = None,
    keep: bool = False,
    qps: float = 0.0,
    max_in_flight: int = 0,
) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="kpromote-bench-"))
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    sims = _spawn(
        ["sim-pair", "--dir", str(workdir), "--latency-ms", str(latency_ms)],
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
        raw_rate = max(_raw_create_rate(control_plane, LIMIT_OBJECTS, threads) for _ in range(LIMIT_ROUNDS))
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
        policies = wait_until(lambda: _served(control_plane, "promotepolicies.kosmos.io"), what="the CRD")
        roles = {
            "simulators": [sims.pid],
            "workers": [p.pid for p in processes[:workers]],
            "watcher": [processes[-1].pid],
        }
        cpu_before = {role: sum(map(_cpu_seconds, pids)) for role, pids in roles.items()}
        cpu_before["redis"] = _redis_cpu_seconds(redis_client)
        admins = {"control-plane": SimAdmin(control_plane.url), "member": SimAdmin(member.url)}
        for admin in admins.values():
            admin.clear_requests()
        profilers = _start_profilers(roles["workers"], profile) if profile else []
        started, applied_at = time.perf_counter(), time.time()
        control_plane.create(
            policies,
            {
                "apiVersion": "kosmos.io/v1alpha1",
                "kind": "PromotePolicy",
                "metadata": {"name": "bench"},
                "spec": {"clusterName": "member1", "includedNamespaces": names},
            },
        )

        # Polled with the official client, whose User-Agent keeps these reads out of the promote's figures.
        observer = client.CustomObjectsApi(api_client(control_plane.url))

        def finished() -> dict[str, Any] | None:
            policy = observer.get_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", "bench")
            status = policy.get("status") or {}
            return status if status.get("phase") in ("Completed", "PartiallyFailed", "Failed") else None

        # A policy of many namespaces has a status of hundreds of KB: polling it fast would load the
        # simulated control plane that the promote is measured on.
        poll = 0.2 if namespaces <= 50 else 1.0
        status = wait_until(finished, timeout=3600, interval=poll, what="the promote")
        elapsed = time.perf_counter() - started
        progress = Progress(redis_client, "bench", status["runId"])
        last_write = max(reading.updated or 0.0 for reading in progress.read(names))
        pipeline = last_write - applied_at
        commands = redis_client.info("commandstats")
        cpu = {role: sum(map(_cpu_seconds, pids)) - cpu_before[role] for role, pids in roles.items()}
        cpu["redis"] = _redis_cpu_seconds(redis_client) - cpu_before["redis"]
        api = {cluster: _api_figures(admin, namespaces) for cluster, admin in admins.items()}
        if profile:
            _stop_profilers(profilers, profile)
        promoted = sum(ns["counts"]["rebuilt"] for ns in status["namespaces"])
        left = _left_behind(redis_client, prefix)
        stats = app.control.inspect(timeout=2).stats() or {}
        tasks = sum(sum(worker.get("total", {}).values()) for worker in stats.values())
        info = redis_client.info("memory")
        rss = [_peak_rss_mib(p.pid) for p in processes[:workers]]
        if status["phase"] != "Completed":
            print(f"warning: the promote ended {status['phase']}: {status.get('message')}", file=sys.stderr)
        return Result(
            namespaces,
            objects,
            workers,
            concurrency,
            latency_ms,
            promoted,
            round(elapsed, 2),
            round(pipeline, 2),
            round(promoted / elapsed, 1),
            round(raw_rate, 1),
            round(promoted / elapsed / raw_rate, 3),
            round(info["used_memory_peak"] / 2**20, 1),
            round(tasks / namespaces, 1),
            round(commands.get("cmdstat_lpush", {}).get("calls", 0) / namespaces, 1),
            left,
            round(len(json.dumps(status)) / 1024, 1),
            [round(r, 1) for r in rss],
            {role: round(seconds, 2) for role, seconds in cpu.items()},
            api,
        )
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
    {"namespaces": 20, "objects": 20, "workers": 1},
    {"namespaces": 20, "objects": 20, "workers": 2},
    {"namespaces": 20, "objects": 20, "workers": 4},
    {"namespaces": 1, "objects": 200, "workers": 2},
    {"namespaces": 20, "objects": 200, "workers": 1},
    {"namespaces": 20, "objects": 200, "workers": 2},
    {"namespaces": 20, "objects": 200, "workers": 4},
    {"namespaces": 1, "objects": 10_000, "workers": 2},
    {"namespaces": 1000, "objects": 20, "workers": 4},
]
"""The README's table: 1 vs 20 namespaces of two sizes, 1 vs 2 vs 4 workers, one namespace of 10,000
objects (worker memory) and 1,000 namespaces (Redis memory, messages)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--suite", action="store_true", help="run the README's matrix")
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
        else [{"namespaces": args.namespaces, "objects": args.objects, "workers": args.workers}]
    )
    results = []
    for config in runs:
        with contextlib.ExitStack() as stack:
            url = args.redis or stack.enter_context(EmbeddedRedis()).url
            results.append(
                run_once(
                    concurrency=args.concurrency,
                    latency_ms=args.latency_ms,
                    redis_url=url,
                    profile=args.profile,
                    keep=args.keep,
                    qps=args.qps,
                    max_in_flight=args.max_in_flight,
                    **config,
                )
            )
        print(json.dumps(asdict(results[-1])), flush=True)
    header = (
        "ns",
        "obj/ns",
        "workers",
        "promoted",
        "seconds",
        "pipeline s",
        "obj/s",
        "limit obj/s",
        "ratio",
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
    print(" | ".join(header))
    for r in results:
        print(
            " | ".join(
                str(v)
                for v in (
                    r.namespaces,
                    r.objects_per_namespace,
                    r.workers,
                    r.objects_promoted,
                    r.promote_seconds,
                    r.pipeline_seconds,
                    r.promote_objects_per_s,
                    r.raw_creates_per_s,
                    r.ratio_to_limit,
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
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
