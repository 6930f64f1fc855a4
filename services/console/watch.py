"""`--wait` for apply and rollback: follow a policy's status until it settles.

On a terminal, a rich Live table redrawn in place; anywhere else (CI logs, pipes), one plain line per
change, because a redrawn table is unreadable in a log and a line per poll would drown the changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from services.console.common import FAILED, INTERRUPTED, OK, ConsoleError, get_policy, phase_of
from shared.kube import Kube

POLL_INTERVAL = 0.25
"""The watcher writes status at most every half second; polling twice as often shows every write."""
WATCHER_HINT_AFTER = 30.0
"""The watcher answers a new policy or a rollback request within seconds; silence this long means it is
most likely not running, which a person waiting should be told rather than left to guess."""

Finished = Callable[[Mapping[str, Any]], bool]
View = Callable[[Mapping[str, Any]], RenderableType]
"""What a terminal shows of a policy object, redrawn in place."""


def clock() -> str:
    """The local time of day that starts each plain progress line: when a change was seen."""
    return time.strftime("%H:%M:%S")


def progress_table(name: str, status: Mapping[str, Any]) -> Table:
    table = Table(
        title=f"PromotePolicy {escape(name)}: {status.get('phase') or 'Pending'} "
        f"({status.get('namespacesDone', 0)}/{status.get('namespacesTotal', '?')} namespaces done)",
        title_justify="left",
        caption=f"at {clock()}",
        caption_justify="left",
    )
    for column in ("namespace", "phase", "step", "backed up", "detached", "rebuilt", "skipped"):
        table.add_column(
            column, justify="right" if column in ("backed up", "detached", "rebuilt", "skipped") else "left"
        )
    for namespace in status.get("namespaces") or []:
        table.add_row(
            escape(namespace["name"]),
            namespace.get("phase") or "Pending",
            escape(namespace.get("step") or ""),
            *count_cells(namespace),
        )
    return table


COUNT_KEYS = ("backedUp", "detached", "rebuilt", "skipped")
ROLLBACK_COUNTS = (
    ("unmarked", "podsUnmarked"),
    ("re-created", "ownersRecreated"),
    ("restored", "objectsRestored"),
    ("deleted", "objectsDeleted"),
    ("kept", "kept"),
)


def count_cells(namespace: Mapping[str, Any]) -> list[str]:
    """Each step's count, against its total once known: `76/80`."""
    counts, totals = namespace.get("counts") or {}, namespace.get("totals") or {}
    return [
        f"{counts.get(key, 0)}/{totals[key]}" if key in totals else str(counts.get(key, 0))
        for key in COUNT_KEYS
    ]


def rollback_summary(namespace: Mapping[str, Any]) -> str:
    """What a rollback did, apart from the promote's counts: `unmarked 3, re-created 2, …`."""
    done = namespace.get("rollback") or {}
    return ", ".join(f"{label} {done[key]}" for label, key in ROLLBACK_COUNTS if key in done)


def status_lines(name: str, status: Mapping[str, Any]) -> dict[str, str]:
    """The plain-text view of a status, one line per policy and per namespace, keyed by what they describe."""
    phase = status.get("phase") or "Pending"
    line = f"{name}: {phase}"
    if status.get("namespacesTotal"):
        line += f", {status.get('namespacesDone', 0)}/{status['namespacesTotal']} namespaces done"
    lines = {"": line}
    for namespace in status.get("namespaces") or []:
        counts = namespace.get("counts") or {}
        text = f"{name}/{namespace['name']}: {namespace.get('phase') or 'Pending'}"
        if namespace.get("step"):
            text += f" - {namespace['step']}"
        text += (
            f" (backed up {counts.get('backedUp', 0)}, detached {counts.get('detached', 0)}, "
            f"rebuilt {counts.get('rebuilt', 0)}, skipped {counts.get('skipped', 0)})"
        )
        if namespace.get("message"):
            text += f": {namespace['message']}"
        lines[namespace["name"]] = text
    return lines


