"""A backup edited after its seal is refused before anything is touched.

Someone who can write the backup volume changes the image of a Deployment (and its ReplicaSets) in the
items files a rollback reads. The rollback must stop at once, FailedRollback, naming the changed file,
with both clusters exactly as they were: re-creating the member's owners from an edited backup would
roll every pod onto an image nobody approved."""

from __future__ import annotations

from pathlib import Path

from kubesim.seed import seed_namespace
from tests.pipeline.conftest import Installation
from tests.pipeline.snapshots import diff, pod_uids, snapshot


def test_a_rollback_from_an_edited_backup_stops_before_any_write(installation: Installation) -> None:
    seeded = seed_namespace(installation.member_api, "tamper-1", full=False)
    installation.apply("tamper", includedNamespaces=["tamper-1"])
    [promoted] = installation.wait_done("tamper")["namespaces"]
    run_folder = Path(promoted["backupLocation"]).parent
    for name in ("deployments.apps.jsonl", "replicasets.apps.jsonl"):
        items = run_folder / "items" / name
        items.write_text(items.read_text().replace("nginx:", "evil.example.com/nginx:"))
        assert "evil.example.com" in items.read_text(), "the edit took"
    member_before = snapshot(installation.member_api, "tamper-1")
    control_plane_before = snapshot(installation.cp_api, "tamper-1")

    installation.request_rollback("tamper")
    status = installation.wait_done("tamper", phases=("RolledBack", "FailedRollback"))

    assert status["phase"] == "FailedRollback", status
    [namespace] = status["namespaces"]
    assert "deployments.apps.jsonl" in namespace["message"], namespace
    assert diff(member_before, snapshot(installation.member_api, "tamper-1")) == []
    assert diff(control_plane_before, snapshot(installation.cp_api, "tamper-1")) == []
    assert pod_uids(installation.member_api, "tamper-1") == seeded.pods
    assert "evil.example.com" not in str(snapshot(installation.member_api, "tamper-1"))
