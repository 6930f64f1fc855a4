"""Which rebuild tiers fan out over tasks and which share one task."""

from __future__ import annotations

from shared.steps.rebuild import Batch, TierPlan, stages


def tier(name: str, batches: int) -> TierPlan:
    return TierPlan(name, [Batch(f"{name}-type", part * 50, 50) for part in range(batches)])


def names(grouped: list[list[TierPlan]]) -> list[list[str]]:
    return [[t.name for t in stage] for stage in grouped]


def test_consecutive_single_batch_tiers_share_one_stage() -> None:
    assert names(stages([tier("namespaces", 1), tier("rbac", 1), tier("config", 1)])) == [
        ["namespaces", "rbac", "config"]
    ]


def test_a_tier_of_several_batches_is_a_stage_of_its_own_and_splits_the_small_ones() -> None:
    plan = [
        tier("namespaces", 1),
        tier("config", 3),
        tier("pods", 1),
        tier("replicasets", 1),
        tier("rest", 2),
    ]
    assert names(stages(plan)) == [["namespaces"], ["config"], ["pods", "replicasets"], ["rest"]]


def test_two_large_tiers_in_a_row_stay_apart() -> None:
    assert names(stages([tier("config", 2), tier("pods", 4)])) == [["config"], ["pods"]]


def test_every_tier_is_in_exactly_one_stage_in_order() -> None:
    plan = [tier(f"t{i}", 1 + (i % 3 == 0)) for i in range(12)]
    assert [t for stage in stages(plan) for t in stage] == plan
    assert stages([]) == []