def changed_lines(name: str, previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> list[str]:
    """The lines of `status` that differ from those of `previous`: what a log reader needs to see."""
    before = status_lines(name, previous) if previous is not None else {}
    return [line for key, line in status_lines(name, status).items() if before.get(key) != line]


def unanswered(policy: Mapping[str, Any]) -> bool:
    """Whether the watcher has not acted on the policy yet: no status at all, or a rollback request that it
    has not taken (it clears `spec.rollback` when it starts the rollback)."""
    return (
        not (policy.get("status") or {}).get("phase") or (policy.get("spec") or {}).get("rollback") == "true"
    )


def follow(
    kube: Kube,
    name: str,
    finished: Finished,
    *,
    console: Console,
    timeout: float | None,
    what: str,
    view: View | None = None,
    interval: float | None = None,
) -> dict[str, Any]:
    """Poll the policy until `finished(policy)`, showing its progress; the final policy object.

    On a terminal `view` (the progress table by default) is redrawn every `interval` seconds; elsewhere
    each changed line is printed once, after the time it was seen. Stopping early (Ctrl-C, the timeout)
    stops only the waiting: the cluster goes on, which the error says, with the command to pick the
    progress up again."""
    draw = view or (lambda policy: progress_table(name, policy.get("status") or {}))
    pause = POLL_INTERVAL if interval is None else interval
    deadline = time.monotonic() + timeout if timeout else None
    resume = f"{what} goes on in the cluster: follow it with kpromote status {name} --watch"
    previous: Mapping[str, Any] | None = None
    started, hinted = time.monotonic(), False
    live = (
        Live(progress_table(name, {}) if view is None else "", console=console, refresh_per_second=4)
        if console.is_terminal
        else None
    )
    try:
        if live is not None:
            live.start()
        while True:
            policy = get_policy(kube, name)
            status = policy.get("status") or {}
            if live is not None:
                live.update(draw(policy))
            else:
                seen = clock()
                for line in changed_lines(name, previous, status):
                    console.print(f"{seen} {line}", markup=False, highlight=False, soft_wrap=True)
            previous = status
            if finished(policy):
                return policy
            if not hinted and unanswered(policy) and time.monotonic() - started > WATCHER_HINT_AFTER:
                hinted = True
                typer.echo(
                    f"note: the watcher has not answered in {WATCHER_HINT_AFTER:.0f}s; is kpromote watcher "
                    "running against this control plane?",
                    err=True,
                )
            if deadline is not None and time.monotonic() > deadline:
                raise ConsoleError(f"still {phase_of(policy)} after {timeout:.0f}s; the {resume}", FAILED)
            time.sleep(pause)
    except KeyboardInterrupt:
        raise ConsoleError(f"stopped waiting; the {resume}", INTERRUPTED) from None
    finally:
        if live is not None:
            live.stop()


def report(console: Console, policy: Mapping[str, Any], *, success: str, done: str, hint: str) -> int:
    """The end of a promote or rollback in words: 0 when the policy reached `success` (then `done` is
    said), else 1 with the precheck errors and every namespace that did not reach it, and `hint`."""
    name, phase = policy["metadata"]["name"], phase_of(policy)
    status = policy.get("status") or {}
    if phase == success:
        console.print(f"PromotePolicy {escape(name)} {phase}: {done}")
        return OK
    console.print(f"PromotePolicy {escape(name)} ended {phase}: {escape(status.get('message') or '')}")
    for error in status.get("precheckErrors") or []:
        console.print(f"  precheck: {escape(error)}")
    for warning in status.get("precheckWarnings") or []:
        console.print(f"  warning: {escape(warning)}")
    for namespace in status.get("namespaces") or []:
        if namespace.get("phase") != success:
            message = escape(namespace.get("message") or "")
            console.print(f"  {escape(namespace['name'])}: {namespace.get('phase')}: {message}")
    console.print(f"Details: kpromote status {escape(name)}{hint}")
    return FAILED
