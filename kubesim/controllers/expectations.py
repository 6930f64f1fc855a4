"""Controller expectations: a controller does not act again on an owner until it has seen its own writes.

Go's `UIDTrackingControllerExpectations` (pkg/controller/controller_utils.go). A ReplicaSet that has just
created two pods reads its informer cache on the next sync; if the cache lags, the pods are not there
yet and, without this bookkeeping, it would create two more on every sync until they showed up. The
controller records what it is about to create and delete, its event handlers lower the counts as the
informer delivers the pods, and `manageReplicas` waits until both reach zero (or five minutes pass).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from kubesim.objects import controller_ref, is_terminating, name_of, namespace_of
from kubesim.store import WatchEvent

EXPECTATIONS_TIMEOUT = 300.0
"""`ExpectationsTimeout`: after this long, expectations never met no longer hold a controller back."""


@dataclass
class _Expected:
    adds: int
    deletes: set[str]
    since: float = field(default_factory=time.monotonic)


class Expectations:
    """Creations counted, deletions tracked by pod key, per owner key."""

    def __init__(self) -> None:
        self._expected: dict[Hashable, _Expected] = {}

    def expect(self, owner: Hashable, *, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        """Set before the writes, so that a write seen at once (no lag) already counts down."""
        self._expected[owner] = _Expected(adds, set(deletes))

    def creation_observed(self, owner: Hashable, count: int = 1) -> None:
        """Also called for creations that failed, which will never be seen."""
        expected = self._expected.get(owner)
        if expected is not None:
            expected.adds -= count

    def deletion_observed(self, owner: Hashable, pod_key: str) -> None:
        """Also called for deletions that failed, which will never be seen."""
        expected = self._expected.get(owner)
        if expected is not None:
            expected.deletes.discard(pod_key)

    def satisfied(self, owner: Hashable) -> bool:
        expected = self._expected.get(owner)
        if expected is None:
            return True
        fulfilled = expected.adds <= 0 and not expected.deletes
        return fulfilled or time.monotonic() - expected.since > EXPECTATIONS_TIMEOUT

    def forget(self, owner: Hashable) -> None:
        self._expected.pop(owner, None)

    def observe_pod(self, event: WatchEvent, owner_kind: str) -> None:
        """The pod event handlers' part: a pod controlled by an `owner_kind` seen created, or seen going
        (deleted, or newly terminating), counts down its owner's expectations."""
        ref = controller_ref(event.obj)
        if ref is None or ref.get("kind") != owner_kind:
            return
        owner = (namespace_of(event.obj), ref.get("name", ""))
        if event.type == "DELETED" or (is_terminating(event.obj) and not is_terminating(event.old or {})):
            self.deletion_observed(owner, f"{owner[0]}/{name_of(event.obj)}")
        elif event.type == "ADDED":
            self.creation_observed(owner)
