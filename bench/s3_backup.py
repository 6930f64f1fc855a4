"""Backups in S3 against backups in a local folder, side by side: throughput and worker memory.

For each store, two fresh child processes act as two workers that share no folder: the backup worker
writes one part of N ConfigMap-like objects (the generator of bench/backup_archive.py), seals it (signed)
and writes the plan; then a second worker, with an empty cache of its own, checks the backup
(`require_intact`, which fetches every covered file and the archive from S3) and reads every object, as a
rollback would. Each child prints its timings and its peak RSS (VmHWM); the S3 server (moto's, over
HTTP on 127.0.0.1) runs in this parent process, so its memory is not counted. With the local store both
workers use the same folder: that is the store, as before stores existed.

    python bench/s3_backup.py [--objects 10000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backup_archive import KEY, LABELS, objects

from shared.backup import PLAN_NAME, BackupDir
from shared.backup.localstore import LocalStore
from shared.backup.s3store import S3Store
from shared.backup.store import BackupStore

BUCKET = "bench"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def peak_rss_mib() -> float:
    """This process's peak RSS since it started (VmHWM). Not `ru_maxrss`: Linux carries that over from the
    parent across fork and exec, and the parent here holds the S3 server with every backup in memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def open_store(kind: str, where: str) -> BackupStore:
    if kind == "local":
        return LocalStore(Path(where))
    return S3Store(BUCKET, "kpromote", endpoint_url=where, path_style=True)


def backup_of(store: BackupStore, count: int, cache: Path) -> BackupDir:
    located = BackupDir.of_run(store, "bench", "bench", f"n{count}", cache)
    return BackupDir(located.root, signing_key=KEY, store=located.store, key=located.key)


def write(store: BackupStore, count: int, cache: Path) -> dict[str, Any]:
    """The backup worker: write the part, seal, write the plan."""
    rss_start = peak_rss_mib()
    backup = backup_of(store, count, cache)
    started = time.perf_counter()
    backup.write_part("configmaps", objects(count))
    part_seconds = time.perf_counter() - started
    started = time.perf_counter()
    manifest = backup.seal(LABELS)
    backup.write_derived(PLAN_NAME, b'{"bench": true}')
    seal_seconds = time.perf_counter() - started
    if manifest.total_items != count:
        raise SystemExit(f"sealed {manifest.total_items} items, expected {count}")
    return {
        "write_per_s": count / (part_seconds + seal_seconds),
        "part_s": part_seconds,
        "seal_s": seal_seconds,
        "rss_start_mib": rss_start,
        "write_rss_mib": peak_rss_mib(),
    }


def read(store: BackupStore, count: int, cache: Path) -> dict[str, Any]:
    """Another worker with an empty cache: check the backup, then read every object."""
    backup = backup_of(store, count, cache)
    started = time.perf_counter()
    backup.require_intact()
    intact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    seen = sum(1 for _ in backup.items("configmaps"))
    items_seconds = time.perf_counter() - started
    if seen != count:
        raise SystemExit(f"read {seen} items, expected {count}")
    started = time.perf_counter()
    backup.require_intact()
    again_seconds = time.perf_counter() - started
    return {
        "first_intact_s": intact_seconds,
        "read_per_s": count / (intact_seconds + items_seconds),
        "intact_again_ms": again_seconds * 1000,
        "read_rss_mib": peak_rss_mib(),
    }


def child(role: str, kind: str, where: str, count: int, cache: Path) -> dict[str, Any]:
    store = open_store(kind, where)
    return write(store, count, cache) if role == "write" else read(store, count, cache)


def run_child(
    role: str, kind: str, where: str, count: int, cache: Path, env: dict[str, str]
) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", role, kind, where, str(cache), "--objects", str(count)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return dict(json.loads(result.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, help="where to put the local store and caches (default: /tmp)")
    parser.add_argument(
        "--child", nargs=4, metavar=("ROLE", "KIND", "WHERE", "CACHE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        role, kind, where, cache = args.child
        print(json.dumps(child(role, kind, where, args.objects, Path(cache))))
        return

    import logging
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.update(CREDENTIALS)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)]),
    }
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    rows = []
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(dir=args.dir) as directory:
            base = Path(directory)
            for kind, where in (("local", str(base / "local-store")), ("s3", endpoint)):
                written = run_child("write", kind, where, args.objects, base / f"{kind}-cache-a", env)
                read_back = run_child("read", kind, where, args.objects, base / f"{kind}-cache-b", env)
                rows.append({"store": kind, **written, **read_back})
    finally:
        server.stop()
    columns = [
        ("store", "store", "{}"),
        ("write_per_s", "write+seal obj/s", "{:,.0f}"),
        ("part_s", "part s", "{:.2f}"),
        ("seal_s", "seal s", "{:.2f}"),
        ("write_rss_mib", "writer peak RSS MiB", "{:.0f}"),
        ("first_intact_s", "1st intact s", "{:.2f}"),
        ("read_per_s", "intact+read obj/s", "{:,.0f}"),
        ("intact_again_ms", "intact again ms", "{:.1f}"),
        ("read_rss_mib", "reader peak RSS MiB", "{:.0f}"),
        ("rss_start_mib", "RSS after imports MiB", "{:.0f}"),
    ]
    print(f"{args.objects:,} objects, two workers sharing no folder (S3: moto over HTTP on 127.0.0.1)")
    print(" | ".join(title for _, title, _ in columns))
    for row in rows:
        print(" | ".join(form.format(row[key]).rjust(len(title)) for key, title, form in columns))


if __name__ == "__main__":
    main()
