"""Structured logs and Prometheus metrics, in process: what each log line carries, that Secret data never
reaches a log, that task messages carry references only, and that every counter counts what it says once."""

from __future__ import annotations

import base64
import inspect
import io
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from prometheus_client import CollectorRegistry, generate_latest

from kubesim import SimulatedCluster
from kubesim.testing import SimAdmin
from services import task_logs, task_metrics
from services.celery_app import app as promote_app
from services.pipeline import namespace_canvas, on_failure, rebuild_canvas
from shared import logs, metrics
from shared.kube import Kube, RetryPolicy
from shared.models import PolicyPhase
from shared.progress import NamespaceRun, Progress
from shared.runtime import Runtime
from shared.settings import Settings, settings
from shared.steps.rebuild import Batch, TierPlan
from tests.pipeline.conftest import free_port

UNUSED_PORT_URL = "redis://127.0.0.1:1/0"

PASSWORD = base64.b64encode(b"s3cr3t-shop-1").decode()
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "web-secret", "namespace": "shop-1"},
    "type": "Opaque",
    "data": {"password": PASSWORD},
}
TASKS = Celery("metrics-logs-test", set_as_current=False)
"""Tasks run eagerly (`apply`): Celery pushes them on its task stack and sends the task signals, as a
worker does. Not shared, so that they stay out of the project's app, which has tasks of the same names."""


@TASKS.task(name="kosmos_promote.rebuild.batch", shared=False)
def batch(
    policy: str,
    namespace: str,
    run_id: str,
    cluster: str,
    attempt: int,
    group_resource: str,
    offset: int,
    limit: int,
) -> int:
    logging.getLogger("shared.steps.rebuild").info("creating %d %s", limit, group_resource)
    if group_resource == "fails":
        raise RuntimeError("the control plane refused")
    return limit


@TASKS.task(name="kosmos_promote.rollback.compensate", shared=False)
def compensate(
    failed_task_id: str, policy: str, namespace: str, run_id: str, cluster: str, attempt: int
) -> list[str]:
    logging.getLogger("shared.steps.rollback").info("rolling back")
    return ["pods web-0 is missing"] if failed_task_id == "leaves-differences" else []


@TASKS.task(name="kosmos_promote.backup.run", shared=False)
def backup_run(policy: str, namespace: str, run_id: str, cluster: str, attempt: int, fail: int = 0) -> None:
    if fail:
        raise RuntimeError("the member refused")


@TASKS.task(name="kosmos_promote.rebuild.start", shared=False)
def rebuild_start(policy: str, namespace: str, run_id: str, cluster: str, attempt: int) -> None:
    """Fans its API calls out to the process's API threads, as the steps do."""
    FAN_OUT[0].fan_out(lambda n: logging.getLogger("shared.kube.client").info("request %d", n), [1, 2])


@TASKS.task(name="kosmos_promote.rebuild.verify", shared=False)
def rebuild_verify(policy: str, namespace: str, run_id: str, cluster: str, attempt: int) -> None:
    pass


FAN_OUT: list[Runtime] = []


def _run(policy: str, namespace: str, run_id: str, **extra: object) -> dict[str, object]:
    """A task's keyword arguments, as the pipeline sends them."""
    return {**NamespaceRun(policy, namespace, run_id, "member1").message(), **extra}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("worker", stream)
    task_logs.install()
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


# ----------------------------------------------------------------------------------------------- logs
def test_a_task_log_line_is_one_json_object_with_the_task_references(captured: io.StringIO) -> None:
    batch.apply(kwargs=_run("promote-shop", "shop-1", "run-7", group_resource="pods", offset=50, limit=50))
    logging.getLogger("services.worker").info("between tasks")

    [in_task] = [line for line in lines(captured) if line["message"] == "creating 50 pods"]
    assert in_task == {
        "time": in_task["time"],
        "level": "INFO",
        "logger": "shared.steps.rebuild",
        "message": "creating 50 pods",
        "component": "worker",
        "policy": "promote-shop",
        "namespace": "shop-1",
        "run": "run-7",
        "step": "rebuild.batch",
    }
    assert in_task["time"].endswith("+00:00")
    [outside] = [line for line in lines(captured) if line["message"] == "between tasks"]
    assert not {"policy", "namespace", "run", "step"} & outside.keys()


