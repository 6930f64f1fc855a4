"""The Celery app's result backend: one instance per thread, as Celery wants for a backend that is not
thread-safe, with its class looked up once per process rather than once per thread."""

from __future__ import annotations

import threading
from unittest import mock

from celery.app import backends
from celery.backends.redis import RedisBackend

from services.celery_app import create_app


def test_each_thread_has_its_own_backend_of_a_class_found_once(redis_url: str) -> None:
    app = create_app(redis_url, key_prefix="backend-test:")
    seen: list[object] = []
    with mock.patch.object(backends, "by_url", wraps=backends.by_url) as lookup:
        seen.append(app.backend)
        thread = threading.Thread(target=lambda: seen.append(app.backend))
        thread.start()
        thread.join()
    assert all(isinstance(backend, RedisBackend) for backend in seen)
    assert seen[0] is not seen[1]
    assert lookup.call_count == 1
    app.close()
