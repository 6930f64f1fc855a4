"""Issue #15 end to end: the pipeline with its backups in S3 (moto's server over HTTP, real boto3), two
worker processes that share no folder (each its own working directory and cache), and a rollback that
reads everything from the store after both workers' caches were wiped."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from kubernetes import client

from kubesim.seed import seed_namespace
from shared.backup import BackupDir
from shared.backup.s3store import S3Store
from tests.pipeline import test_ownership, test_rollback
from tests.pipeline.conftest import S3_CACHE_IDLE, S3Installation
from tests.pipeline.snapshots import diff, snapshot


def test_promote_then_rollback_from_the_store_alone(s3_installation: S3Installation, tmp_path: Path) -> None:
    installation = s3_installation.installation
    seeded = seed_namespace(installation.member_api, "s3-shop")
    before = snapshot(installation.member_api, "s3-shop")

    installation.apply("s3-promote", includedNamespaces=["s3-shop"])
    status = installation.wait_done("s3-promote")
    assert status["phase"] == "Completed", status
    [namespace] = status["namespaces"]
    run = status["runId"]
    assert namespace["backupLocation"] == f"{s3_installation.url}/s3-promote/s3-shop/{run}/backup.tar.gz"
    member = client.CoreV1Api(installation.member_api)
    assert {
        p.metadata.name: p.metadata.uid for p in member.list_namespaced_pod("s3-shop").items
    } == seeded.pods

    # The backup is in the bucket, and verifies from there in a cache of its own.
    store = S3Store(
        s3_installation.bucket, "kpromote", endpoint_url=s3_installation.server.endpoint_url, path_style=True
    )
    keys = {stored.key.rpartition(f"{run}/")[2] for stored in store.list_prefix(f"s3-promote/s3-shop/{run}/")}
    assert {"backup.tar.gz", "manifest.json", "plan.json", "items/pods.jsonl", "items/pods.idx"} <= keys
    reader = BackupDir.of_run(store, "s3-promote", "s3-shop", run, tmp_path / "reader-cache")
    report = BackupDir(reader.root, signing_key=None, store=store, key=reader.key).verify()
    assert report.ok, report.problems
    # No backup folder anywhere but the workers' own caches.
    assert not (installation.workdir / "backups").exists()
    assert all(cache.is_dir() for cache in s3_installation.caches), "both workers took part"

    for cache in s3_installation.caches:
        shutil.rmtree(cache, ignore_errors=True)  # the workers' sweeps may be removing folders meanwhile
    installation.request_rollback("s3-promote")
    status = installation.wait_done("s3-promote", phases=("RolledBack", "FailedRollback"))
    assert status["phase"] == "RolledBack", status
    assert diff(before, snapshot(installation.member_api, "s3-shop")) == []
    assert installation.link.member_deletions == []


def test_user_rollback_with_backups_in_s3(s3_installation: S3Installation) -> None:
    test_rollback.test_user_rollback_restores_the_member_exactly_and_spares_pre_existing_objects(
        s3_installation.installation
    )


def test_a_failed_rebuild_compensates_with_backups_in_s3(s3_installation: S3Installation) -> None:
    test_rollback.test_a_failed_rebuild_compensates_that_namespace_only(s3_installation.installation)


def test_rollback_from_the_s3_backup_alone_once_the_policy_is_gone(s3_installation: S3Installation) -> None:
    """`kpromote rollback --backup s3://…/backup.tar.gz`, the location the status gave, read from S3."""
    test_ownership.test_a_namespace_whose_policy_is_gone_is_rolled_back_from_its_backup_alone(
        s3_installation.installation
    )


def test_idle_working_copies_leave_the_workers_disks(s3_installation: S3Installation) -> None:
    """Each worker removes its copies of a run's backup once no task has used them for
    KPROMOTE_BACKUP_CACHE_IDLE seconds: a worker's disk does not fill one namespace after another."""
    installation = s3_installation.installation
    seed_namespace(installation.member_api, "s3-swept")
    installation.apply("s3-swept", includedNamespaces=["s3-swept"])
    status = installation.wait_done("s3-swept")
    assert status["phase"] == "Completed", status
    run = status["runId"]
    folders = [folder for cache in s3_installation.caches for folder in cache.glob("**/s3-swept/s3-swept")]
    assert folders, "the workers worked in copies of the backup (a sweep leaves the namespace's folder)"

    deadline = time.monotonic() + 10 * S3_CACHE_IDLE
    while any((folder / run).exists() for folder in folders):
        assert time.monotonic() < deadline, "working copies were kept past their idle time"
        time.sleep(0.2)
    store = S3Store(
        s3_installation.bucket, "kpromote", endpoint_url=s3_installation.server.endpoint_url, path_style=True
    )
    assert store.stat(f"s3-swept/s3-swept/{run}/backup.tar.gz") is not None, "the backup itself stays"
