"""Verify's judgement of a promoted pod as the member holds it afterwards: kept, or what went wrong."""

from __future__ import annotations

from typing import Any

import pytest

from shared.steps.verify import member_pod_problem
from tests.shared import kinds_builders as b

BACKED_UP = b.pod(owners=[b.owner("ReplicaSet", "web-1", uid="rs-old")])


def _live(**metadata: Any) -> dict[str, Any]:
    pod = b.pod()
    pod["metadata"] = {**BACKED_UP["metadata"], "ownerReferences": [], **metadata}
    return pod


@pytest.mark.parametrize(
    ("live", "problem"),
    [
        pytest.param(_live(), None, id="orphaned by detach: kept"),
        pytest.param(
            _live(ownerReferences=[b.owner("ReplicaSet", "web-1", uid="rs-old")]),
            None,
            id="the old owner's reference, not yet removed by the garbage collector",
        ),
        pytest.param(
            _live(ownerReferences=[b.owner("ReplicaSet", "web-1", uid="rs-new")]),
            "is controlled again in the member, by ReplicaSet web-1",
            id="adopted by an owner re-created in the member",
        ),
        pytest.param(_live(uid="other"), "was re-created", id="re-created"),
        pytest.param(_live(deletionTimestamp="2026-12-07T10:00:00Z"), "is being deleted", id="deleting"),
        pytest.param(None, "is gone", id="gone"),
    ],
)
def test_a_promoted_member_pod_is_judged(live: dict[str, Any] | None, problem: str | None) -> None:
    found = member_pod_problem("web-1-abc", BACKED_UP, live)

    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found
