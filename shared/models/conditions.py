"""Standard Kubernetes conditions on a policy's status, kept as `kubectl wait` reads them."""

from __future__ import annotations

from typing import Any

from shared.models.policy import Condition, ConditionStatus
from shared.models.times import now_rfc3339


def with_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """`conditions` with `type_` set; its lastTransitionTime moves only when its status changes."""
    previous = next((c for c in conditions if c.get("type") == type_), None)
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
