"""Live progress of each namespace, kept in Redis and read by the watcher to write the policy's status.

Every write is idempotent, because Celery delivers at least once: counts are stored per unit of work
(one collected type, one rebuild batch) in a hash and summed on read, so a task that runs twice counts
once; skipped items are keyed by item. The watcher batches these into one status patch per interval.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import redis
from redis.typing import EncodableT, FieldT

from shared import metrics
from shared.items import ItemRef
from shared.models import ItemCounts, NamespacePhase, NamespaceStatus, SkippedItem
from shared.models.times import now_rfc3339, parse_rfc3339
from shared.progress_writes import KEY_TTL, FieldsWrite, ProgressWrites

COUNT_KINDS = ("backedUp", "detached", "rebuilt", "skipped")


@dataclass(frozen=True)
class Reading:
    status: NamespaceStatus
    updated: float | None
    """When a worker last wrote anything for the namespace: the watchdog's sign of life."""


@dataclass(frozen=True)
class NamespaceRun:
    """What every message carries: references, never object bodies. `cluster` and `namespace` name the
    claim that says whether the message may act; `attempt` tells a resumed run's messages from those of
    the attempt it superseded."""

    policy: str
    namespace: str
    run_id: str
    cluster: str
    attempt: int = 1

    def message(self) -> dict[str, str | int]:
        """The keyword arguments of every task of this namespace's run."""
        return {
            "policy": self.policy,
            "namespace": self.namespace,
            "run_id": self.run_id,
            "cluster": self.cluster,
            "attempt": self.attempt,
        }


