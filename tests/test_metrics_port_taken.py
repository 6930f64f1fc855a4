"""Finding 5 of issue 11: a metrics port already taken costs the endpoint, never the process.

Two workers on one host network both want 9808: the second logs a warning and consumes its queue anyway.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shared import metrics
from tests.test_settings_validation import REPO


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port this test listens on, on every interface, as another worker's /metrics would."""
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_serve_on_a_taken_port_warns_and_returns(held_port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.metrics"):
        assert metrics.serve(held_port) is False
    assert f"metrics port {held_port} is not available" in caplog.text
    assert "running on without /metrics" in caplog.text


def test_port_zero_serves_nothing() -> None:
    assert metrics.serve(0) is False


def test_a_worker_runs_on_when_its_metrics_port_is_taken(
    held_port: int, tmp_path: Path, redis_url: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"  # never used: the worker only needs it to be a kubeconfig
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {}}],
                "current-context": "c",
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPROMOTE_")}
    env.update(
        PYTHONPATH=str(REPO),
        KPROMOTE_BROKER_URL=redis_url,
        KPROMOTE_KEY_PREFIX=f"metrics-test-{uuid.uuid4().hex[:8]}:",
        KPROMOTE_KUBECONFIG=str(kubeconfig),
        KPROMOTE_METRICS_PORT=str(held_port),
        KPROMOTE_BACKUP_DIR=str(tmp_path / "backups"),
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "services", "worker", "--queues", "backup", "--concurrency", "1"],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while " ready." not in log.read_text():
            assert worker.poll() is None, "the worker exited: " + log.read_text()
            assert time.monotonic() < deadline, "the worker never became ready: " + log.read_text()
            time.sleep(0.3)
        time.sleep(1)
        assert worker.poll() is None, log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    text = log.read_text()
    assert f"metrics port {held_port} is not available" in text
    assert "Traceback" not in text
