"""Issue 12 item 4, without a browser: every message of a run has a shadow name that says its step,
policy and namespace (what Flower's Name column and the worker's log lines show), the shadow changes
nothing of routing or of which task runs, and `kpromote flower` asks Flower for columns it knows.

The browser's view is scripts/flower_screenshot.py (docs/flower-tasks.png); Flower's API during a real
promote is checked in tests/pipeline/test_observability.py.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Task
from celery.contrib.testing.worker import start_worker

from services import task_logs
from services.celery_app import QUEUES, create_app
from services.celery_app import app as promote_app
from services.flower import TASKS_COLUMNS, flower_argv
from services.pipeline import _sig, namespace_canvas, on_failure, rebuild_canvas, shadow_name
from shared import logs
from shared.progress import NamespaceRun
from shared.steps.rebuild import Batch, TierPlan

RUN = NamespaceRun("promote-shop", "shop-1", "run-7", "member1")

try:  # the installed Flower's own list; older ones document the same slugs (flower.readthedocs.io, config)
    from flower.views.tasks import TASK_COLUMNS
except ImportError:  # pragma: no cover
    TASK_COLUMNS = dict.fromkeys(
        [
            *("name", "uuid", "state", "args", "kwargs", "result", "received", "started", "runtime"),
            *("worker", "retries", "revoked", "exception", "expires", "eta"),
        ]
    )


def _messages(node: Any) -> Iterator[dict[str, Any]]:
    """Every task signature of a serialized canvas (chains, chords, groups, links, errbacks)."""
    if isinstance(node, dict):
        if str(node.get("task", "")).startswith("kosmos_promote."):
            yield node
        for value in node.values():
            yield from _messages(value)
    elif isinstance(node, list):
        for value in node:
            yield from _messages(value)


def test_every_message_of_a_run_is_shadowed_with_its_step_policy_and_namespace() -> None:
    canvases = [
        namespace_canvas(promote_app, RUN),
        rebuild_canvas(
            promote_app,
            RUN,
            [
                TierPlan("crds", [Batch("customresourcedefinitions.apiextensions.k8s.io", 0, 50)]),
                TierPlan("namespaces", [Batch("namespaces", 0, 50)]),
                TierPlan("pods", [Batch("pods", 0, 50), Batch("pods", 50, 50)]),
            ],
        ),
        on_failure(promote_app, RUN),
    ]
    messages = [m for canvas in canvases for m in _messages(json.loads(json.dumps(canvas)))]
    shadows = {m["options"]["shadow"] for m in messages}
    assert {
        "backup.run promote-shop/shop-1",
        "detach.run promote-shop/shop-1",
        "rebuild.start promote-shop/shop-1",
        "rebuild.tiers promote-shop/shop-1 crds,namespaces",
        "rebuild.batch promote-shop/shop-1 pods[0:50]",
        "rebuild.batch promote-shop/shop-1 pods[50:100]",
        "rebuild.tier_done promote-shop/shop-1 pods",
        "rebuild.verify promote-shop/shop-1",
        "rollback.compensate promote-shop/shop-1",
    } == shadows

    promote_app.loader.import_default_modules()
    for message in messages:
        name, shadow = message["task"], message["options"]["shadow"]
        queue = name.split(".")[1]
        # The shadow names the same step as the task name, which alone routes and picks the task.
        assert shadow.split(" ")[0] == name.removeprefix("kosmos_promote."), message
        assert name in promote_app.tasks, name
        route = promote_app.amqp.router.route(dict(message["options"]), name, (), message["kwargs"])
        assert route["queue"].name == queue, (name, route)


def test_a_resumed_attempt_says_so_in_its_name() -> None:
    resumed = NamespaceRun("promote-shop", "shop-1", "run-7", "member1", attempt=3)
    assert shadow_name("backup", "run", resumed) == "backup.run promote-shop/shop-1 (attempt 3)"
    assert (
        shadow_name("rebuild", "tier_done", RUN, tier="pods") == "rebuild.tier_done promote-shop/shop-1 pods"
    )


def test_a_shadowed_message_routes_to_its_queue_and_runs_the_task_of_its_name(redis_url: str) -> None:
    """A real worker consuming only `detach`: the message sent as the pipeline sends it (`_sig`, with its
    shadow) reaches it and runs the registered task, which knows itself by its own name."""
    app = create_app(redis_url, key_prefix=f"shadow-{uuid.uuid4().hex[:8]}:")
    ran: list[tuple[str, str | None, str]] = []

    @app.task(name="kosmos_promote.detach.probe", base=Task, bind=True, shared=False, ignore_result=False)
    def probe(self: Task, policy: str, namespace: str, run_id: str, cluster: str, attempt: int) -> str:
        ran.append((self.name, self.request.shadow, self.request.delivery_info["routing_key"]))
        return f"{policy}/{namespace}"

    with start_worker(app, queues=["detach"], pool="threads", concurrency=1, perform_ping_check=False):
        result = _sig(app, "detach", "probe", RUN).apply_async()
        assert result.get(timeout=30) == "promote-shop/shop-1"
    assert ran == [("kosmos_promote.detach.probe", "detach.probe promote-shop/shop-1", "detach")]
    app.close()


def test_the_sent_event_names_the_message_by_its_shadow_and_the_message_keeps_its_task_name() -> None:
    """Flower learns a waiting task's name from `task-sent`: the shadow there too, else it shows the task
    name, and a late task-sent would rename a task already seen received."""
    for create_sent_event in (True, False):
        message = promote_app.amqp.create_task_message(
            "0b8e",
            "kosmos_promote.backup.run",
            kwargs=RUN.message(),
            shadow="backup.run promote-shop/shop-1",
            create_sent_event=create_sent_event,
        )
        assert message.headers["task"] == "kosmos_promote.backup.run"
        assert message.headers["shadow"] == "backup.run promote-shop/shop-1"
        if create_sent_event:
            assert message.sent_event["name"] == "backup.run promote-shop/shop-1"
        else:
            assert message.sent_event is None
    plain = promote_app.amqp.create_task_message("0b8f", "celery.ping", create_sent_event=True)
    assert plain.sent_event["name"] == "celery.ping"


def test_the_received_line_of_a_shadowed_message_carries_the_task_references() -> None:
    """Celery's "Task … received" line names the message by its shadow: the log context still gets the
    step (the shadow's first word) and the references."""
    stream = io.StringIO()
    root, level = logging.getLogger(), logging.getLogger().level
    handler = logs.configure("worker", stream)
    task_logs.install()
    try:
        data = {
            "id": "0b8e",
            "name": "rebuild.batch promote-shop/shop-1 pods[0:50]",
            "args": "()",
            "kwargs": repr({**RUN.message(), "group_resource": "pods", "offset": 0, "limit": 50}),
            "eta": None,
        }
        logging.getLogger("celery.worker.strategy").info(
            "Task %(name)s[%(id)s] received", data, extra={"data": data}
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines() if "received" in text]
    assert (line["policy"], line["namespace"], line["run"], line["step"]) == (
        "promote-shop",
        "shop-1",
        "run-7",
        "rebuild.batch",
    )


def test_kpromote_flower_passes_tasks_columns_flower_knows() -> None:
    argv = flower_argv(5555, "127.0.0.1", ["u:p"])
    [option] = [a for a in argv if a.startswith("--tasks_columns=")]
    columns = option.removeprefix("--tasks_columns=").split(",")
    assert columns == list(TASKS_COLUMNS)
    assert {"name", "state", "kwargs", "received", "runtime", "worker"} <= set(columns)
    assert set(columns) <= TASK_COLUMNS.keys(), "a column the installed Flower does not know is dropped"
    assert argv[:3] == ["flower", "--address=127.0.0.1", "--port=5555"]
    assert "--basic-auth=u:p" in argv
    assert not any(a.startswith("--basic-auth") for a in flower_argv(5555, "127.0.0.1", []))


@pytest.mark.parametrize("queue", QUEUES)
def test_every_queue_routes_by_task_name_alone(queue: str) -> None:
    route = promote_app.amqp.router.route({"shadow": "anything p/n"}, f"kosmos_promote.{queue}.x", (), {})
    assert route["queue"].name == queue
