"""The Celery application every worker and the watcher share: queues, routing and reliability settings.

Tasks are routed by name (`kosmos_promote.<queue>.<step>`), so each worker process consumes only its
step's queue and scales on its own. Reliability follows the measured behaviour on Redis
(docs/celery.md): late acknowledgement with re-queue on worker loss, one prefetched message per
process, and a visibility timeout set in all three places that read it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from functools import cached_property
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from celery.app import backends
from celery.app.amqp import AMQP
from celery.exceptions import Ignore

from shared.settings import settings

if TYPE_CHECKING:
    from shared.progress import NamespaceRun

log = logging.getLogger(__name__)
RUN_FIELDS = ("policy", "namespace", "run_id", "cluster", "attempt")

QUEUES = ("backup", "detach", "rebuild", "rollback")
TASK_MODULES = (
    "services.backup_worker.tasks",
    "services.detach_worker.tasks",
    "services.rebuild_worker.tasks",
    "services.rollback_worker.tasks",
)


def task_name(queue: str, step: str) -> str:
    return f"kosmos_promote.{queue}.{step}"


class PromoteTask(Task):
    """Base of every task: work that its claim says is stale ends quietly (Celery's Ignore: no result,
    no errback, a log line saying why)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from shared.claims import RunHalted

        try:
            with _working_copy_held(kwargs), _progress_sent():
                return super().__call__(*args, **kwargs)
        except RunHalted as halted:
            log.info("%s: %s", self.name, halted)
            raise Ignore() from None


def _working_copy_held(kwargs: dict[str, Any]) -> AbstractContextManager[None]:
    """The task's run's working copy of its backup (S3 only), kept from the sweep while the task runs."""
    if not all(key in kwargs for key in RUN_FIELDS):
        return nullcontext()
    from shared.runtime import runtime

    return runtime().backup(_run_in(kwargs)).held()


@contextmanager
def _progress_sent() -> Iterator[None]:
    """Send the progress the task wrote (a worker sends it behind): what follows the task sees it. A
    task's own failure is what it reports, not a progress write that failed after it."""
    from shared.runtime import runtime

    try:
        yield
    except BaseException:
        with suppress(Exception):
            runtime().progress_writes.flush()
        raise
    runtime().progress_writes.flush()


def _run_in(kwargs: dict[str, Any]) -> NamespaceRun:
    """The namespace run a task's keyword arguments name (every task's message carries it)."""
    from shared.progress import NamespaceRun

    return NamespaceRun(**{key: kwargs[key] for key in RUN_FIELDS})


FAILED_STEP = "kpromote_failed_step"
"""The attribute `failing_as` sets on an exception: the step it escaped from, when not the task's own."""


@contextmanager
def failing_as(step: str) -> Iterator[None]:
    """A task that does another step's work itself (`rebuild.start` creating the first tiers) names that
    step on what fails in it, so the status says where a namespace failed as if the step were its task."""
    try:
        yield
    except Exception as error:
        with suppress(AttributeError):
            setattr(error, FAILED_STEP, step)
        raise


class ForwardTask(PromoteTask):
    """Base of every forward step: a failure is recorded with the namespace's progress before the
    errback runs, so the compensation (and the status) can say what went wrong and where."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        from shared.runtime import runtime

        run = _run_in(kwargs)
        step = getattr(exc, FAILED_STEP, None) or self.name.removeprefix("kosmos_promote.")
        runtime().progress(run).set(run.namespace, error=f"{step}: {type(exc).__name__}: {exc}")
        runtime().progress_writes.flush()


class ShadowedAMQP(AMQP):
    """The `task-sent` event names a message by its shadow (`backup.run promote-shop/shop-1`, set by
    services/pipeline.py), as the worker's `task-received` event does: Celery puts the task name in it, and
    Flower would show a waiting task under that name, or even rename a task it has already seen received
    when the sender's event arrives late (a late task-sent overwrites the name). Only the event changes:
    the message keeps its task name, which routes it and picks the task."""

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(*args, **kwargs)
        shadow = message.headers.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


class PromoteCelery(Celery):
    """Celery, finding its result backend's class once per process. Celery makes a backend per thread
    (they are not thread-safe), and each time looks the class up from the URL by scanning the entry
    points of every installed package: ~10 ms of CPU per pool thread, 5 % of the workers' CPU on twenty
    small namespaces (bench/promote.py --profile)."""

    @cached_property
    def _backend_class(self) -> tuple[type, str]:
        return backends.by_url(self.backend_cls or self.conf.result_backend, self.loader)

    def _get_backend(self) -> Any:
        backend, url = self._backend_class
        return backend(app=self, url=url)


def create_app(broker_url: str | None = None, key_prefix: str | None = None) -> Celery:
    url = broker_url or settings().broker_url
    prefix = settings().key_prefix if key_prefix is None else key_prefix
    visibility: dict[str, object] = {"visibility_timeout": settings().visibility_timeout}
    if prefix:
        visibility["global_keyprefix"] = prefix
    app = PromoteCelery(
        "kosmos_promote",
        broker=url,
        backend=url,
        include=list(TASK_MODULES),
        task_cls=ForwardTask,
        amqp=ShadowedAMQP,
    )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_send_sent_event=True,
        worker_send_task_events=True,
        result_expires=7 * 24 * 3600,
        # Results are read in two places only: a chord's body waits for its header's (rebuild.batch
        # keeps them) and a compensation reads the failed task's error (stored even when ignored). Not
        # storing the rest saves each task a SET and a PUBLISH on Redis.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options=visibility,
        result_backend_transport_options=visibility,
        visibility_timeout=settings().visibility_timeout,
        broker_connection_retry_on_startup=True,
        # On the threads pool this only logs "Failed to cancel active request" (a thread cannot be
        # stopped); False is warned about (the default in Celery 6). Broker restarts: services/worker.py.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # A chord's errback on its body only (a failing batch fails the body), as so far; stated, since
        # Celery means to change the default. services/pipeline.py links it there itself: chord.link_error
        # under this setting warns (CPendingDeprecationWarning) once per chord, i.e. per rebuild.
        task_allow_error_cb_on_chord_header=False,
        task_routes={f"kosmos_promote.{queue}.*": {"queue": queue} for queue in QUEUES},
        task_default_queue="backup",
    )
    return app


app = create_app()