def test_the_compensation_is_attributed_to_its_namespace_not_to_the_failed_task_id(
    captured: io.StringIO,
) -> None:
    compensate.apply(args=("0b8e-failed-task",), kwargs=_run("promote-shop", "shop-2", "run-7"))
    [line] = [line for line in lines(captured) if line["message"] == "rolling back"]
    assert (line["policy"], line["namespace"], line["run"], line["step"]) == (
        "promote-shop",
        "shop-2",
        "run-7",
        "rollback.compensate",
    )


def test_a_terminal_gets_readable_text_with_the_context() -> None:
    stream = Terminal()
    handler = logs.configure("worker", stream)
    task_logs.install()
    try:
        batch.apply(
            kwargs=_run("promote-shop", "shop-1", "run-7", group_resource="services", offset=0, limit=50)
        )
    finally:
        logging.getLogger().removeHandler(handler)
    [text] = [line for line in stream.getvalue().splitlines() if "creating 50 services" in line]
    assert " INFO shared.steps.rebuild: creating 50 services [" in text
    assert text.endswith("[policy=promote-shop namespace=shop-1 run=run-7 step=rebuild.batch]")


def test_configure_replaces_its_own_handler_and_leaves_others(captured: io.StringIO) -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if h not in logs._installed]
    second = io.StringIO()
    handler = logs.configure("watcher", second)
    try:
        logging.getLogger("kopf").info("watching")
        assert [h for h in root.handlers if h not in logs._installed] == others
        assert captured.getvalue() == ""
        assert lines(second)[0]["component"] == "watcher"
    finally:
        root.removeHandler(handler)


def test_secret_data_in_a_logged_body_is_masked_as_json_as_a_dict_and_in_a_traceback(
    captured: io.StringIO,
) -> None:
    log = logging.getLogger("shared.steps.backup")
    log.info("collected %s", SECRET)
    log.warning("refused: %s", json.dumps({**SECRET, "stringData": {"token": "plain-text-token"}}))
    try:
        raise ValueError(f"cannot create {json.dumps(SECRET)}")
    except ValueError:
        log.exception("rebuild failed")
    config_map = {"kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": {"color": "blue"}}
    log.info("collected %s", config_map)

    text = captured.getvalue()
    assert PASSWORD not in text and "plain-text-token" not in text, text
    as_dict, as_json, failed, kept = lines(captured)
    assert "'data': {'password': '***'}" in as_dict["message"]
    assert '"data": {"password": "***"}' in as_json["message"]
    assert '"stringData": {"token": "***"}' in as_json["message"]
    assert '\\"password\\": \\"***\\"' in json.dumps(failed["exception"])
    assert "'color': 'blue'" in kept["message"], "only Secrets are masked"


def test_redact_masks_every_secret_in_a_list_and_nothing_else() -> None:
    other = {
        "kind": "Secret",
        "metadata": {"name": "tls"},
        "data": {"tls.crt": "Q0VSVA==", "tls.key": "S0VZ"},
    }
    text = json.dumps({"items": [SECRET, other], "kind": "List", "metadata": {"name": "data"}})
    redacted = logs.redact(text)
    assert "Q0VSVA==" not in redacted and "S0VZ" not in redacted and PASSWORD not in redacted
    assert json.loads(redacted)["items"][1]["data"] == {"tls.crt": "***", "tls.key": "***"}
    assert json.loads(redacted)["metadata"] == {"name": "data"}


def test_task_messages_carry_references_only() -> None:
    """What goes through Redis (and shows in Flower, and in every task log line) is policy, namespace,
    run id and small scalars: never an object, so never a Secret."""
    run = NamespaceRun("promote-shop", "shop-1", "run-7", "member1")
    canvases = [
        namespace_canvas(promote_app, run),
        rebuild_canvas(
            promote_app,
            run,
            [
                TierPlan("config", [Batch("secrets", 0, 50), Batch("configmaps", 0, 50)]),
                TierPlan("pods", [Batch("pods", 0, 50)]),
            ],
        ),
        on_failure(promote_app, run),
    ]
    messages = [sig for canvas in canvases for sig in _signatures(json.loads(json.dumps(canvas)))]
    names = {name for name, _ in messages}
    assert {
        "kosmos_promote.backup.run",
        "kosmos_promote.detach.run",
        "kosmos_promote.rebuild.start",
        "kosmos_promote.rebuild.batch",
        "kosmos_promote.rebuild.tier_done",
        "kosmos_promote.rebuild.tiers",
        "kosmos_promote.rebuild.verify",
        "kosmos_promote.rollback.compensate",
    } <= names
    for name, kwargs in messages:
        assert kwargs["policy"] == "promote-shop" and kwargs["namespace"] == "shop-1", name
        assert (kwargs["run_id"], kwargs["cluster"], kwargs["attempt"]) == ("run-7", "member1", 1), name
        assert all(_reference(a) for a in kwargs.values()), (name, kwargs)


