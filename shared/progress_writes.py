"""How `Progress` writes reach Redis: one round trip each, or sent together a moment later.

The watcher and the CLI read what they have just written, so their writes go at once. A worker's do not
need to: the watcher reads progress twice a second at most, and a small namespace made about 35 writes,
each a transaction of its own with a second write stamping the namespace's `updated` time
(bench/promote.py: a tenth of a worker's CPU on twenty small namespaces, and as many round trips as API
requests). So a worker's writes are sent behind (`send_behind`): collected from all its threads and
sent in order in one pipeline every `interval`, with one `updated` stamp per namespace; and every task
sends what is left when it ends (`flush`, from the task base class), so whatever follows a task, its
next step's task or the errback, sees everything it wrote.

A write that could not be sent (Redis restarting) is kept, in order, for the next flush; the flush at the
end of a task raises, as a write of its own would have.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.typing import EncodableT, FieldT

KEY_TTL = 14 * 24 * 3600
RETRY_PAUSE = 1.0
"""How long the background flush waits after Redis refused one."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldsWrite:
    """Fields set in one hash, and the namespace record whose `updated` time it stamps."""

    key: str
    fields: dict[FieldT, EncodableT]
    namespace_key: str
    new_fields: Callable[[int], None] | None = None
    """Told, once the write is sent, how many of the fields were new (HSET's answer)."""


class ProgressWrites:
    """The writes of one process. Immediate until `send_behind` is called."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.interval: float | None = None
        self._pending: list[FieldsWrite] = []
        self._lock = threading.Lock()
        self._has_pending = threading.Condition(self._lock)
        self._sending = threading.Lock()  # one flush at a time, so writes land in the order they were made
        self._sender: threading.Thread | None = None

    def send_behind(self, interval: float) -> None:
        """From now on, send writes together every `interval` seconds (and at each `flush`)."""
        self.interval = interval

    def add(self, write: FieldsWrite) -> None:
        with self._lock:
            self._pending.append(write)
            self._has_pending.notify()
        if self.interval is None:
            self.flush()
        else:
            self._keep_sending()

    def flush(self) -> None:
        """Send every write made so far, in order, in one round trip."""
        with self._sending:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                answers = _send(self.client, batch)
            except BaseException:
                with self._lock:
                    self._pending[:0] = batch
                raise
        for write, new in zip(batch, answers, strict=True):
            if write.new_fields is not None:
                write.new_fields(new)

    def _keep_sending(self) -> None:
        with self._lock:
            if self._sender is not None and self._sender.is_alive():
                return
            self._sender = threading.Thread(target=self._send_forever, name="progress", daemon=True)
            self._sender.start()

    def _send_forever(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._has_pending.wait()
            time.sleep(self.interval or 0)
            try:
                self.flush()
            except Exception as error:  # kept for the next try; a task's own flush raises it
                log.warning("progress not sent yet, trying again in %.0fs: %s", RETRY_PAUSE, error)
                time.sleep(RETRY_PAUSE)


def _send(client: redis.Redis, batch: list[FieldsWrite]) -> list[int]:
    """The writes, then each hash's expiry and each namespace's `updated` stamp once; HSET's answers."""
    pipe = client.pipeline(transaction=False)
    for write in batch:
        pipe.hset(write.key, mapping=write.fields)
    now = str(time.time())
    for namespace_key in dict.fromkeys(write.namespace_key for write in batch):
        pipe.hset(namespace_key, "updated", now)
    for key in dict.fromkeys(key for write in batch for key in (write.key, write.namespace_key)):
        pipe.expire(key, KEY_TTL)
    return [int(answer) for answer in pipe.execute()[: len(batch)]]
