"""Runtime.fan_out: every item on the process's API threads, results in order, a failure raised once the
calls already started have ended, and the caller's context on every thread."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from shared.runtime import Runtime
from shared.settings import Settings

WHO = contextvars.ContextVar("who", default="nobody")


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(Settings(api_concurrency=4))


def test_results_come_in_item_order_from_several_threads(runtime: Runtime) -> None:
    threads: set[int] = set()

    def call(n: int) -> int:
        threads.add(threading.get_ident())
        time.sleep(0.001 * (n % 3))
        return n * n

    assert runtime.fan_out(call, range(50)) == [n * n for n in range(50)]
    assert 1 < len(threads) <= 4
    assert runtime.fan_out(call, []) == []


def test_the_first_failure_by_item_order_is_raised_and_nothing_starts_after_it(runtime: Runtime) -> None:
    started: list[int] = []

    def call(n: int) -> int:
        started.append(n)
        if n in (3, 5):
            time.sleep(0.02 if n == 3 else 0)
            raise ValueError(f"item {n}")
        time.sleep(0.01)
        return n

    with pytest.raises(ValueError, match="item 3"):
        runtime.fan_out(call, range(1000))
    assert len(started) < 20, "calls stop starting once one has failed"


def test_every_call_sees_the_callers_context(runtime: Runtime) -> None:
    WHO.set("the task")

    def call(n: int) -> str:
        seen = WHO.get()
        WHO.set(f"changed by {n}")  # a call's own changes stay with it
        return seen

    assert runtime.fan_out(call, range(20)) == ["the task"] * 20


def test_a_single_item_runs_in_the_callers_thread_and_more_on_the_api_threads(runtime: Runtime) -> None:
    def where(_: int) -> int:
        time.sleep(0.005)
        return threading.get_ident()

    assert runtime.fan_out(where, [1]) == [threading.get_ident()]
    assert threading.get_ident() not in runtime.fan_out(where, range(20))