def test_every_task_takes_references_and_scalars_only() -> None:
    """The same, for tasks that are not in a canvas above (`rebuild.tiers` takes tier names)."""
    promote_app.loader.import_default_modules()
    tasks = {name: task for name, task in promote_app.tasks.items() if name.startswith("kosmos_promote.")}
    assert len(tasks) >= 9
    for name, task in tasks.items():
        for parameter in inspect.signature(task.run).parameters.values():
            assert parameter.annotation in ("str", "int", "float", "list[str]"), (name, parameter)


def _reference(arg: Any) -> bool:
    """A name, a number, or a list of names (the tiers one `rebuild.tiers` task creates)."""
    return isinstance(arg, str | int) or (isinstance(arg, list) and all(isinstance(x, str) for x in arg))


def _signatures(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if str(node.get("task", "")).startswith("kosmos_promote."):
            assert not node.get("args"), node  # references by keyword only
            yield node["task"], dict(node.get("kwargs") or {})
        for value in node.values():
            yield from _signatures(value)
    elif isinstance(node, list):
        for value in node:
            yield from _signatures(value)


# -------------------------------------------------------------------------------------------- metrics
def test_objects_are_counted_once_per_unit_whatever_the_redeliveries(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    progress = Progress(client, f"metrics-{uuid.uuid4().hex[:8]}", "run-1")
    rebuilt = ("kpromote_objects_total", {"step": "rebuild", "resource": "widgets.example.com"})
    related = ("kpromote_objects_total", {"step": "backup", "resource": "storageclasses.storage.k8s.io"})
    before = sample(rebuilt[0], **rebuilt[1]), sample(related[0], **related[1])

    progress.count("shop-1", "rebuilt", "widgets.example.com[0]", 50)
    progress.count("shop-1", "rebuilt", "widgets.example.com[0]", 50)  # the same batch, redelivered
    progress.count("shop-1", "rebuilt", "widgets.example.com[50]", 7)
    progress.count("shop-1", "backedUp", "related storageclasses.storage.k8s.io", 2)
    progress.count("shop-1", "backedUp", "related storageclasses.storage.k8s.io", 2)

    after = sample(rebuilt[0], **rebuilt[1]), sample(related[0], **related[1])
    assert (after[0] - before[0], after[1] - before[1]) == (57, 2)
    assert progress.read(["shop-1"])[0].status.counts.rebuilt == 57


def test_task_signals_time_tasks_and_count_failures_and_compensation_outcomes(redis_url: str) -> None:
    task_metrics.instrument_worker(redis.Redis.from_url(redis_url))
    before = {
        "durations": sample("kpromote_task_duration_seconds_count", task="rebuild.batch"),
        "failures": sample("kpromote_failures_total", task="rebuild.batch"),
        "rolled_back": sample("kpromote_compensations_total", outcome="rolled_back"),
        "failed_rollback": sample("kpromote_compensations_total", outcome="failed_rollback"),
    }
    run = f"run-{uuid.uuid4().hex[:8]}"

    batch.apply(kwargs=_run("p", "ns", run, group_resource="pods", offset=0, limit=5))
    batch.apply(kwargs=_run("p", "ns", run, group_resource="fails", offset=0, limit=5))
    compensate.apply(args=("",), kwargs=_run("p", "ns", run))
    compensate.apply(args=("leaves-differences",), kwargs=_run("p", "ns", run))

    after = {
        "durations": sample("kpromote_task_duration_seconds_count", task="rebuild.batch"),
        "failures": sample("kpromote_failures_total", task="rebuild.batch"),
        "rolled_back": sample("kpromote_compensations_total", outcome="rolled_back"),
        "failed_rollback": sample("kpromote_compensations_total", outcome="failed_rollback"),
    }
    assert {key: after[key] - before[key] for key in before} == {
        "durations": 2,
        "failures": 1,
        "rolled_back": 1,
        "failed_rollback": 1,
    }
    assert sample("kpromote_tasks_in_progress", task="rebuild.batch") == 0


def test_namespaces_by_phase_follow_the_policy_status_events() -> None:
    def phases() -> dict[str, float]:
        return {p: sample("kpromote_namespaces", phase=p) for p in ("Pending", "Rebuilding", "Completed")}

    base = phases()
    metrics.observe_policy(type=None, name="gauge-a", status={"namespaces": [{"name": "a"}, {"name": "b"}]})
    metrics.observe_policy(
        type="MODIFIED",
        name="gauge-a",
        status={"namespaces": [{"name": "a", "phase": "Completed"}, {"name": "b", "phase": "Rebuilding"}]},
    )
    metrics.observe_policy(type="ADDED", name="gauge-b", status={})
    assert {p: v - base[p] for p, v in phases().items()} == {"Pending": 0, "Rebuilding": 1, "Completed": 1}
    metrics.observe_policy(type="DELETED", name="gauge-a", status={})
    assert phases() == base


def test_api_requests_and_retries_are_counted_by_cluster(cluster: SimulatedCluster, admin: SimAdmin) -> None:
    with Kube.from_kubeconfig(cluster.kubeconfig(), retry=RetryPolicy(attempts=3, base_delay=0.01)) as kube:
        configmaps = kube.discovery.resolve("configmaps")
        ok = sample("kpromote_api_requests_total", cluster=kube.name, verb="GET", code="200")
        failed = sample("kpromote_api_requests_total", cluster=kube.name, verb="GET", code="500")
        retries = sample("kpromote_api_retries_total", cluster=kube.name)
        admin.add_fault(verb="get", resource="configmaps", status=500, nth=1)
        kube.get(configmaps, "default", "kube-root-ca.crt")
        assert sample("kpromote_api_requests_total", cluster=kube.name, verb="GET", code="200") == ok + 1
        assert sample("kpromote_api_requests_total", cluster=kube.name, verb="GET", code="500") == failed + 1
        assert sample("kpromote_api_retries_total", cluster=kube.name) == retries + 1
        assert kube.retries == 1


def test_the_exporter_serves_the_metrics_over_http() -> None:
    port = free_port()
    metrics.serve(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "# TYPE kpromote_objects_total counter" in text
    assert "# TYPE kpromote_step_duration_seconds histogram" in text


def test_a_step_is_timed_end_to_end_once_whatever_the_redeliveries(redis_url: str) -> None:
    """rebuild runs from rebuild.start to the end of rebuild.verify, whichever workers run them: its start is
    the first delivery's, and only the first end observes."""
    task_metrics.instrument_worker(redis.Redis.from_url(redis_url))
    kwargs = _run(f"steps-{uuid.uuid4().hex[:8]}", "shop-1", "run-1")

    def observed() -> tuple[float, float, float]:
        labels = {"step": "rebuild", "outcome": "succeeded"}
        return (
            sample("kpromote_step_duration_seconds_count", **labels),
            sample("kpromote_step_duration_seconds_sum", **labels),
            sample("kpromote_steps_started_total", step="rebuild"),
        )

    count, total, started = observed()
    FAN_OUT[:] = [Runtime(Settings())]
    rebuild_start.apply(kwargs=kwargs)
    time.sleep(0.3)
    rebuild_start.apply(kwargs=kwargs)  # redelivered: the step started at the first
    assert observed()[0] == count, "a step that has not ended is not observed"
    assert observed()[2] == started + 1, "a started step shows at once, and once"
    rebuild_verify.apply(kwargs=kwargs)
    rebuild_verify.apply(kwargs=kwargs)  # redelivered after it ended: not observed again
    after = observed()
    assert after[0] == count + 1
    assert after[1] - total >= 0.3


def test_a_failed_step_is_observed_once_as_failed(redis_url: str) -> None:
    task_metrics.instrument_worker(redis.Redis.from_url(redis_url))
    kwargs = _run(f"steps-{uuid.uuid4().hex[:8]}", "shop-1", "run-1")
    failed = sample("kpromote_step_duration_seconds_count", step="backup", outcome="failed")
    succeeded = sample("kpromote_step_duration_seconds_count", step="backup", outcome="succeeded")
    backup_run.apply(kwargs={**kwargs, "fail": 1})
    backup_run.apply(kwargs={**kwargs, "fail": 1})
    backup_run.apply(kwargs=kwargs)  # a late redelivery that succeeds: the step has ended already
    assert sample("kpromote_step_duration_seconds_count", step="backup", outcome="failed") == failed + 1
    assert sample("kpromote_step_duration_seconds_count", step="backup", outcome="succeeded") == succeeded


def test_the_step_clock_keeps_the_first_start_and_the_first_end(redis_url: str) -> None:
    clock = metrics.StepClock(redis.Redis.from_url(redis_url))
    policy = f"clock-{uuid.uuid4().hex[:8]}"
    assert clock.start(policy, "run-1", "shop-1", "detach", now=100.0)
    assert not clock.start(policy, "run-1", "shop-1", "detach", now=150.0)
    assert clock.end(policy, "run-1", "shop-1", "detach", "succeeded", now=160.0) == 60.0
    assert clock.end(policy, "run-1", "shop-1", "detach", "succeeded", now=170.0) is None
    assert clock.end(policy, "run-1", "shop-2", "detach", "failed", now=170.0) is None, "no start: no guess"
    assert clock.client.ttl(clock.key(policy, "run-1", "shop-1")) > 0


def test_a_broken_step_clock_never_fails_the_task(captured: io.StringIO) -> None:
    task_metrics.instrument_worker(redis.Redis.from_url(UNUSED_PORT_URL))
    try:
        result = rebuild_verify.apply(kwargs=_run("p", "ns", "run"))
        assert result.successful()
        assert any("step duration not recorded" in line["message"] for line in lines(captured))
    finally:
        task_metrics._clock.clear()


def test_each_policy_has_one_phase_at_a_time() -> None:
    def phases(policy: str) -> dict[str, float]:
        return {p.value: sample("kpromote_policy_phase", policy=policy, phase=p.value) for p in PolicyPhase}

    metrics.observe_policy(type="ADDED", name="phase-a", status={})
    assert phases("phase-a") == {p.value: float(p is PolicyPhase.PENDING) for p in PolicyPhase}
    metrics.observe_policy(type="MODIFIED", name="phase-a", status={"phase": "Running"})
    metrics.observe_policy(type="MODIFIED", name="phase-b", status={"phase": "FailedRollback"})
    assert phases("phase-a") == {p.value: float(p is PolicyPhase.RUNNING) for p in PolicyPhase}
    assert sample("kpromote_policy_phase", policy="phase-b", phase="FailedRollback") == 1
    metrics.observe_policy(type="DELETED", name="phase-a", status={})
    from prometheus_client import REGISTRY

    assert (
        REGISTRY.get_sample_value("kpromote_policy_phase", {"policy": "phase-a", "phase": "Running"}) is None
    )
    metrics.observe_policy(type="DELETED", name="phase-b", status={})


def test_a_policy_whose_pods_a_member_controller_took_back_is_a_gauge_of_one() -> None:
    """The gauge follows the condition ControlledInMember in the status, and goes with the policy."""
    from prometheus_client import REGISTRY

    def taken_back(status: str) -> dict[str, Any]:
        return {"phase": "Completed", "conditions": [{"type": "ControlledInMember", "status": status}]}

    metrics.observe_policy(type="ADDED", name="looked-after", status={"phase": "Completed"})
    assert sample("kpromote_policy_controlled_in_member", policy="looked-after") == 0
    metrics.observe_policy(type="MODIFIED", name="looked-after", status=taken_back("True"))
    assert sample("kpromote_policy_controlled_in_member", policy="looked-after") == 1
    metrics.observe_policy(type="MODIFIED", name="looked-after", status=taken_back("False"))
    assert sample("kpromote_policy_controlled_in_member", policy="looked-after") == 0
    metrics.observe_policy(type="DELETED", name="looked-after", status={})
    assert (
        REGISTRY.get_sample_value("kpromote_policy_controlled_in_member", {"policy": "looked-after"}) is None
    )


def test_the_watchdog_counts_stalls_by_policy() -> None:
    before = sample("kpromote_stalls_total", policy="stalled")
    metrics.namespace_stalled("stalled")
    assert sample("kpromote_stalls_total", policy="stalled") == before + 1


def test_queue_lengths_are_read_from_redis_at_each_scrape(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"queues-{uuid.uuid4().hex[:8]}:"
    registry = CollectorRegistry()
    metrics.watch_queues(redis_url, ["backup", "rebuild"], prefix, registry=registry)
    try:
        client.lpush(prefix + "rebuild", *[b"message"] * 3)
        client.hset(prefix + "unacked", mapping={"tag-1": b"m", "tag-2": b"m"})
        assert registry.get_sample_value("kpromote_queue_length", {"queue": "rebuild"}) == 3
        assert registry.get_sample_value("kpromote_queue_length", {"queue": "backup"}) == 0
        assert registry.get_sample_value("kpromote_tasks_unacked") == 2
        assert registry.get_sample_value("kpromote_broker_up") == 1
        client.rpop(prefix + "rebuild")
        assert registry.get_sample_value("kpromote_queue_length", {"queue": "rebuild"}) == 2
    finally:
        client.delete(prefix + "rebuild", prefix + "unacked")


def test_a_broker_that_does_not_answer_leaves_the_scrape_working() -> None:
    registry = CollectorRegistry()
    metrics.watch_queues(UNUSED_PORT_URL, ["backup"], registry=registry)
    assert registry.get_sample_value("kpromote_broker_up") == 0
    assert registry.get_sample_value("kpromote_queue_length", {"queue": "backup"}) is None
    assert b"kpromote_broker_up 0.0" in generate_latest(registry)


def test_no_created_series_and_every_task_series_from_the_start() -> None:
    task_metrics.instrument_worker()
    text = generate_latest().decode()
    assert "_created" not in text
    assert 'kpromote_failures_total{task="rebuild.verify"} 0.0' in text
    assert 'kpromote_step_duration_seconds_count{outcome="failed",step="compensate"}' in text
    assert {"kpromote_queue_length", "kpromote_step_duration_seconds_bucket"} <= metrics.exported_names()
    assert "kpromote_objects" not in metrics.exported_names(), "a counter is served as _total only"


# ------------------------------------------------------------------------------------ log settings
def test_the_received_line_and_the_api_threads_carry_the_task_references(captured: io.StringIO) -> None:
    data = {
        "id": "0b8e",
        "name": "kosmos_promote.rebuild.batch",
        "args": "()",
        "kwargs": repr(_run("promote-shop", "shop-1", "run-7", group_resource="pods", offset=0, limit=5)),
        "eta": None,
    }
    logging.getLogger("celery.worker.strategy").info(
        "Task %(name)s[%(id)s] received", data, extra={"data": data}
    )
    FAN_OUT[:] = [Runtime(Settings())]
    rebuild_start.apply(kwargs=_run("promote-shop", "shop-2", "run-7"))
    FAN_OUT[0].fan_out(lambda n: logging.getLogger("shared.kube.client").info("later %d", n), [1])

    def context(line: dict[str, Any]) -> tuple[str | None, ...]:
        return tuple(line.get(key) for key in ("policy", "namespace", "run", "step"))

    by_message = {line["message"]: line for line in lines(captured)}
    assert context(by_message["Task kosmos_promote.rebuild.batch[0b8e] received"]) == (
        "promote-shop",
        "shop-1",
        "run-7",
        "rebuild.batch",
    )
    for message in ("request 1", "request 2"):
        assert by_message[message]["logger"] == "shared.kube.client"
        assert context(by_message[message]) == ("promote-shop", "shop-2", "run-7", "rebuild.start"), message
    assert context(by_message["later 1"]) == (None, None, None, None), "the task's context ends with it"


def test_kopf_timer_lines_are_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    kopf = logging.getLogger("kopf.objects")
    for level, shown in (("INFO", []), ("DEBUG", ["DEBUG"])):
        stream = io.StringIO()
        handler = logs.configure("watcher", stream, level=level)
        try:
            kopf.info("Timer 'report' succeeded.")
            kopf.info("Handler 'start' succeeded.")
        finally:
            logging.getLogger().removeHandler(handler)
        found = {line["message"]: line["level"] for line in lines(stream)}
        assert [found[m] for m in found if m.startswith("Timer")] == shown, level
        assert found["Handler 'start' succeeded."] == "INFO"


def test_format_and_level_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPROMOTE_LOG_FORMAT", "text")
    monkeypatch.setenv("KPROMOTE_LOG_LEVEL", "warning")
    settings.cache_clear()
    stream = io.StringIO()
    handler = logs.configure("worker", stream)
    task_logs.install()
    try:
        logging.getLogger("shared.steps.backup").info("not shown")
        logging.getLogger("shared.steps.backup").warning("shown as text")
        assert logs.current_format() == "text"
    finally:
        logging.getLogger().removeHandler(handler)
        monkeypatch.undo()
        settings.cache_clear()
        logs.configure("worker", io.StringIO())  # back to the defaults for the tests after
        logging.getLogger().removeHandler(logs._installed[0])
    assert stream.getvalue().splitlines() == [
        line
        for line in stream.getvalue().splitlines()
        if " WARNING shared.steps.backup: shown as text" in line
    ]
    assert len(stream.getvalue().splitlines()) == 1
