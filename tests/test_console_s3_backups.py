"""Issue #15: `kpromote backups list/show/verify` (and prune's choice of runs) against backups kept in S3,
served by moto over HTTP and read with the real boto3 client; a bad KPROMOTE_BACKUP_URL stops a process
in one line."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from services.cli import app
from services.console import backups
from shared.backup import BackupDir
from shared.backup.s3store import S3Store
from shared.backup.working_copy import IN_USE, held
from tests.s3_server import S3Server, s3_server
from tests.test_settings_validation import assert_refused, kpromote

KEY = SecretStr("k3y-for-console-s3-tests-" + "0123456789abcdef" * 2)


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


@pytest.fixture
def bucket(server: S3Server, tmp_path: Path) -> tuple[S3Store, dict[str, str]]:
    """A bucket holding one sealed, signed run and one unsealed one, and the environment naming it."""
    name = server.make_bucket(f"console-{os.urandom(4).hex()}")
    store = S3Store(name, "team", endpoint_url=server.endpoint_url, path_style=True)
    for run, seal in (("r1", True), ("r2", False)):
        backup = BackupDir.of_run(store, "p", "shop", run, tmp_path / "writer")
        backup = BackupDir(backup.root, signing_key=KEY, store=store, key=backup.key)
        backup.write_part(
            "configmaps", [{"metadata": {"name": f"cm-{i}", "namespace": "shop"}} for i in range(3)]
        )
        if seal:
            backup.seal({"policy": "p"})
    env = {
        **server.env(f"s3://{name}/team"),
        "KPROMOTE_BACKUP_CACHE_DIR": str(tmp_path / "console-cache"),
        "KPROMOTE_BACKUP_SIGNING_KEY": KEY.get_secret_value(),
    }
    return store, env


def test_list_shows_sealed_and_unsealed_runs_from_the_bucket(bucket: tuple[S3Store, dict[str, str]]) -> None:
    store, env = bucket
    result = CliRunner().invoke(app, ["backups", "list", "-o", "json"], env=env)
    assert result.exit_code == 0, result.output
    runs = {run["run"]: run for run in json.loads(result.output)}
    assert runs["r1"]["phase"] == "Completed" and runs["r1"]["items"] == 3
    assert runs["r1"]["path"] == store.url("p/shop/r1")
    assert runs["r2"]["phase"] == "Incomplete" and runs["r2"]["items"] == 3


def test_show_streams_the_archive_and_verify_checks_every_file(
    bucket: tuple[S3Store, dict[str, str]], tmp_path: Path
) -> None:
    store, env = bucket
    runner = CliRunner()
    shown = runner.invoke(app, ["backups", "show", "p/shop"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "configmaps\tshop/cm-2" in shown.output
    verified = runner.invoke(app, ["backups", "verify", "p/shop/r1"], env=env)
    assert verified.exit_code == 0, verified.output
    assert "OK, 3 item(s)" in verified.output and "signature valid" in verified.output
    by_url = runner.invoke(app, ["backups", "verify", store.url("p/shop/r1/backup.tar.gz")], env=env)
    assert by_url.exit_code == 0, by_url.output

    edited = tmp_path / "edited"
    with store.open("p/shop/r1/items/configmaps.jsonl") as stream:
        edited.write_bytes(stream.read().replace(b"cm-1", b"cm-9"))
    store.put_file("p/shop/r1/items/configmaps.jsonl", edited)
    tampered = runner.invoke(app, ["backups", "verify", "p/shop/r1"], env=env)
    assert tampered.exit_code == 1, tampered.output
    assert "changed items/configmaps.jsonl" in tampered.output


def test_verify_removes_the_cache_s_idle_working_copies_and_keeps_its_own(
    bucket: tuple[S3Store, dict[str, str]], tmp_path: Path
) -> None:
    """A command reading through the cache tidies it as a worker's sweeper would."""
    store, env = bucket
    copies = BackupDir.working_copies(store, tmp_path / "console-cache")
    stale = copies / "p" / "shop" / "an-old-run"
    with held(stale):
        (stale / "manifest.json").write_text("{}")
    long_ago = time.time() - 3600
    os.utime(stale / IN_USE, (long_ago, long_ago))

    verified = CliRunner().invoke(app, ["backups", "verify", "p/shop/r1"], env=env)
    assert verified.exit_code == 0, verified.output
    assert not stale.exists(), "idle for an hour: removed"
    assert (copies / "p" / "shop" / "r1" / "manifest.json").exists(), "the copy just used stays"


def test_an_unsealed_or_unknown_run_is_a_usage_error(bucket: tuple[S3Store, dict[str, str]]) -> None:
    _, env = bucket
    runner = CliRunner()
    assert runner.invoke(app, ["backups", "verify", "p/shop/r2"], env=env).exit_code == 2
    assert runner.invoke(app, ["backups", "show", "p/other"], env=env).exit_code == 2


def test_prune_sees_each_stored_run_with_its_age_and_size(bucket: tuple[S3Store, dict[str, str]]) -> None:
    store, _ = bucket
    folders = backups.stored_folders(backups.stored_runs(store))
    assert [folder.path.as_posix() for folder in folders] == ["p/shop/r1", "p/shop/r2"]
    decided = backups.decide(folders, now=folders[0].changed + 10, older_than=5, live_runs={}, claimed={})
    assert all(decision.remove for decision in decided)
    store.delete([stored.key for stored in backups.stored_runs(store)[("p", "shop", "r2")]])
    assert [folder.path.name for folder in backups.stored_folders(backups.stored_runs(store))] == ["r1"]


@pytest.mark.parametrize("url", ["gs://bucket/backups", "s3://No_Such_Bucket"])
def test_a_bad_backup_url_stops_the_worker_in_one_line(tmp_path: Path, url: str) -> None:
    assert_refused(
        kpromote(tmp_path, "worker", "-Q", "backup", KPROMOTE_BACKUP_URL=url),
        "KPROMOTE_BACKUP_URL",
        repr(url),
    )
