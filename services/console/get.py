"""`kpromote get`: every PromotePolicy in one table, as `kubectl get` shows them, with progress and time."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.console.common import (
    OK,
    Format,
    connect,
    guarded,
    human_duration,
    load_settings,
    out,
    policy_resource,
    print_json,
    seconds_since,
)


def row(policy: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One policy's line: name, cluster, phase, done/total namespaces, age and duration (seconds). The
    duration of a policy still running is the time so far; of one not started yet, None."""
    metadata, status = policy.get("metadata") or {}, policy.get("status") or {}
    spec = policy.get("spec") or {}
    started = seconds_since(status.get("startTime"), now)
    if status.get("durationSeconds") is not None and status.get("completionTime"):
        duration: float | None = float(status["durationSeconds"])
    elif started is not None:
        finished = seconds_since(status.get("completionTime"), now)
        duration = started - (finished or 0.0)
    else:
        duration = None
    return {
        "name": metadata.get("name", ""),
        "cluster": status.get("clusterName") or spec.get("clusterName", ""),
        "phase": status.get("phase") or "Pending",
        "namespacesDone": status.get("namespacesDone", 0),
        "namespacesTotal": status.get("namespacesTotal") or len(spec.get("includedNamespaces") or []),
        "rollbackRequested": spec.get("rollback") == "true",
        "runId": status.get("runId"),
        "created": metadata.get("creationTimestamp"),
        "ageSeconds": _whole(seconds_since(metadata.get("creationTimestamp"), now)),
        "durationSeconds": _whole(duration),
    }


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else max(0, int(seconds))


def table(rows: list[dict[str, Any]]) -> Table:
    """kubectl's look: upper-case headers, no borders, one line per policy."""
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("NAME", "CLUSTER", "PHASE", "DONE", "AGE", "DURATION"):
        grid.add_column(column, no_wrap=True)
    for line in rows:
        phase = line["phase"] + (" (rollback requested)" if line["rollbackRequested"] else "")
        grid.add_row(
            escape(line["name"]),
            escape(line["cluster"]),
            phase,
            f"{line['namespacesDone']}/{line['namespacesTotal']}",
            human_duration(line["ageSeconds"]),
            human_duration(line["durationSeconds"]),
        )
    return grid


def render(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("No PromotePolicies in the control plane.")
        return
    console.print(table(rows))


@guarded
def run(output: Format, kubeconfig: str | None) -> int:
    settings = load_settings()
    with connect(kubeconfig, settings) as kube:
        policies = list(kube.list(policy_resource(kube)))
    now = time.time()
    rows = sorted((row(policy, now) for policy in policies), key=lambda line: line["name"])
    if output is Format.JSON:
        print_json(rows)
    else:
        render(out(), rows)
    return OK
