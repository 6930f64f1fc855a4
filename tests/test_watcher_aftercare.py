"""When the watcher's look at completed namespaces writes its condition. It runs every minute for every
finished policy, so it must write only when what it says changes, and say nothing while nothing is wrong;
and it must stay quiet while a rollback is requested or the policy is going (another actor owns it then)."""

from __future__ import annotations

from typing import Any

import kopf

from services.watcher.aftercare import controlled_message, report, watched
from shared.models.conditions import CONTROLLED_IN_MEMBER

TAKEN_BACK = ["shop/web-1 by ReplicaSet web-7d4f"]


def _body(**metadata: Any) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "p", "generation": 1, **metadata}})


def test_nothing_is_written_while_no_pod_was_ever_taken_back() -> None:
    patch = kopf.Patch()
    report(_body(), {"phase": "Completed"}, patch, [])
    assert not patch


def test_the_same_verdict_as_written_is_not_written_again() -> None:
    written = {"type": CONTROLLED_IN_MEMBER, "status": "True", "message": controlled_message(TAKEN_BACK)}
    patch = kopf.Patch()
    report(_body(), {"phase": "Completed", "conditions": [written]}, patch, TAKEN_BACK)
    assert not patch


def test_a_policy_being_rolled_back_or_deleted_is_not_looked_at() -> None:
    assert watched({"phase": "Completed"}, {}, _body())
    assert watched({"phase": "PartiallyFailed"}, {"rollback": "false"}, _body())
    assert not watched({"phase": "Completed"}, {"rollback": "true"}, _body())
    assert not watched({"phase": "Completed"}, {}, _body(deletionTimestamp="2026-12-07T16:00:00Z"))
    assert not watched({"phase": "Running"}, {}, _body())
