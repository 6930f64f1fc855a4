"""How many requests per second one simulator process serves, so benchmarks know they measure our code.

Starts `kpromote sim` as a separate process pinned to one core (when `taskset` exists), then drives it
two ways: with the official Kubernetes client (N threads, keep-alive) — the rate our workers can reach
— and with a light asyncio HTTP client (64 requests in flight), which shows the server's own ceiling.
Creates, gets, patches and lists of small ConfigMaps. Prints a table and writes JSON.

    python bench/sim_rate.py [--requests 4000] [--threads 8] [--json bench/results/sim_rate.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from kubernetes import client, config

from kubesim.testing import wait_until


def start_simulator(kubeconfig: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "services", "sim", "--kubeconfig-out", str(kubeconfig)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(kubeconfig.exists, timeout=30, what="the simulator's kubeconfig")
    return process


def measure(api: client.ApiClient, operation: str, count: int, threads: int) -> float:
    core = client.CoreV1Api(api)

    def one(index: int) -> None:
        name = f"cm-{index}"
        if operation == "create":
            core.create_namespaced_config_map("bench", {"metadata": {"name": name}, "data": {"k": "v"}})
        elif operation == "get":
            core.read_namespaced_config_map(name, "bench")
        elif operation == "patch":
            core.patch_namespaced_config_map(name, "bench", {"data": {"k": str(index)}})
        elif operation == "list (limit 50)":
            core.list_namespaced_config_map("bench", limit=50)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started)


async def measure_raw(url: str, operation: str, count: int, in_flight: int = 64) -> float:
    """The server's ceiling: the same requests from a client that costs almost nothing per call."""
    limit = asyncio.Semaphore(in_flight)
    base = f"{url}/api/v1/namespaces/bench/configmaps"
    async with aiohttp.ClientSession() as session:

        async def one(index: int) -> None:
            async with limit:
                if operation == "create":
                    call = session.post(base, json={"metadata": {"name": f"raw-{index}"}, "data": {"k": "v"}})
                elif operation == "get":
                    call = session.get(f"{base}/raw-{index}")
                elif operation == "patch":
                    call = session.patch(
                        f"{base}/raw-{index}",
                        data=json.dumps({"data": {"k": str(index)}}),
                        headers={"Content-Type": "application/merge-patch+json"},
                    )
                else:
                    call = session.get(base, params={"limit": "50"})
                async with call as response:
                    await response.read()
                    assert response.status < 300, await response.text()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", type=Path, default=Path("bench/results/sim_rate.json"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kubesim-bench-"))
    process = start_simulator(workdir / "kubeconfig")
    try:
        configuration = client.Configuration()
        config.load_kube_config(str(workdir / "kubeconfig"), client_configuration=configuration)
        configuration.connection_pool_maxsize = args.threads
        with client.ApiClient(configuration) as api:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench"}})
            operations = ("create", "get", "patch", "list (limit 50)")
            results = {op: measure(api, op, args.requests, args.threads) for op in operations}
            raw = {op: asyncio.run(measure_raw(configuration.host, op, args.requests)) for op in operations}
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"kubesim request rate, one server process{' on core 0' if shutil.which('taskset') else ''}, "
        f"{args.threads} client threads, {args.requests} requests each, {os.cpu_count()} cores"
    )
    print(f"{'operation':<18}{'official client/s':>20}{'server ceiling/s':>20}")
    for operation, rate in results.items():
        print(f"{operation:<18}{rate:>20.0f}{raw[operation]:>20.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "threads": args.threads,
        "requests": args.requests,
        "official_client": results,
        "server_ceiling": raw,
    }
    args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
