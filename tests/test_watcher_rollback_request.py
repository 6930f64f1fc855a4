"""Which namespaces a rollback request sends a message for. kopf can call the watcher's timer again with
the policy as it was before the request was answered, so the answer must not depend on that copy: a
namespace whose rollback is queued, running or done gets no second message (two at once collide)."""

from __future__ import annotations

import pytest

from services.watcher.handlers import rollback_due
from shared.models import NamespacePhase


@pytest.mark.parametrize(
    "phase",
    [NamespacePhase.COMPLETED, NamespacePhase.FAILED, NamespacePhase.FAILED_ROLLBACK, NamespacePhase.PENDING],
)
def test_a_namespace_not_yet_rolling_back_or_whose_rollback_failed_is_sent_one(phase: NamespacePhase) -> None:
    assert rollback_due(phase)


@pytest.mark.parametrize("phase", [NamespacePhase.COMPENSATING, NamespacePhase.ROLLED_BACK])
def test_a_namespace_whose_rollback_is_under_way_or_done_is_not_sent_another(phase: NamespacePhase) -> None:
    assert not rollback_due(phase)
