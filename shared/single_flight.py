"""One computation per key at a time, for the per-process caches of parsed backup files.

A worker's API threads start the rebuild batches of a large namespace together, and each asks for the
same plan and manifest. Without this, every thread that missed the cache parsed the same file at once:
eight parses of a 10,000-object plan held 270 MiB for a moment and cost eight times the CPU of one. With
it, the first thread parses while the others wait for it, then find the result in the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager


class SingleFlight:
    """Per-key locks, kept only while someone holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        """Wait until no other thread holds `key`, then hold it: look in the cache again inside."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
