"""Issue #15: one contract for where backups are kept, held by the local folder and by S3 alike.

The S3 store is tested against a real S3-protocol server over HTTP (moto's, started here) with the real
boto3 client. The same tests run on both stores: the store's own operations, then a whole backup written by
one worker and read, checked and tampered with by another that shares no folder with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from shared.backup import PLAN_NAME, BackupDir, BackupError, BackupTampered
from shared.backup.localstore import LocalStore
from shared.backup.s3store import S3Store
from shared.backup.store import BackupStore, StoredFile
from shared.backup.working_copy import sweep
from tests.s3_server import S3Server, s3_server

KEY = SecretStr("k3y-for-store-tests-" + "0123456789abcdef" * 2)
LABELS = {"policy": "promote-shop", "namespace": "shop", "run": "run-1", "cluster": "member1"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BackupStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server: S3Server = request.getfixturevalue("server")
    bucket = server.make_bucket(f"b-{os.urandom(4).hex()}")
    return S3Store(bucket, "backups/kpromote", endpoint_url=server.endpoint_url, path_style=True)


def configmap(name: str, payload: str = "v") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}"},
        "data": {"k": payload},
    }


def worker_copy(store: BackupStore, cache: Path) -> BackupDir:
    """The backup as one worker sees it, with its own cache folder."""
    backup = BackupDir.of_run(store, "promote-shop", "shop", "run-1", cache)
    return BackupDir(backup.root, signing_key=KEY, store=backup.store, key=backup.key)


def sealed(store: BackupStore, cache: Path) -> BackupDir:
    backup = worker_copy(store, cache)
    backup.write_part("configmaps", [configmap(f"c{i}") for i in range(50)])
    backup.write_part("secrets", [])
    backup.seal(LABELS)
    backup.write_derived(PLAN_NAME, b'{"plan": 1}')
    return backup


# ------------------------------------------------------------------------------------ the store itself
def test_a_file_put_is_listed_read_and_fetched_whole(store: BackupStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"x" * 3000)
    assert store.stat("p/n/r/a.jsonl") is None
    store.put_file("p/n/r/a.jsonl", source)
    store.put_file("p/n/r/items/b.idx", source)
    store.put_file("p/other/r/a.jsonl", source)
    found = store.stat("p/n/r/a.jsonl")
    assert isinstance(found, StoredFile) and found.size == 3000 and found.tag
    assert [stored.key for stored in store.list_prefix("p/n/")] == ["p/n/r/a.jsonl", "p/n/r/items/b.idx"]
    with store.open("p/n/r/a.jsonl") as stream:
        assert stream.read() == b"x" * 3000
    copy = tmp_path / "copy" / "a.jsonl"
    fetched = store.get_file("p/n/r/a.jsonl", copy)
    assert fetched is not None and copy.read_bytes() == b"x" * 3000
    assert abs(copy.stat().st_mtime - fetched.modified) < 1
    assert oct(copy.stat().st_mode & 0o777) == "0o600"


def test_a_missing_key_is_none_or_file_not_found(store: BackupStore, tmp_path: Path) -> None:
    assert store.get_file("nothing/here", tmp_path / "x") is None
    assert not (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError), store.open("nothing/here"):
        pass
    store.delete(["nothing/here"])


def test_a_rewrite_changes_the_tag_and_delete_removes(store: BackupStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"one")
    store.put_file("k/f", source)
    first = store.stat("k/f")
    time.sleep(0.01)
    source.write_bytes(b"three")
    store.put_file("k/f", source)
    second = store.stat("k/f")
    assert first is not None and second is not None and first.tag != second.tag and second.size == 5
    store.delete(["k/f"])
    assert store.stat("k/f") is None and list(store.list_prefix("k/")) == []


def test_a_large_file_goes_up_in_parts_and_comes_back_identical(
    store: BackupStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.backup.s3store.PART_SIZE", 5 << 20)
    source = tmp_path / "large"
    block = os.urandom(1 << 20)
    with source.open("wb") as out:
        for _ in range(12):
            out.write(block)
    store.put_file("big/archive", source)
    copy = tmp_path / "copy"
    assert store.get_file("big/archive", copy) is not None
    assert copy.read_bytes() == source.read_bytes()
    if isinstance(store, S3Store):
        assert store.stat("big/archive").tag.endswith('-3"'), "three parts of 5 MiB"  # type: ignore[union-attr]


def test_an_upload_killed_half_way_leaves_no_object(server: S3Server, tmp_path: Path) -> None:
    """A worker killed while it uploads an archive (SIGKILL: no abort sent) leaves nothing a reader can see
    at the key; the unfinished multipart upload is invisible until a lifecycle rule aborts it."""
    bucket = server.make_bucket("interrupted")
    source = tmp_path / "large"
    with source.open("wb") as out:
        out.write(os.urandom(40 << 20))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, shared.backup.s3store as s;"
            "s.PART_SIZE = 5 << 20; s.PARALLEL_PARTS = 1;"
            f"s.S3Store({bucket!r}, 'p', endpoint_url={server.endpoint_url!r}, path_style=True)"
            f".put_file('run/backup.tar.gz', __import__('pathlib').Path({str(source)!r}))",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    client = server.client()
    try:
        deadline = time.monotonic() + 60
        while not client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            assert child.poll() is None and time.monotonic() < deadline, "the upload never started"
            time.sleep(0.02)
        upload = client.list_multipart_uploads(Bucket=bucket)["Uploads"][0]
        where = {"Bucket": bucket, "Key": upload["Key"], "UploadId": upload["UploadId"]}
        while not client.list_parts(**where).get("Parts"):
            assert child.poll() is None and time.monotonic() < deadline, "no part went up"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = S3Store(bucket, "p", endpoint_url=server.endpoint_url, path_style=True)
    assert store.stat("run/backup.tar.gz") is None
    assert list(store.list_prefix("")) == []


# ------------------------------------------------------------------ a backup over the store, two workers
def test_a_backup_written_by_one_worker_is_read_by_another_sharing_no_folder(
    store: BackupStore, tmp_path: Path
) -> None:
    writer = sealed(store, tmp_path / "worker-a")
    reader = worker_copy(store, tmp_path / "worker-b")
    if isinstance(store, LocalStore):
        assert reader.root == writer.root, "a local store is its own working folder: nothing is copied"
    else:
        assert not (tmp_path / "worker-b").exists()
        assert reader.location == store.url("promote-shop/shop/run-1/backup.tar.gz")
        assert reader.location.startswith("s3://")
    reader.require_intact()
    manifest = reader.manifest()
    assert manifest is not None and manifest.total_items == 50 and manifest.counts["secrets"] == 0
    assert [obj["metadata"]["name"] for obj in reader.items("configmaps", 10, 3)] == ["c18", "c19", "c2"]
    assert reader.count("configmaps") == 50 and reader.count("secrets") == 0
    assert reader.read_derived(PLAN_NAME) == b'{"plan": 1}'
    report = reader.verify()
    assert report.ok and report.signed, report.problems
    assert reader.parts() == ["configmaps", "secrets"]


def test_a_wiped_cache_is_fetched_again_and_a_resealed_backup_is_the_same(
    store: BackupStore, tmp_path: Path
) -> None:
    writer = sealed(store, tmp_path / "worker-a")
    first = writer.manifest()
    reader = worker_copy(store, tmp_path / "worker-b")
    reader.require_intact()
    if isinstance(store, S3Store):
        for path in sorted(reader.root.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
    again = worker_copy(store, tmp_path / "worker-b")
    again.require_intact()
    assert again.seal(LABELS) == first, "an intact seal is returned as it is"
    assert list(again.items("configmaps", 49)) == [configmap("c9")]


def test_a_swept_working_copy_is_fetched_again_and_one_in_use_is_kept(
    store: BackupStore, tmp_path: Path
) -> None:
    writer = sealed(store, tmp_path / "worker-a")
    cache = tmp_path / "worker-b"
    reader = worker_copy(store, cache)
    with reader.held():
        reader.require_intact()
        assert sweep(BackupDir.working_copies(store, cache), idle_seconds=0) == []
        assert list(reader.items("configmaps", 49)) == [configmap("c9")]
    swept = sweep(BackupDir.working_copies(store, cache), idle_seconds=0)
    if isinstance(store, LocalStore):
        assert swept == [] and writer.root.is_dir(), "a store that is a folder has no working copies"
    else:
        assert swept == [reader.root] and not reader.root.exists()
    again = worker_copy(store, cache)
    with again.held():
        again.require_intact()
        assert list(again.items("configmaps", 49)) == [configmap("c9")]


def test_a_late_part_after_the_seal_changes_nothing(store: BackupStore, tmp_path: Path) -> None:
    sealed(store, tmp_path / "worker-a")
    late = worker_copy(store, tmp_path / "worker-c")
    assert late.write_part("configmaps", iter([configmap("late")])) == 50
    late.require_intact()
    assert late.count("configmaps") == 50


def test_a_file_edited_in_the_store_is_refused_by_name_whatever_the_cache_holds(
    store: BackupStore, tmp_path: Path
) -> None:
    sealed(store, tmp_path / "worker-a")
    reader = worker_copy(store, tmp_path / "worker-b")
    reader.require_intact()
    edited = tmp_path / "edited"
    with store.open("promote-shop/shop/run-1/items/configmaps.jsonl") as stream:
        edited.write_bytes(stream.read().replace(b'"k":"v"', b'"k":"x"', 1))
    store.put_file("promote-shop/shop/run-1/items/configmaps.jsonl", edited)
    fresh = worker_copy(store, tmp_path / "worker-d")
    with pytest.raises(BackupTampered, match=r"changed items/configmaps\.jsonl"):
        fresh.require_intact()
    assert any("items/configmaps.jsonl" in problem for problem in fresh.verify().problems)


def test_the_plan_is_derived_once_and_other_bytes_are_refused(store: BackupStore, tmp_path: Path) -> None:
    sealed(store, tmp_path / "worker-a")
    other = worker_copy(store, tmp_path / "worker-b")
    other.write_derived(PLAN_NAME, b'{"plan": 1}')  # the same bytes again: nothing changes
    with pytest.raises(BackupError, match="sealed with other content"):
        other.write_derived(PLAN_NAME, b'{"plan": 2}')
    assert worker_copy(store, tmp_path / "worker-e").read_derived(PLAN_NAME) == b'{"plan": 1}'


def test_nothing_is_sealed_until_the_manifest_is_stored(store: BackupStore, tmp_path: Path) -> None:
    backup = worker_copy(store, tmp_path / "worker-a")
    backup.write_part("configmaps", [configmap("a")])
    assert backup.manifest() is None
    with pytest.raises(BackupError, match="is not sealed"):
        backup.count("configmaps")
    assert worker_copy(store, tmp_path / "worker-b").read_derived(PLAN_NAME) is None


def test_a_seal_whose_archive_upload_fails_leaves_no_archive_visible_and_seals_again(
    server: S3Server, tmp_path: Path
) -> None:
    bucket = server.make_bucket("failing-upload")
    store = S3Store(bucket, "", endpoint_url=server.endpoint_url, path_style=True)

    class CutOff(S3Store):
        def put_file(self, key: str, path: Path) -> None:
            if key.endswith("backup.tar.gz"):
                raise ConnectionError("connection reset while uploading")
            super().put_file(key, path)

    failing = CutOff(bucket, "", endpoint_url=server.endpoint_url, path_style=True)
    backup = worker_copy(failing, tmp_path / "worker-a")
    backup.write_part("configmaps", [configmap("a"), configmap("b")])
    with pytest.raises(ConnectionError):
        backup.seal(LABELS)
    assert store.stat("promote-shop/shop/run-1/backup.tar.gz") is None
    assert store.stat("promote-shop/shop/run-1/manifest.json") is None
    assert worker_copy(store, tmp_path / "worker-b").manifest() is None
    retried = worker_copy(store, tmp_path / "worker-b")
    assert retried.seal(LABELS).total_items == 2
    retried.require_intact()
