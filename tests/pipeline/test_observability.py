"""Operating a promote as a platform team would: Prometheus metrics from the workers and the watcher,
JSON logs attributed to the namespace, Flower listing the tasks, and the namespace's Secret nowhere."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubesim.seed import seed_namespace
from kubesim.testing import wait_until
from tests.pipeline.conftest import Installation, free_port

NAMESPACE = "obs-1"
POLICY = "obs"
AUTH = "Basic " + base64.b64encode(b"u:p").decode()


def _get(url: str, auth: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def _answers(url: str) -> str | None:
    try:
        return _get(url)
    except (urllib.error.URLError, ConnectionError):
        return None


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


@pytest.fixture
def flower(installation: Installation, tmp_path: Path) -> Iterator[str]:
    """`kpromote flower` as deployed, with basic auth; yields its URL once it receives the workers' events
    (a worker seen online), so no task of the promote can be sent before Flower listens."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "flower.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "services", "flower", "--port", str(port), "--basic-auth", "u:p"],
            env=installation.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: process.poll() is None and _answers(f"{url}/healthcheck") == "OK",
            timeout=60,
            what=f"Flower to answer (log: {log})",
        )
        wait_until(
            lambda: "flower_worker_online{" in (_answers(f"{url}/metrics") or ""),
            timeout=30,
            what="Flower to receive the workers' events",
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_promote_is_observable_and_its_secret_appears_nowhere(
    installation: Installation, flower: str, tmp_path: Path
) -> None:
    rebuilt_before = _rebuilt(_worker_metrics(installation))
    seed_namespace(installation.member_api, NAMESPACE, full=False)
    installation.apply(POLICY, includedNamespaces=[NAMESPACE])
    status = installation.wait_done(POLICY)
    assert status["phase"] == "Completed", status

    # Workers: objects counted per step, task durations, and each step of the namespace timed end to end
    # once (rebuild from rebuild.start to verify's end, whichever workers ran them). Rebuild batches may
    # all land on one worker.
    workers = _worker_metrics(installation)
    assert _rebuilt(workers) > rebuilt_before
    timed = {
        labels["task"]
        for text in workers
        for labels, value in _samples(text, "kpromote_task_duration_seconds_count")
        if value > 0
    }
    assert {"backup.run", "detach.run", "rebuild.batch", "rebuild.verify"} <= timed
    steps = {
        labels["step"]
        for text in workers
        for labels, value in _samples(text, "kpromote_step_duration_seconds_count")
        if value > 0 and labels["outcome"] == "succeeded"
    }
    assert {"backup", "detach", "rebuild"} <= steps
    assert any(_samples(text, "kpromote_api_requests_total") for text in workers)
    assert not any("_created" in text for text in workers)

    # Watcher: namespaces by phase, from the status it wrote (this one at least is Completed).
    watcher = f"http://127.0.0.1:{installation.metrics_ports['watcher']}/metrics"

    def completed() -> float | None:
        values = [
            v
            for labels, v in _samples(_get(watcher), "kpromote_namespaces")
            if labels["phase"] == "Completed"
        ]
        return values[0] if values and values[0] >= 1 else None

    wait_until(completed, timeout=10, what="the watcher to count the namespace as Completed")
    scraped = _get(watcher)
    assert [
        v
        for labels, v in _samples(scraped, "kpromote_policy_phase")
        if labels
        == {
            "policy": POLICY,
            "phase": "Completed",
        }
    ] == [1.0]
    assert {labels["queue"] for labels, _ in _samples(scraped, "kpromote_queue_length")} == {
        "backup",
        "detach",
        "rebuild",
        "rollback",
    }
    assert _samples(scraped, "kpromote_broker_up") == [({}, 1.0)]

    # Flower: the API needs the credentials; tasks are named by their shadow, step then policy/namespace
    # (what the tasks page's Name column shows), and carry the references.
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"{flower}/api/tasks")
    assert refused.value.code == 401

    def listed() -> dict[str, Any] | None:
        tasks = json.loads(_get(f"{flower}/api/tasks?limit=100000", AUTH))
        ours = {k: t for k, t in tasks.items() if f"'namespace': '{NAMESPACE}'" in (t.get("kwargs") or "")}
        steps = {str(t["name"]).split(" ")[0] for t in ours.values()}
        wanted = {"backup.run", "detach.run", "rebuild.start", "rebuild.batch", "rebuild.verify"}
        settled = all(t["state"] == "SUCCESS" for t in ours.values())
        return ours if wanted <= steps and settled else None

    tasks = wait_until(listed, timeout=15, what="Flower to list the promote's tasks, all succeeded")
    for task in tasks.values():
        step = task["name"].split(" ")[0]
        assert task["name"].startswith(f"{step} {POLICY}/{NAMESPACE}"), task
        # The shadow is only a display name: the message was routed by its task name to the step's queue
        # (the routing key on Redis) and ran there (SUCCESS, above).
        assert task["routing_key"] == step.split(".")[0], task
        # Named references.
        assert task["kwargs"].startswith(f"{{'policy': '{POLICY}', 'namespace': '{NAMESPACE}', "), task
    batches = [t["name"] for t in tasks.values() if t["name"].startswith("rebuild.batch ")]
    assert all(name.endswith("]") for name in batches), batches  # `… pods[0:1]`: which slice of which type
    # `kpromote flower` ships the tasks page's columns: the arguments are on it (Flower's default has none).
    page = _get(f"{flower}/tasks", AUTH)
    assert 'data-column="kwargs"' in page and 'data-column="name"' in page, page

    # Logs: JSON lines only (no Celery banner, no chord deprecation warning), the task ones attributed to
    # the policy, namespace and step.
    for path in installation.workdir.glob("worker-*.log"):
        text = path.read_text()
        assert all(_json(line) for line in text.splitlines() if line.strip()), f"{path.name}: not all JSON"
        assert "CPendingDeprecationWarning" not in text, path.name
    attributed = [
        line
        for path in installation.workdir.glob("worker-*.log")
        for line in map(_json, path.read_text().splitlines())
        if line and line.get("namespace") == NAMESPACE
    ]
    assert attributed and all(
        line["policy"] == POLICY and line["component"] == "worker" for line in attributed
    )
    assert {"backup.run", "rebuild.batch"} <= {line["step"] for line in attributed}
    # Celery's own "Task … received" line names the message by its shadow, and is attributed too.
    received = [line for line in attributed if line["message"].endswith(" received")]
    assert any(line["message"].startswith(f"Task backup.run {POLICY}/{NAMESPACE}[") for line in received)
    assert all(line["step"] == line["message"].split(" ")[1] for line in received), received

    # The Secret's value, encoded or not, is in no log, no task message, no metric.
    decoded = f"s3cr3t-{NAMESPACE}"
    encoded = base64.b64encode(decoded.encode()).decode()
    everything = {
        **{path.name: path.read_text() for path in installation.workdir.glob("*.log")},
        "flower.log": (tmp_path / "flower.log").read_text(),
        "flower tasks": json.dumps(json.loads(_get(f"{flower}/api/tasks?limit=100000", AUTH))),
        "worker metrics": "\n".join(workers),
        "watcher metrics": _get(watcher),
    }
    assert {"watcher.log", "worker-1.log", "worker-2.log"} <= everything.keys()
    for where, text in everything.items():
        assert decoded not in text and encoded not in text, f"the Secret's value is in {where}"


def _worker_metrics(installation: Installation) -> list[str]:
    """`/metrics` of every live worker (other tests may have killed some and started others)."""
    texts = [
        _answers(f"http://127.0.0.1:{port}/metrics")
        for name, port in installation.metrics_ports.items()
        if name.startswith("worker-")
    ]
    return [text for text in texts if text is not None]


def _rebuilt(workers: list[str]) -> float:
    return sum(
        value
        for text in workers
        for labels, value in _samples(text, "kpromote_objects_total")
        if labels["step"] == "rebuild"
    )


def _json(line: str) -> dict[str, Any] | None:
    """A log line as JSON; None for anything else."""
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
