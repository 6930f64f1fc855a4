"""A policy's status stays storable: the namespaces' part is shortened step by step to fit its budget."""

from __future__ import annotations

import orjson

from shared.models import ItemCounts, NamespacePhase, NamespaceStatus, SkippedItem
from shared.models.policy import RollbackCounts
from shared.models.status_size import NAMESPACES_BUDGET, SKIPPED_LISTED, render_within_budget
from shared.selection import MAX_NAMESPACES

TIME = "2026-12-07T07:30:00Z"


def _namespace(name: str, phase: NamespacePhase, skipped: int = 3) -> NamespaceStatus:
    """An entry as a run leaves it: every field the watcher writes, filled."""
    return NamespaceStatus(
        name=name,
        phase=phase,
        step="verify adoption",
        counts=ItemCounts(backed_up=42, detached=40, rebuilt=40, skipped=skipped),
        totals=ItemCounts(backed_up=42, detached=40, rebuilt=40, skipped=skipped),
        skipped=[
            SkippedItem(resource="configmaps", name=f"kube-root-ca-{i}.crt", reason="managed by the cluster")
            for i in range(skipped)
        ],
        backup_location=f"s3://kosmos-promote-backups/policies/big/namespaces/{name}/run-0123456789abcdef",
        backup_sha256="a" * 64,
        message="promoted: every pod adopted by the control plane, none started",
        start_time=TIME,
        completion_time=TIME,
        duration_seconds=12.5,
        rollback=RollbackCounts(objects_restored=40, start_time=TIME, completion_time=TIME)
        if phase is NamespacePhase.ROLLED_BACK
        else None,
    )


def _size(entries: list[dict[str, object]]) -> int:
    return len(orjson.dumps(entries))


def test_a_status_that_fits_is_rendered_whole() -> None:
    namespaces = [_namespace(f"shop-{i}", NamespacePhase.COMPLETED) for i in range(20)]

    rendered = render_within_budget(namespaces)

    assert rendered == [ns.model_dump(mode="json", by_alias=True, exclude_none=True) for ns in namespaces]


def test_a_namespace_that_left_thousands_behind_lists_the_first_and_keeps_the_count() -> None:
    namespaces = [
        _namespace("logs", NamespacePhase.COMPLETED, skipped=12_000),
        _namespace("shop", NamespacePhase.REBUILDING),
    ]

    logs, shop = render_within_budget(namespaces)

    assert [item["name"] for item in logs["skipped"]] == [
        f"kube-root-ca-{i}.crt" for i in range(SKIPPED_LISTED)
    ]
    assert logs["counts"]["skipped"] == 12_000
    assert logs["backupLocation"] and logs["message"], "only the list is shortened"
    assert shop == namespaces[1].model_dump(mode="json", by_alias=True, exclude_none=True)
    assert _size([logs, shop]) <= NAMESPACES_BUDGET


def test_a_thousand_namespaces_that_each_left_a_few_behind_keep_every_failure_whole() -> None:
    namespaces = [
        _namespace(
            f"team-{i:04d}-{'x' * 40}",
            NamespacePhase.FAILED if i % 100 == 0 else NamespacePhase.COMPLETED,
            skipped=5,
        )
        for i in range(MAX_NAMESPACES)
    ]
    full = [ns.model_dump(mode="json", by_alias=True, exclude_none=True) for ns in namespaces]
    assert _size(full) > NAMESPACES_BUDGET, "the case needs a status over the budget"

    rendered = render_within_budget(namespaces)

    assert _size(rendered) <= NAMESPACES_BUDGET
    assert [(e["name"], e["phase"]) for e in rendered] == [(ns.name, ns.phase.value) for ns in namespaces]
    failed = [e for e in rendered if e["phase"] == "Failed"]
    assert len(failed) == 10 and all(e["backupLocation"] and e["message"] and e["skipped"] for e in failed)
    completed = [e for e in rendered if e["phase"] == "Completed"]
    assert all(set(e) == {"name", "phase", "counts", "backupLocation"} for e in completed)


def test_a_thousand_demo_namespaces_keep_those_under_way_whole_and_the_completed_ones_with_their_backup() -> (
    None
):
    namespaces = [
        _namespace(
            f"shop-{i:04d}", NamespacePhase.REBUILDING if i < 50 else NamespacePhase.COMPLETED, skipped=9
        )
        for i in range(MAX_NAMESPACES)
    ]

    rendered = render_within_budget(namespaces)

    assert _size(rendered) <= NAMESPACES_BUDGET
    whole = [ns.model_dump(mode="json", by_alias=True, exclude_none=True) for ns in namespaces[:50]]
    assert rendered[:50] == whole
    completed = zip(rendered[50:], namespaces[50:], strict=True)
    assert all(set(e) == {"name", "phase", "counts", "backupLocation"} for e, _ in completed)
    assert [e["backupLocation"] for e in rendered[50:]] == [ns.backup_location for ns in namespaces[50:]]


def test_the_most_namespaces_a_policy_takes_fit_however_long_their_names_and_messages() -> None:
    long_message = "waiting for the garbage collector to release the ReplicaSets' pods " * 20
    namespaces = [
        _namespace(f"{i:04d}-{'n' * 58}", NamespacePhase.FAILED).model_copy(update={"message": long_message})
        for i in range(MAX_NAMESPACES)
    ]

    rendered = render_within_budget(namespaces)

    assert _size(rendered) <= NAMESPACES_BUDGET
    assert rendered == [{"name": ns.name, "phase": "Failed"} for ns in namespaces]
