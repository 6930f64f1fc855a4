"""KPROMOTE_LOG_FORMAT and KPROMOTE_LOG_LEVEL, as a real `kpromote worker` process writes its log: JSON lines
with no Celery banner (and none of Celery's words outside logging), or readable text; the level honoured.

Each worker consumes a queue of its own key prefix on the test Redis and is stopped with SIGTERM, as the
kubelet stops a pod.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from kubesim.testing import wait_until
from services.celery_app import create_app

REPO = Path(__file__).resolve().parents[1]
BANNER = "-------------- ["  # Celery's ASCII banner: " -------------- [queues]"


def _worker(redis_url: str, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], Path, str]:
    prefix = f"logs-{uuid.uuid4().hex[:8]}:"
    log = tmp_path / f"worker-{prefix[:-1]}.log"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KPROMOTE_")},
        "KPROMOTE_BROKER_URL": redis_url,
        "KPROMOTE_KEY_PREFIX": prefix,
        "KPROMOTE_METRICS_PORT": "0",
        **env,
    }
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "services", "worker", "-Q", "backup", "-c", "1"],
            env=environment,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return process, log, prefix


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def _until_ready(process: subprocess.Popen[bytes], log: Path) -> str:
    def ready() -> str | None:
        assert process.poll() is None, log.read_text()
        text = log.read_text()
        return text if " ready." in text else None

    return wait_until(ready, timeout=60, interval=0.2, what=f"the worker to be ready ({log})")


def test_json_logs_are_json_lines_without_the_banner(redis_url: str, tmp_path: Path) -> None:
    process, log, _ = _worker(redis_url, tmp_path, KPROMOTE_LOG_FORMAT="json")
    try:
        _until_ready(process, log)
    finally:
        _stop(process)
    text = log.read_text()
    assert BANNER not in text and "[tasks]" not in text, text
    parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    messages = [line["message"] for line in parsed]
    assert all(line["component"] == "worker" for line in parsed)
    assert any(m.startswith("worker backup-") and "consuming backup" in m for m in messages), messages
    assert any(m.endswith(" ready.") for m in messages)
    assert "worker: Warm shutdown (MainProcess)" in messages, "Celery's shutdown words as JSON too"
    assert not any("CPendingDeprecationWarning" in m for m in messages)


def test_text_logs_are_text(redis_url: str, tmp_path: Path) -> None:
    process, log, _ = _worker(redis_url, tmp_path, KPROMOTE_LOG_FORMAT="text")
    try:
        text = _until_ready(process, log)
    finally:
        _stop(process)
    [ready] = [line for line in text.splitlines() if line.endswith(" ready.")]
    assert " INFO celery.apps.worker: backup-" in ready, ready
    assert not any(line.startswith("{") for line in text.splitlines())


def test_the_level_is_honoured(redis_url: str, tmp_path: Path) -> None:
    process, log, prefix = _worker(
        redis_url, tmp_path, KPROMOTE_LOG_FORMAT="json", KPROMOTE_LOG_LEVEL="warning"
    )
    app = create_app(redis_url, prefix)
    try:
        # Nothing at INFO says it is ready: ask it.
        wait_until(
            lambda: process.poll() is None and app.control.ping(timeout=0.5),
            timeout=60,
            what=f"the worker to answer a ping ({log})",
        )
    finally:
        app.close()
        _stop(process)
    parsed = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all(line["level"] in ("WARNING", "ERROR", "CRITICAL") for line in parsed), parsed


def test_a_bad_log_setting_stops_the_worker_in_one_line(redis_url: str, tmp_path: Path) -> None:
    process, log, _ = _worker(redis_url, tmp_path, KPROMOTE_LOG_FORMAT="yaml")
    assert process.wait(timeout=60) == 2
    text = log.read_text().strip()
    assert "KPROMOTE_LOG_FORMAT: 'yaml' given, must be json or text" in text, text
    assert "Traceback" not in text
