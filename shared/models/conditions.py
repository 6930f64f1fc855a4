"""Standard Kubernetes conditions on a policy's status, kept as `kubectl wait` reads them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.models.policy import Condition, ConditionStatus
from shared.models.times import now_rfc3339

CONTROLLED_IN_MEMBER = "ControlledInMember"
"""True while promoted pods of a completed namespace have a controller in the member again (the watcher's
look after completion, services/watcher/aftercare.py)."""


def condition_of(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of type `type_` among `conditions`, if any."""
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    condition = condition_of(conditions, type_)
    return condition is not None and condition.get("status") == ConditionStatus.TRUE


def with_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """`conditions` with `type_` set; its lastTransitionTime moves only when its status changes."""
    previous = condition_of(conditions, type_)
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == status else None
    # Validated from the wire form: the kept lastTransitionTime is the string the status holds.
    condition = Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or now_rfc3339(),
            "observedGeneration": generation,
        }
    ).model_dump(mode="json", by_alias=True, exclude_none=True)
    return [*(c for c in conditions if c.get("type") != type_), condition]
