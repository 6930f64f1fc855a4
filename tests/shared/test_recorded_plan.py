"""The plan recorded beside a sealed backup: written once, covered by the signed manifest, read back as
the same plan; a sealed backup whose step stopped before the plan gets the plan it would have had."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.backup import PLAN_NAME, BackupDir, BackupTampered
from shared.errors import NotSealed
from shared.kinds import Context
from shared.plan import NamespacePlan, plan_namespace
from shared.steps import recorded_plan
from tests.shared import kinds_builders as b

KEY = SecretStr("k3y-for-tests-" + "0123456789abcdef" * 2)
CTX = Context(cluster="member1", policy="p1", run="run-1")


def sealed(root: Path, app: str = "web") -> BackupDir:
    backup = BackupDir(root, signing_key=KEY)
    web = b.deployment(app)
    backup.write_part("deployments.apps", [web])
    backup.write_part(
        "replicasets.apps", [b.replicaset(owners=[b.owner("Deployment", "web", web["metadata"]["uid"])])]
    )
    backup.write_part("pods", [b.pod()])
    backup.seal({"policy": "p1", "namespace": "app", "run": "run-1", "cluster": "member1"})
    return backup


def test_the_recorded_plan_is_covered_by_the_manifest_and_read_back_whole(tmp_path: Path) -> None:
    backup = sealed(tmp_path / "run")
    plan = recorded_plan.record(backup, CTX)
    manifest = backup.manifest()
    assert manifest is not None and PLAN_NAME in manifest.files
    backup.require_intact()
    assert recorded_plan.load(backup, CTX) == plan
    assert len(plan.objects) == 3 and plan.owners_top_down() == ["deployments.apps", "replicasets.apps"]


def test_a_sealed_backup_without_its_plan_gets_the_one_its_backup_step_would_have_recorded(
    tmp_path: Path,
) -> None:
    backup = sealed(tmp_path / "run")
    assert backup.read_derived(PLAN_NAME) is None
    plan = recorded_plan.load(backup, CTX)
    items = [(gr, obj) for gr in ("deployments.apps", "pods", "replicasets.apps") for obj in backup.items(gr)]
    assert plan.dumps() == plan_namespace(items, CTX).dumps() == backup.read_derived(PLAN_NAME)
    backup.require_intact()


def test_an_edited_plan_is_refused_before_it_is_read(tmp_path: Path) -> None:
    backup = sealed(tmp_path / "run")
    recorded_plan.record(backup, CTX)
    path = backup.root / PLAN_NAME
    path.write_bytes(path.read_bytes().replace(b'"orphan-delete"', b'"none"'))
    with pytest.raises(BackupTampered, match=PLAN_NAME):
        backup.require_intact()


def test_an_unsealed_backup_has_no_plan(tmp_path: Path) -> None:
    backup = BackupDir(tmp_path / "run", signing_key=KEY)
    backup.write_part("pods", [b.pod()])
    with pytest.raises(NotSealed):
        recorded_plan.record(backup, CTX)


def test_plans_are_parsed_once_per_process_and_the_least_recently_used_goes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorded_plan, "_parsed", {})
    monkeypatch.setattr(recorded_plan, "_ENTRIES_KEPT", 6)  # two plans of three objects
    first, second, third = (sealed(tmp_path / app, app) for app in ("web", "api", "shop"))
    for backup in (first, second, third):
        recorded_plan.record(backup, CTX)
    parsed_first = recorded_plan.load(first, CTX)
    assert recorded_plan.load(first, CTX) is parsed_first
    parsed_second = recorded_plan.load(second, CTX)
    assert recorded_plan.load(first, CTX) is parsed_first  # now the most recently used
    recorded_plan.load(third, CTX)
    assert recorded_plan.load(first, CTX) is parsed_first
    assert recorded_plan.load(second, CTX) is not parsed_second
    assert recorded_plan.load(second, CTX) == parsed_second


def test_the_objects_of_a_kind_share_one_parsed_detach_step(tmp_path: Path) -> None:
    backup = BackupDir(tmp_path / "run", signing_key=KEY)
    backup.write_part("configmaps", [b.configmap(f"settings-{index}") for index in range(3)])
    backup.seal({"policy": "p1", "namespace": "app", "run": "run-1", "cluster": "member1"})
    recorded_plan.record(backup, CTX)
    plan = recorded_plan.load(backup, CTX)
    steps = {id(entry.detach) for entry in plan.entries("configmaps")}
    assert len(steps) == 1


def test_threads_asking_at_once_for_a_plan_not_yet_parsed_wait_for_one_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild batches of a large namespace start together on a worker's threads: each parsing the
    plan held eight copies of it at once."""
    backup = sealed(tmp_path / "run")
    recorded_plan.record(backup, CTX)
    monkeypatch.setattr(recorded_plan, "_parsed", {})
    parses: list[int] = []
    parse = NamespacePlan.loads

    def slow_parse(data: bytes) -> NamespacePlan:
        parses.append(1)
        time.sleep(0.05)  # long enough for every thread to ask while the first one parses
        return parse(data)

    monkeypatch.setattr(NamespacePlan, "loads", staticmethod(slow_parse))
    start = threading.Barrier(8)

    def load() -> NamespacePlan:
        start.wait()
        return recorded_plan.load(backup, CTX)

    with ThreadPoolExecutor(8) as pool:
        plans = list(pool.map(lambda _: load(), range(8)))
    assert len(parses) == 1
    assert all(plan is plans[0] for plan in plans)
