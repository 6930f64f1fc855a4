"""What a worker pays when its threads all ask at once for a large namespace's backup it has not read yet:
the integrity check and the plan, as the rebuild batches of a 10,000-object namespace do when they land
together on a worker that did not run the backup.

Seals one backup of N ConfigMaps, then for each thread count measures, in a fresh process (cold caches),
the CPU seconds and the peak memory above the process's start while T threads call `require_intact` and
load the plan together. Not a test: nothing is asserted.

    python bench/cold_caches.py --objects 10000 --threads 1 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydantic import SecretStr

from shared.backup import BackupDir
from shared.kinds import Context
from shared.steps import recorded_plan

KEY = SecretStr("bench-signing-key-" + "0123456789abcdef" * 2)
CONTEXT = Context(cluster="member1", policy="bench", run="run-1")


def _configmap(index: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"settings-{index:06d}",
            "namespace": "bench",
            "uid": f"uid-{index}",
            "resourceVersion": str(index + 1),
            "labels": {"app": "bench"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "data": {"key": "v" * 200},
    }


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def seal(root: Path, objects: int) -> None:
    backup = BackupDir(root, signing_key=KEY)
    backup.write_part("configmaps", (_configmap(index) for index in range(objects)))
    backup.seal({"policy": "bench", "namespace": "bench", "run": "run-1", "cluster": "member1"})
    recorded_plan.record(backup, CONTEXT)


def measure(root: Path, threads: int) -> dict[str, float]:
    """In this (fresh) process: T threads check and load the backup at once."""
    backup = BackupDir(root, signing_key=KEY)
    start = threading.Barrier(threads)

    def ask() -> None:
        start.wait()
        backup.require_intact()
        recorded_plan.load(backup, CONTEXT)

    before, cpu = _kib("VmRSS:"), time.process_time()
    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "peak_mib": round((_kib("VmHWM:") - before) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.threads[0])))
        return
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "backup"
        seal(root, args.objects)
        print("objects | threads | CPU s | peak MiB above start")
        for threads in args.threads:
            answer = subprocess.run(
                [sys.executable, __file__, "--measure", str(root), "--threads", str(threads)],
                check=True,
                capture_output=True,
                text=True,
            )
            figures = json.loads(answer.stdout)
            print(f"{args.objects} | {threads} | {figures['cpu_seconds']} | {figures['peak_mib']}")


if __name__ == "__main__":
    main()
