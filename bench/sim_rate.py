"""How many requests per second one simulator process serves, so benchmarks know they measure our code.

Starts `kpromote sim` as a separate process pinned to one core (when `taskset` exists), then drives it
from this process with the official Kubernetes client over keep-alive connections: creates, gets,
lists and patches of small ConfigMaps, from N client threads. Prints a table and writes JSON.

    python bench/sim_rate.py [--requests 4000] [--threads 8] [--json bench/results/sim_rate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
            results = {
                op: measure(api, op, args.requests, args.threads)
                for op in ("create", "get", "patch", "list (limit 50)")
            }
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"kubesim request rate, one server process{' on core 0' if shutil.which('taskset') else ''}, "
        f"{args.threads} client threads, {args.requests} requests each, {os.cpu_count()} cores"
    )
    print(f"{'operation':<18}{'requests/s':>12}")
    for operation, rate in results.items():
        print(f"{operation:<18}{rate:>12.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"threads": args.threads, "requests": args.requests, "rates": results}, indent=2)
    )


if __name__ == "__main__":
    main()
