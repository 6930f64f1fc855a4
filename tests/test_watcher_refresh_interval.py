"""How often the watcher rewrites a policy's status: every pass (half a second) for a policy of up to a
hundred namespaces, once a second for a larger one, whose status is hundreds of KiB."""

from __future__ import annotations

import time

import kopf

from services.watcher.handlers import LARGE_POLICY, LARGE_POLICY_INTERVAL, _refresh_due


def test_a_small_policy_is_refreshed_on_every_pass() -> None:
    memo = kopf.Memo()
    assert all(_refresh_due(memo, LARGE_POLICY) for _ in range(3))


def test_a_large_policy_is_refreshed_once_per_its_interval() -> None:
    memo = kopf.Memo()
    assert _refresh_due(memo, LARGE_POLICY + 1)
    assert not _refresh_due(memo, LARGE_POLICY + 1)
    memo["refreshed"] = time.monotonic() - LARGE_POLICY_INTERVAL
    assert _refresh_due(memo, LARGE_POLICY + 1)
