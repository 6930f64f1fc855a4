"""Issue #11, finding 1: every file a rollback or rebuild reads is covered by the sealed manifest, and the
manifest is signed with KPROMOTE_BACKUP_SIGNING_KEY, so an edited backup is refused by name before anything
acts on it: by `BackupDir.require_intact` (steps) and by `kpromote backups verify` (people)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from services.cli import app
from shared.backup import (
    PLAN_NAME,
    BackupDir,
    BackupError,
    BackupTampered,
    backup_root,
    integrity,
    write_atomically,
)

KEY = SecretStr("k3y-for-tests-" + "0123456789abcdef" * 2)
OTHER_KEY = SecretStr("another-key-for-tests-" + "fedcba9876543210" * 2)
LABELS = {"policy": "promote-shop", "namespace": "shop", "run": "run-1", "cluster": "member1"}
DEPLOYMENTS = "items/deployments.apps.jsonl"
REPLICASETS = "items/replicasets.apps.jsonl"
IMAGE = b"shop:1.0"
EVIL = b"evil:6.6"
"""The same length as IMAGE: an edit that keeps every size and every index offset."""


def deployment(name: str, image: str = "shop:1.0") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
    }


def replicaset(name: str) -> dict[str, Any]:
    obj = deployment(name)
    obj["kind"] = "ReplicaSet"
    return obj


def make(root: Path, key: SecretStr | None = KEY) -> BackupDir:
    """A sealed backup with its plan, as the backup step leaves it."""
    backup = BackupDir(root, signing_key=key)
    backup.write_part("deployments.apps", [deployment("web"), deployment("api")])
    backup.write_part("replicasets.apps", [replicaset("web-5d9c"), replicaset("api-7f4b")])
    backup.write_part("configmaps", [])
    backup.seal(LABELS)
    backup.write_derived(PLAN_NAME, plan_file())
    return backup


def plan_file(move: str = "promote") -> bytes:
    uids = ["uid-api", "uid-api-7f4b", "uid-web", "uid-web-5d9c"]
    return orjson.dumps({uid: {"move": move, "reason": ""} for uid in uids})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return backup_root(tmp_path, "promote-shop", "shop", "run-1")


@pytest.fixture
def backup(root: Path) -> BackupDir:
    return make(root)


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    """Verdicts cached by one test (same paths in another tmp_path are unlikely, but) never leak."""
    integrity.DIGESTS.clear()


def refused(backup: BackupDir, *fragments: str) -> BackupTampered:
    with pytest.raises(BackupTampered) as caught:
        backup.require_intact()
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    report = backup.verify()
    assert not report.ok
    for fragment in fragments:
        assert any(fragment in problem for problem in report.problems), report.problems
    return caught.value


def edit(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


# -------------------------------------------------------------------------------- what is covered
def test_a_correct_signed_backup_passes(backup: BackupDir) -> None:
    backup.require_intact()
    report = backup.verify()
    assert report.ok and report.signed, report.problems
    assert backup.manifest_path.read_bytes().startswith(b'{"signature":"hmac-sha256:')
    manifest = backup.manifest()
    assert manifest is not None
    assert sorted(manifest.files) == [
        "items/deployments.apps.idx",
        DEPLOYMENTS,
        "items/replicasets.apps.idx",
        REPLICASETS,
        PLAN_NAME,
    ]
    data = (backup.root / DEPLOYMENTS).read_bytes()
    assert manifest.files[DEPLOYMENTS].sha256 == hashlib.sha256(data).hexdigest()
    assert manifest.files[DEPLOYMENTS].size == len(data)
    assert json.loads(backup.manifest_path.read_bytes())["totalItems"] == 4  # still plain JSON


@pytest.mark.parametrize("relative", [DEPLOYMENTS, REPLICASETS])
def test_an_edited_image_in_an_items_line_is_refused_naming_the_file(
    backup: BackupDir, relative: str
) -> None:
    edit(backup.root / relative, IMAGE, EVIL)
    error = refused(backup, f"changed {relative}")
    assert error.root == backup.root and len(error.problems) == 1
    assert str(backup.root) in str(error)


def test_an_edited_index_is_refused_naming_it(backup: BackupDir) -> None:
    index = backup.root / "items" / "deployments.apps.idx"
    data = bytearray(index.read_bytes())
    data[8] ^= 0x01
    index.write_bytes(bytes(data))
    refused(backup, "changed items/deployments.apps.idx")


def test_an_edited_or_lost_plan_is_refused_naming_the_file(backup: BackupDir) -> None:
    path = backup.root / PLAN_NAME
    edit(path, b'"promote"', b'"stay"')
    refused(backup, f"changed {PLAN_NAME}")
    path.unlink()
    refused(backup, f"missing {PLAN_NAME}")


def test_a_missing_items_file_or_manifest_is_refused_naming_it(backup: BackupDir) -> None:
    (backup.root / REPLICASETS).unlink()
    refused(backup, f"missing {REPLICASETS}")
    backup.manifest_path.unlink()
    refused(backup, "missing manifest.json")


def test_a_plan_written_beside_the_seal_without_write_derived_is_refused(root: Path) -> None:
    backup = BackupDir(root, signing_key=KEY)
    backup.write_part("deployments.apps", [deployment("web")])
    backup.seal(LABELS)
    backup.require_intact()
    write_atomically(backup.root / PLAN_NAME, plan_file())
    refused(backup, f"uncovered {PLAN_NAME}")


def test_an_edited_archive_is_refused(backup: BackupDir) -> None:
    data = bytearray(backup.archive_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.archive_path.write_bytes(bytes(data))
    refused(backup, "changed backup.tar.gz")


# ------------------------------------------------------------------------------------- the signature
def rehash_manifest(backup: BackupDir, relative: str, *, keep_signature: bool) -> None:
    """What someone who can write the volume but lacks the key would do after editing `relative`."""
    signature, body = integrity.split_signature(backup.manifest_path.read_bytes())
    manifest = json.loads(body)
    data = (backup.root / relative).read_bytes()
    manifest["files"][relative] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    body = json.dumps(manifest).encode()
    if keep_signature:
        assert signature
        body = b'{"signature":"hmac-sha256:' + signature.encode() + b'",' + body[1:]
    backup.manifest_path.write_bytes(body)


def test_a_manifest_rehashed_without_the_key_fails_its_signature(backup: BackupDir) -> None:
    edit(backup.root / DEPLOYMENTS, IMAGE, EVIL)
    rehash_manifest(backup, DEPLOYMENTS, keep_signature=True)
    refused(backup, "manifest.json: the signature does not match")


def test_a_manifest_rehashed_and_stripped_of_its_signature_is_refused_as_unsigned(backup: BackupDir) -> None:
    edit(backup.root / DEPLOYMENTS, IMAGE, EVIL)
    rehash_manifest(backup, DEPLOYMENTS, keep_signature=False)
    refused(backup, "unsigned backup refused: KPROMOTE_BACKUP_SIGNING_KEY is set")


def test_an_unsigned_backup_is_refused_when_a_key_is_configured(root: Path) -> None:
    unsigned = make(root, key=None)
    unsigned.require_intact()
    assert unsigned.verify().ok and not unsigned.verify().signed
    refused(BackupDir(root, signing_key=KEY), "unsigned backup refused: KPROMOTE_BACKUP_SIGNING_KEY is set")


def test_a_signed_backup_is_refused_under_another_key_or_none(backup: BackupDir) -> None:
    refused(BackupDir(backup.root, signing_key=OTHER_KEY), "the signature does not match")
    refused(BackupDir(backup.root, signing_key=None), "is signed, but KPROMOTE_BACKUP_SIGNING_KEY is not set")


def test_without_a_key_edits_and_rehashes_go_unnoticed_which_is_why_deploy_sets_one(root: Path) -> None:
    """The limit of an unsigned backup, stated as a test: the digests catch accidents and naive edits,
    only the signature catches someone who re-hashes."""
    unsigned = make(root, key=None)
    edit(unsigned.root / DEPLOYMENTS, IMAGE, EVIL)
    refused(unsigned, f"changed {DEPLOYMENTS}")
    rehash_manifest(unsigned, DEPLOYMENTS, keep_signature=False)
    unsigned.require_intact()


def test_a_manifest_may_not_point_outside_the_backup(root: Path) -> None:
    unsigned = make(root, key=None)
    manifest = json.loads(unsigned.manifest_path.read_bytes())
    manifest["files"]["../../../../dev/zero"] = {"sha256": "0" * 64, "size": 0}
    del manifest["files"][REPLICASETS]
    unsigned.manifest_path.write_bytes(json.dumps(manifest).encode())
    refused(unsigned, "covers an unexpected path '../../../../dev/zero'", f"{REPLICASETS} is not covered")


# -------------------------------------------------------------------------------- seal and derived
def test_a_re_seal_restores_edited_items_from_the_parts_instead_of_covering_them(backup: BackupDir) -> None:
    sealed_manifest = backup.manifest_path.read_bytes()
    edit(backup.root / DEPLOYMENTS, IMAGE, EVIL)
    backup.seal(LABELS)
    assert EVIL not in (backup.root / DEPLOYMENTS).read_bytes()
    backup.write_derived(PLAN_NAME, plan_file())  # what the backup step does after sealing
    assert backup.manifest_path.read_bytes() == sealed_manifest
    backup.require_intact()


def test_write_derived_is_idempotent_restores_a_lost_file_and_refuses_other_content(
    backup: BackupDir,
) -> None:
    manifest = backup.manifest_path.read_bytes()
    backup.write_derived(PLAN_NAME, plan_file())
    (backup.root / PLAN_NAME).unlink()
    backup.write_derived(PLAN_NAME, plan_file())
    assert backup.manifest_path.read_bytes() == manifest
    backup.require_intact()
    with pytest.raises(BackupError, match="sealed with other content"):
        backup.write_derived(PLAN_NAME, plan_file("stay"))
    with pytest.raises(ValueError, match="not a derived file"):
        backup.write_derived("state.json", b"{}")
    backup.require_intact()


def test_write_derived_does_not_re_sign_an_edited_manifest(backup: BackupDir) -> None:
    edit(backup.root / DEPLOYMENTS, IMAGE, EVIL)
    rehash_manifest(backup, DEPLOYMENTS, keep_signature=False)
    (backup.root / PLAN_NAME).unlink()
    with pytest.raises(BackupTampered, match="unsigned backup refused"):
        backup.write_derived(PLAN_NAME, plan_file())
    assert not (backup.root / PLAN_NAME).exists()


def test_an_unsealed_backup_is_not_intact_but_not_tampered_either(root: Path) -> None:
    backup = BackupDir(root, signing_key=KEY)
    backup.write_part("deployments.apps", [deployment("web")])
    with pytest.raises(BackupError, match="is not sealed") as caught:
        backup.require_intact()
    assert not isinstance(caught.value, BackupTampered)


# ---------------------------------------------------------------------------------------- the cache
def test_repeated_checks_read_no_covered_file_until_one_changes(
    backup: BackupDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are cached per version once settled; ctime is part of the version, so an in-place edit of
    the same size with the mtime set back is still seen."""
    monkeypatch.setattr(integrity, "SETTLED_NS", -(10**18))
    opened: list[str] = []
    original_open = Path.open

    def spying_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self.name)
        return original_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spying_open)
    backup.require_intact()
    assert "deployments.apps.jsonl" in opened
    opened.clear()
    backup.require_intact()
    assert opened == ["manifest.json"]  # opened for its version only: nothing hashed, nothing parsed

    path = backup.root / DEPLOYMENTS
    before = path.stat()
    edit(path, IMAGE, EVIL)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    refused(backup, f"changed {DEPLOYMENTS}")


