"""Finding 3 of issue 11: `kpromote flower` never starts open by accident, and says where it listens.

Without credentials it refuses to start (one line, exit 2) unless --no-auth is given; with them it
answers 401 without and 200 with them, on 127.0.0.1 unless --address names another interface.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.test_settings_validation import REPO, assert_refused, kpromote


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_flower_without_credentials_refuses_to_start(tmp_path: Path) -> None:
    result = kpromote(tmp_path, "flower", "--port", str(free_port()))
    assert_refused(result, "Flower needs credentials", "--basic-auth", "--no-auth")


def test_flower_refuses_the_shipped_placeholder_password(tmp_path: Path) -> None:
    result = kpromote(tmp_path, "flower", FLOWER_BASIC_AUTH="admin:REPLACE-ME-flower-password-placeholder")
    assert_refused(result, "FLOWER_BASIC_AUTH", "placeholder", "deploy/secrets.yaml")


def test_flower_refuses_malformed_credentials_and_no_auth_with_credentials(tmp_path: Path) -> None:
    assert_refused(kpromote(tmp_path, "flower", "--basic-auth", "admin"), "expected user:password")
    assert_refused(
        kpromote(tmp_path, "flower", "--no-auth", KPROMOTE_FLOWER_BASIC_AUTH="admin:secret"), "contradict"
    )


def test_flower_with_credentials_answers_401_without_them_and_200_with_them(
    tmp_path: Path, redis_url: str
) -> None:
    port, credentials = free_port(), f"admin:{uuid.uuid4().hex}"
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPROMOTE_", "FLOWER_"))}
    env.update(
        PYTHONPATH=str(REPO),
        KPROMOTE_BROKER_URL=redis_url,
        KPROMOTE_KEY_PREFIX=f"flower-test-{uuid.uuid4().hex[:8]}:",
        KPROMOTE_FLOWER_BASIC_AUTH=credentials,
    )
    log = tmp_path / "flower.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services", "flower", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while get(base + "/healthcheck") != 200:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "Flower did not come up: " + log.read_text()
            time.sleep(0.3)
        assert get(base + "/") == 401
        assert get(base + "/", "admin:wrong") == 401
        assert get(base + "/", credentials) == 200
        assert get(base + "/api/workers", credentials) == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = log.read_text()
    assert f"Flower serves http://127.0.0.1:{port} with authentication on" in text, text
    assert credentials.split(":")[1] not in text, "the password is not logged"