class Progress:
    def __init__(
        self, client: redis.Redis, policy: str, run_id: str, writes: ProgressWrites | None = None
    ) -> None:
        self.client = client
        self.prefix = f"kpromote:{policy}:{run_id}"
        self.writes = writes or ProgressWrites(client)
        """Where the writes go: at once unless a worker's `ProgressWrites` sends them behind."""

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _write(
        self,
        namespace: str,
        key: str,
        mapping: Mapping[str, str],
        new_fields: Callable[[int], None] | None = None,
    ) -> None:
        """Every write also stamps the namespace's `updated` time: the watchdog's sign of life.
        `new_fields` is told how many of the fields were new (HSET's answer): what a redelivered task
        did not add."""
        # Copied into redis' own field and value types: its Mapping is invariant in the key, so a
        # Mapping[str, str] is refused though every str is a field.
        fields: dict[FieldT, EncodableT] = {name: value for name, value in mapping.items()}
        self.writes.add(FieldsWrite(key, fields, self._key("ns", namespace), new_fields))

    def set(self, namespace: str, **fields: str) -> None:
        self._write(namespace, self._key("ns", namespace), fields)

    def touch(self, namespace: str) -> None:
        """Stamp `updated` now unless something already did: starts the stall clock of a namespace with
        no sign of life yet (its first task not run, or its record lost with a Redis restart)."""
        pipe = self.client.pipeline()
        pipe.hsetnx(self._key("ns", namespace), "updated", str(time.time()))
        pipe.expire(self._key("ns", namespace), KEY_TTL)
        pipe.execute()

    def error(self, namespace: str) -> str | None:
        value = self.client.hget(self._key("ns", namespace), "error")
        if isinstance(value, bytes):  # what a client without decode_responses (ours) answers
            return value.decode() or None
        return value or None

    def bump_resumes(self, namespace: str) -> int:
        """Count a resume and restart the stall clock, so that one stall gets one resume, not one a
        second while the resumed messages wait for a worker."""
        pipe = self.client.pipeline()
        pipe.hincrby(self._key("ns", namespace), "resumes", 1)
        pipe.hset(self._key("ns", namespace), "updated", str(time.time()))
        return int(pipe.execute()[0])

    def phase(self, namespace: str, phase: NamespacePhase, step: str, message: str = "") -> None:
        fields = {"phase": phase.value, "step": step, "message": message}
        if phase in (NamespacePhase.COMPLETED, NamespacePhase.FAILED):
            fields["completionTime"] = now_rfc3339()
        if phase in (NamespacePhase.ROLLED_BACK, NamespacePhase.FAILED_ROLLBACK):
            fields["rollback:completionTime"] = now_rfc3339()
            if phase is NamespacePhase.ROLLED_BACK:
                fields["completionTime"] = fields["rollback:completionTime"]
        self.set(namespace, **fields)

    def totals(self, namespace: str, **totals: int) -> None:
        """What a step has to do (`backedUp`, `detached`, `rebuilt`, `skipped`), so progress reads 76/80."""
        self.set(namespace, **{f"total:{kind}": str(value) for kind, value in totals.items()})

    def rollback_started(self, namespace: str) -> None:
        """The first attempt of a rollback stamps its start; retries keep it."""
        pipe = self.client.pipeline()
        pipe.hsetnx(self._key("ns", namespace), "rollback:startTime", now_rfc3339())
        pipe.execute()

    def rollback_counts(self, namespace: str, **counts: int) -> None:
        """What the rollback has done so far (`podsUnmarked`, `ownersRecreated`, `objectsRestored`,
        `objectsDeleted`, `kept`): set, not added, so a retried rollback reports what it found to do."""
        self.set(namespace, **{f"rollback:{kind}": str(value) for kind, value in counts.items()})

    def count(self, namespace: str, kind: str, unit: str, value: int) -> None:
        """Record `value` objects for one unit of work. A zero adds nothing to the sum, so it is not
        written: most types of a namespace are empty."""
        if not value:
            return

        def counted(new: int) -> None:
            if new:
                metrics.count_objects(kind, unit, value)

        self._write(namespace, self._key("count", namespace, kind), {unit: str(value)}, counted)

    def skip(self, namespace: str, items: Iterable[tuple[ItemRef, str]]) -> None:
        entries = {
            str(ref): json.dumps({"resource": ref.group_resource, "name": ref.name, "reason": reason})
            for ref, reason in items
        }
        if entries:
            self._write(namespace, self._key("skipped", namespace), entries)

    def read(self, namespaces: Sequence[str]) -> list[Reading]:
        """Every namespace's progress in one round trip: the watcher reads them all twice a second, and
        five requests per namespace would not keep up with a thousand namespaces."""
        pipe = self.client.pipeline(transaction=False)
        for namespace in namespaces:
            pipe.hgetall(self._key("ns", namespace))
            for kind in ("backedUp", "detached", "rebuilt"):
                pipe.hvals(self._key("count", namespace, kind))
            pipe.hvals(self._key("skipped", namespace))
        answers = iter(pipe.execute())
        return [self._reading(namespace, *(next(answers) for _ in range(5))) for namespace in namespaces]

    @staticmethod
    def _reading(
        namespace: str,
        record: dict[bytes, bytes],
        backed_up: list[bytes],
        detached: list[bytes],
        rebuilt: list[bytes],
        skipped_entries: list[bytes],
    ) -> Reading:
        fields = {k.decode(): v.decode() for k, v in record.items()}
        skipped = [SkippedItem.model_validate(json.loads(v)) for v in skipped_entries]
        status = NamespaceStatus.model_validate(
            {
                "name": namespace,
                "phase": fields.get("phase", NamespacePhase.PENDING.value),
                "step": fields.get("step", ""),
                "message": fields.get("message") or None,
                "backupLocation": fields.get("backupLocation") or None,
                "backupSha256": fields.get("backupSha256") or None,
                "startTime": fields.get("startTime") or None,
                "completionTime": fields.get("completionTime") or None,
                "durationSeconds": _seconds_between(fields.get("startTime"), fields.get("completionTime")),
                "totals": _prefixed(fields, "total:") or None,
                "rollback": _prefixed(fields, "rollback:") or None,
                "counts": ItemCounts(
                    backed_up=sum(map(int, backed_up)),
                    detached=sum(map(int, detached)),
                    rebuilt=sum(map(int, rebuilt)),
                    skipped=len(skipped),
                ),
                "skipped": sorted(skipped, key=lambda s: (s.resource, s.name)),
            }
        )
        updated = fields.get("updated")
        return Reading(status, float(updated) if updated else None)


def _prefixed(fields: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {key.removeprefix(prefix): value for key, value in fields.items() if key.startswith(prefix)}


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((parse_rfc3339(end) - parse_rfc3339(start)).total_seconds(), 1)