def test_files_written_within_the_last_second_are_not_cached(backup: BackupDir) -> None:
    backup.require_intact()
    assert (
        integrity.DIGESTS.get(
            backup.root / DEPLOYMENTS, integrity.version_of((backup.root / DEPLOYMENTS).stat())
        )
        is None
    )


# ------------------------------------------------------------------------------------ the secret
def test_the_key_appears_in_no_repr_message_or_log(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backup = make(root)
    edit(backup.root / DEPLOYMENTS, IMAGE, EVIL)
    error = refused(backup, DEPLOYMENTS)
    backup.seal(LABELS)  # logs why it re-seals
    secret = KEY.get_secret_value()
    for text in (repr(backup), str(error), caplog.text, backup.manifest_path.read_text()):
        assert secret not in text


# ------------------------------------------------------------------------------- kpromote backups verify
@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("KPROMOTE_BACKUP_SIGNING_KEY", raising=False)
    return CliRunner()


def test_backups_verify_names_each_changed_file_and_exits_1(runner: CliRunner, backup: BackupDir) -> None:
    env = {"KPROMOTE_BACKUP_SIGNING_KEY": KEY.get_secret_value()}
    result = runner.invoke(app, ["backups", "verify", str(backup.root)], env=env)
    assert result.exit_code == 0, result.output
    assert "OK, 4 item(s) match their checksums, 5 file(s) beside it match manifest.json" in result.stdout
    assert "signature valid" in result.stdout

    edit(backup.root / DEPLOYMENTS, IMAGE, EVIL)
    edit(backup.root / PLAN_NAME, b'"promote"', b'"stay"')
    result = runner.invoke(app, ["backups", "verify", str(backup.archive_path)], env=env)
    assert result.exit_code == 1, result.output
    assert "do not roll back from this archive" in result.stdout
    assert f"changed {DEPLOYMENTS}" in result.stdout and f"changed {PLAN_NAME}" in result.stdout
    assert KEY.get_secret_value() not in result.output


def test_backups_verify_refuses_an_unsigned_backup_when_the_key_is_set(runner: CliRunner, root: Path) -> None:
    unsigned = make(root, key=None)
    result = runner.invoke(app, ["backups", "verify", str(unsigned.root)])
    assert result.exit_code == 0, result.output
    assert "unsigned (KPROMOTE_BACKUP_SIGNING_KEY is not set)" in result.stdout
    env = {"KPROMOTE_BACKUP_SIGNING_KEY": KEY.get_secret_value()}
    result = runner.invoke(app, ["backups", "verify", str(unsigned.root)], env=env)
    assert result.exit_code == 1
    assert "unsigned backup refused: KPROMOTE_BACKUP_SIGNING_KEY is set" in result.stdout
