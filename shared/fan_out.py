"""How domain code that makes many independent requests asks for them to run at once, without knowing
where the threads come from: a worker or the watcher passes its process's API threads
(`Runtime.fan_out`), a one-off command may pass `one_by_one`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class FanOut(Protocol):
    """`call` on every item, results in the items' order; a failure is raised once the calls started
    have ended."""

    def __call__(self, call: Callable[[T], R], items: Iterable[T], /) -> list[R]: ...


def one_by_one(call: Callable[[T], R], items: Iterable[T], /) -> list[R]:
    return [call(item) for item in items]
