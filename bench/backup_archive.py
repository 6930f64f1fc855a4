"""How fast one namespace is backed up, how big the archive is, and how much memory it takes.

For each size, a fresh child process (so peak RSS is that size's alone) writes one part of N ConfigMap-like
objects of about 2 KB (a third random base64 like Secret data, the rest labels, annotations and
managedFields, which compress well), seals it (signing the manifest with a key) and verifies the archive,
then times `require_intact`, the check before each rollback and rebuild batch: once when it hashes every
covered file, once more when the files' versions are cached. Objects are generated on the fly,
as a paged LIST would deliver them; generating them alone is timed too, so it can be told apart from
write_part. Peak RSS is `ru_maxrss` of the child, next to its RSS after imports.

    python bench/backup_archive.py [--objects 10000 50000] [--dir /path/on/the/volume]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shared.backup import BackupDir, backup_root, verify_archive
from shared.backup.integrity import SETTLED_NS

LABELS = {"policy": "bench", "namespace": "bench", "cluster": "member1"}
KEY = SecretStr("bench-signing-key-" + "0" * 46)


def objects(count: int) -> Iterator[dict[str, Any]]:
    generator = random.Random(count)
    for index in range(count):
        name = f"config-{index:07d}"
        yield {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": "bench",
                "uid": f"{generator.getrandbits(128):032x}",
                "resourceVersion": str(1_000_000 + index),
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {
                    "app.kubernetes.io/name": "shop",
                    "app.kubernetes.io/part-of": "bench",
                    "tier": "web",
                },
                "annotations": {"example.com/owner": "team-shop", "example.com/revision": str(index % 17)},
                "managedFields": [
                    {
                        "manager": "kubectl-client-side-apply",
                        "operation": "Update",
                        "apiVersion": "v1",
                        "time": "2026-01-01T00:00:00Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {
                            "f:data": {"f:config.yaml": {}, "f:token": {}},
                            "f:metadata": {
                                "f:labels": {f"f:{key}": {} for key in ("app", "part-of", "tier")}
                            },
                        },
                    }
                ],
            },
            "data": {
                "token": base64.b64encode(generator.randbytes(480)).decode(),
                "config.yaml": "".join(f"key{line}: value-{line}-{index % 5}\n" for line in range(40)),
            },
        }


def peak_rss_mib() -> float:
    """ru_maxrss is in KiB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(count: int, directory: Path) -> dict[str, Any]:
    """One size, in this process: the caller starts a fresh process per size."""
    rss_after_imports = peak_rss_mib()
    started = time.perf_counter()
    for _ in objects(count):
        pass
    generate_seconds = time.perf_counter() - started

    backup = BackupDir(backup_root(directory, "bench", "bench", f"n{count}"), signing_key=KEY)
    started = time.perf_counter()
    backup.write_part("configmaps", objects(count))
    write_seconds = time.perf_counter() - started
    started = time.perf_counter()
    manifest = backup.seal(LABELS)
    seal_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = verify_archive(backup.archive_path)
    verify_seconds = time.perf_counter() - started
    if not report.ok or manifest.total_items != count:
        raise SystemExit(f"bad archive: {report.problems[:3]}, {manifest.total_items} items")
    started = time.perf_counter()
    backup.require_intact()
    intact_seconds = time.perf_counter() - started
    time.sleep(SETTLED_NS / 1e9 + 0.1)  # files written within the last second are never cached
    backup.require_intact()
    started = time.perf_counter()
    backup.require_intact()
    intact_cached_seconds = time.perf_counter() - started
    raw_bytes = (backup.root / "items" / "configmaps.jsonl").stat().st_size - count
    return {
        "objects": count,
        "avg_object_bytes": raw_bytes / count,
        "generate_per_s": count / generate_seconds,
        "write_part_per_s": count / write_seconds,
        "seal_per_s": count / seal_seconds,
        "write_part_and_seal_per_s": count / (write_seconds + seal_seconds),
        "verify_per_s": count / verify_seconds,
        "intact_ms": intact_seconds * 1000,
        "intact_cached_ms": intact_cached_seconds * 1000,
        "archive_mib": backup.archive_path.stat().st_size / 2**20,
        "raw_json_mib": raw_bytes / 2**20,
        "rss_after_imports_mib": rss_after_imports,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_one(args.objects[0], args.dir)))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        results = [
            json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--child", "--objects", str(count), "--dir", directory],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            for count in args.objects
        ]
    columns = [
        ("objects", "objects", "{:,}"),
        ("avg_object_bytes", "B/object", "{:,.0f}"),
        ("generate_per_s", "generate/s", "{:,.0f}"),
        ("write_part_per_s", "write_part/s", "{:,.0f}"),
        ("seal_per_s", "seal/s", "{:,.0f}"),
        ("write_part_and_seal_per_s", "write+seal/s", "{:,.0f}"),
        ("verify_per_s", "verify/s", "{:,.0f}"),
        ("intact_ms", "intact ms", "{:.1f}"),
        ("intact_cached_ms", "cached ms", "{:.2f}"),
        ("raw_json_mib", "raw MiB", "{:.1f}"),
        ("archive_mib", "archive MiB", "{:.1f}"),
        ("rss_after_imports_mib", "RSS start MiB", "{:.0f}"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ]
    print(" | ".join(title for _, title, _ in columns))
    for result in results:
        print(" | ".join(form.format(result[key]).rjust(len(title)) for key, title, form in columns))


if __name__ == "__main__":
    main()
