"""Which of the member's promoted pods a controller there has taken back (pure: no server)."""

from __future__ import annotations

from typing import Any

from shared.steps.aftercare import controlled_in_member


def _pod(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "ownerReferences": list(owners)}}


def test_only_pods_a_member_controller_owns_are_named() -> None:
    replica_set = {"kind": "ReplicaSet", "name": "web-7d4f", "uid": "u1", "controller": True}
    not_a_controller = {"kind": "ConfigMap", "name": "holder", "uid": "u2"}
    pods = [_pod("orphan"), _pod("adopted", replica_set), _pod("held", not_a_controller)]

    assert controlled_in_member(pods) == ["adopted by ReplicaSet web-7d4f"]
