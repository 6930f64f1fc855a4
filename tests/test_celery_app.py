"""The Celery app's result backend: one instance per thread, as Celery wants for a backend that is not
thread-safe, with its class looked up once per process rather than once per thread. And the task base
class: a task's progress is sent before the task ends."""

from __future__ import annotations

import threading
import uuid
from unittest import mock

import pytest
import redis
from celery.app import backends
from celery.backends.redis import RedisBackend

from services.celery_app import PromoteTask, create_app
from shared import runtime as runtime_module
from shared.progress import NamespaceRun, Progress
from shared.runtime import Runtime
from shared.settings import Settings


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


def test_a_task_sends_the_progress_it_wrote_before_it_ends(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker sends progress behind; what follows a task (its next step, an errback) must see it all."""
    worker_runtime = Runtime(Settings(broker_url=redis_url))
    worker_runtime.progress_writes.send_behind(60)  # nothing sent in the background during the test
    monkeypatch.setattr(runtime_module, "_runtime", worker_runtime)
    app = create_app(redis_url, key_prefix="flush-test:")
    run = NamespaceRun(f"flush-{uuid.uuid4().hex[:8]}", "shop", "run-1", "member1")

    @app.task(base=PromoteTask, name="flush-test.step")
    def step() -> None:
        worker_runtime.progress(run).set(run.namespace, step="written by the task")

    step()

    [reading] = Progress(redis.Redis.from_url(redis_url), run.policy, run.run_id).read([run.namespace])
    assert reading.status.step == "written by the task"
    app.close()
