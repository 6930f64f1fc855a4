"""`rebuild.start` creates the leading small tiers itself and publishes only the rest: which tiers it
takes, and that a failure in them is still reported as the `rebuild.tiers` step it did the work of."""

from __future__ import annotations

import pytest

from services.celery_app import FAILED_STEP, failing_as
from services.pipeline import leading_tiers
from shared.steps.rebuild import Batch, TierPlan


def tier(name: str, batches: int) -> TierPlan:
    return TierPlan(name, [Batch(f"{name}-type", part * 50, 50) for part in range(batches)])


def names(tiers: list[TierPlan]) -> list[str]:
    return [t.name for t in tiers]


@pytest.mark.parametrize(
    ("plan", "first", "rest"),
    [
        ([tier("namespaces", 1), tier("config", 1), tier("pods", 1)], ["namespaces", "config", "pods"], []),
        ([tier("namespaces", 1), tier("config", 3), tier("pods", 1)], ["namespaces"], ["config", "pods"]),
        ([tier("config", 2), tier("pods", 1)], [], ["config", "pods"]),
        ([], [], []),
    ],
)
def test_start_takes_the_first_stage_only_when_it_is_small_tiers(
    plan: list[TierPlan], first: list[str], rest: list[str]
) -> None:
    inline, left = leading_tiers(plan)
    assert (names(inline), names(left)) == (first, rest)
    assert inline + left == plan


def test_a_failure_in_work_done_for_another_step_names_that_step() -> None:
    with pytest.raises(RuntimeError) as caught, failing_as("rebuild.tiers"):
        raise RuntimeError("create refused")
    assert getattr(caught.value, FAILED_STEP) == "rebuild.tiers"
