"""`kpromote logs`: what one run did to each namespace, from the log the workers keep beside its backup.

Workers append every line about a run's namespace (each write they sent, each retry, each message that
did nothing and why, each step's end) to `<backup dir>/<policy>/<namespace>/<run>/run.log` as JSON lines
(`shared.logs.RunLog`); several workers write one file, so the lines are merged and sorted by time here.
Only files under the backup directory are read: every name is checked to be one path segment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from services.console.common import (
    OK,
    USAGE,
    ConsoleError,
    Format,
    backup_base,
    connect,
    get_policy,
    guarded,
    load_settings,
    path_segment,
)
from shared.logs import RUN_LOG_NAME


@dataclass(frozen=True)
class Line:
    time: str
    raw: str
    fields: dict[str, Any]


def log_files(base: Path, policy: str, namespace: str | None, run: str | None) -> list[Path]:
    """The run logs of a policy (of one namespace, of one run, when given), sorted by path."""
    policy_dir = base / path_segment(policy, "policy")
    namespaces = [policy_dir / path_segment(namespace, "namespace")] if namespace else _folders(policy_dir)
    files: list[Path] = []
    for namespace_dir in namespaces:
        runs = [namespace_dir / path_segment(run, "run")] if run else _folders(namespace_dir)
        files.extend(path / RUN_LOG_NAME for path in runs if (path / RUN_LOG_NAME).is_file())
    return sorted(files)


def _folders(path: Path) -> list[Path]:
    try:
        return sorted(child for child in path.iterdir() if child.is_dir() and not child.is_symlink())
    except OSError:
        return []


def read_lines(files: Iterable[Path]) -> list[Line]:
    """Every line of `files` in time order. Lines of one file that tie keep their order, and a line that is
    not JSON (cut short by a full disk) is kept with the time of the line before it."""
    lines = []
    for path in files:
        last = ""
        with path.open(encoding="utf-8", errors="replace") as file:
            for raw in file:
                raw = raw.rstrip("\n")
                if not raw:
                    continue
                try:
                    fields = json.loads(raw)
                except ValueError:
                    fields = {"message": raw}
                if not isinstance(fields, dict):
                    fields = {"message": raw}
                last = str(fields.get("time") or last)
                lines.append(Line(last, raw, fields))
    return sorted(lines, key=lambda line: line.time)


def text(line: Line, *, with_run: bool = False) -> str:
    """`2026-12-06 19:06:15.123 INFO  shop-1 backup.backup_type: message`, then any traceback indented."""
    fields = line.fields
    when = line.time.replace("T", " ")[:23] if line.time else "-"
    where = fields.get("namespace") or "-"
    if with_run and fields.get("run"):
        where = f"{where}@{fields['run']}"
    step = fields.get("step") or fields.get("logger") or ""
    level = str(fields.get("level") or "").ljust(7)
    rendered = f"{when} {level} {where} {step}: {fields.get('message', '')}"
    if fields.get("exception"):
        rendered += "\n" + "\n".join(f"    {part}" for part in str(fields["exception"]).splitlines())
    return rendered


@guarded
def run(
    policy: str,
    namespace: str | None,
    run_id: str | None,
    output: Format,
    directory: Path | None,
    kubeconfig: str | None,
) -> int:
    path_segment(policy, "policy")
    base = backup_base(directory)
    which = f"run {run_id}" if run_id else "every run"
    if run_id is None:
        run_id, which = current_run(policy, kubeconfig)
    files = log_files(base, policy, namespace, run_id)
    if not files:
        of = f"namespace {namespace} of " if namespace else ""
        raise ConsoleError(
            f"no run log of {of}PromotePolicy {policy} ({which}) under {base}: it has not run a step yet, "
            "or the workers write their backups elsewhere (KPROMOTE_BACKUP_DIR)",
            USAGE,
        )
    lines = read_lines(files)
    with_run = len({path.parent.name for path in files}) > 1
    for line in lines:
        typer.echo(line.raw if output is Format.JSON else text(line, with_run=with_run))
    return OK


def current_run(policy: str, kubeconfig: str | None) -> tuple[str | None, str]:
    """The policy's run (status.runId); None (every run folder of the policy) when the policy is gone."""
    settings = load_settings()
    with connect(kubeconfig, settings) as kube:
        try:
            found = get_policy(kube, policy)
        except ConsoleError as error:
            if error.code != USAGE:
                raise
            return None, "the policy is gone: every run kept"
    run_id = (found.get("status") or {}).get("runId")
    if not run_id:
        raise ConsoleError(f"PromotePolicy {policy} has not started a run yet: no log so far", USAGE)
    return str(run_id), f"run {run_id}"
