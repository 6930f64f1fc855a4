"""`kpromote status`: where a policy is, per namespace, and what was left behind and why.

The JSON and YAML forms are the policy's status read through the pydantic model (so fields have the
API's names and types whatever version of the watcher wrote them), with the policy's name and cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table

from services.console.common import (
    INTERRUPTED,
    OK,
    ConsoleError,
    StatusFormat,
    connect,
    get_policy,
    guarded,
    load_settings,
    one_line_validation_error,
    out,
    phase_of,
    print_json,
    print_yaml,
)
from services.console.watch import clock, count_cells, follow, rollback_summary
from shared.kube import Kube
from shared.models import PromotePolicy, PromotePolicyStatus
from shared.models.conditions import CONTROLLED_IN_MEMBER, condition_of
from shared.models.policy import ConditionStatus

COUNTS = (("backed up", "backedUp"), ("detached", "detached"), ("rebuilt", "rebuilt"), ("skipped", "skipped"))


def document(policy: Mapping[str, Any]) -> dict[str, Any]:
    """name, clusterName, rollbackRequested, then the status fields in the API's spelling."""
    try:
        parsed = PromotePolicy.from_api(policy)
    except ValidationError as error:
        raise ConsoleError(
            f"PromotePolicy {policy.get('metadata', {}).get('name')} cannot be read: "
            f"{one_line_validation_error(error)}; is the watcher newer than this kpromote?"
        ) from None
    status = parsed.status or PromotePolicyStatus()
    return {
        "name": parsed.metadata.get("name", ""),
        "clusterName": parsed.spec.cluster_name,
        "rollbackRequested": parsed.spec.rollback_requested,
        **status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def parts(doc: Mapping[str, Any]) -> list[RenderableType]:
    """What the table form shows, in order: the headline, the run, the namespaces, what was left behind."""
    shown: list[RenderableType] = []
    progress = f"{doc.get('namespacesDone', 0)}/{doc.get('namespacesTotal', 0)} namespaces done"
    shown.append(
        f"[bold]PromotePolicy {escape(doc['name'])}[/]  cluster {escape(doc['clusterName'])}  "
        f"phase [bold]{doc.get('phase', 'Pending')}[/]  {progress}"
    )
    for label, key in (("run", "runId"), ("started", "startTime"), ("finished", "completionTime")):
        if doc.get(key):
            shown.append(f"{label}: {escape(str(doc[key]))}")
    if doc.get("durationSeconds") is not None:
        shown.append(f"took: {doc['durationSeconds']}s")
    if doc.get("rollbackRequested"):
        shown.append("rollback: requested, not picked up by the watcher yet")
    if doc.get("message"):
        shown.append(f"message: {escape(doc['message'])}")
    for error in doc.get("precheckErrors") or []:
        shown.append(f"  [red]precheck:[/] {escape(error)}")
    for warning in doc.get("precheckWarnings") or []:
        shown.append(f"  [yellow]warning:[/] {escape(warning)}")
    controlled = condition_of(doc.get("conditions"), CONTROLLED_IN_MEMBER)
    if controlled is not None and controlled.get("status") == ConditionStatus.TRUE:
        shown.append(f"  [red]member:[/] {escape(controlled.get('message') or '')}")
    namespaces = doc.get("namespaces") or []
    if namespaces:
        table = Table(title="Namespaces", title_justify="left")
        for column in ("namespace", "phase", "step", *(label for label, _ in COUNTS), "message"):
            table.add_column(column, justify="right" if column in dict(COUNTS) else "left")
        for namespace in namespaces:
            table.add_row(
                escape(namespace["name"]),
                namespace.get("phase", "Pending"),
                escape(namespace.get("step") or ""),
                *count_cells(namespace),
                escape(namespace.get("message") or ""),
            )
        shown.append(table)
        for namespace in namespaces:
            if namespace.get("rollback"):
                shown.append(f"rollback of {escape(namespace['name'])}: {rollback_summary(namespace)}")
        for namespace in namespaces:
            if namespace.get("backupLocation"):
                # Outside the table, whole: people copy it into `kpromote backups verify`.
                shown.append(f"backup of {escape(namespace['name'])}: {escape(namespace['backupLocation'])}")
    skipped = [(ns["name"], item) for ns in namespaces for item in ns.get("skipped") or []]
    if skipped:
        table = Table(title="Left behind (stayed in the member or skipped)", title_justify="left")
        for column in ("namespace", "kind", "name", "reason"):
            table.add_column(column)
        for namespace, item in skipped:
            table.add_row(
                escape(namespace), escape(item["resource"]), escape(item["name"]), escape(item["reason"])
            )
        shown.append(table)
    for namespace in namespaces:
        unlisted = (namespace.get("counts") or {}).get("skipped", 0) - len(namespace.get("skipped") or ())
        if unlisted > 0:
            # The watcher lists the first few when the whole list would not fit in the status.
            shown.append(f"… and {unlisted} more left behind in {escape(namespace['name'])}, not listed")
    return shown


def render(console: Console, doc: Mapping[str, Any]) -> None:
    for part in parts(doc):
        console.print(part)


ENDED = frozenset(
    {"Completed", "PartiallyFailed", "Failed", "FailedPrecheck", "RolledBack", "FailedRollback"}
)


def ended(policy: Mapping[str, Any]) -> bool:
    """Whether nothing more will happen unless someone asks: a final phase and no rollback request pending."""
    return phase_of(policy) in ENDED and (policy.get("spec") or {}).get("rollback") != "true"


def view(policy: Mapping[str, Any]) -> RenderableType:
    return Group(*parts(document(policy)), f"[dim]at {clock()}; Ctrl-C stops watching[/]")


@guarded
def run(name: str, output: StatusFormat, kubeconfig: str | None, watch: bool = False) -> int:
    settings = load_settings()
    with connect(kubeconfig, settings) as kube:
        if watch:
            return watch_policy(kube, name)
        doc = document(get_policy(kube, name))
    if output is StatusFormat.JSON:
        print_json(doc)
    elif output is StatusFormat.YAML:
        print_yaml(doc)
    else:
        render(out(), doc)
    return OK


def watch_policy(kube: Kube, name: str) -> int:
    """Redraw the status every second (one line per change off a terminal) until the policy has ended or
    Ctrl-C, which is how a watch is meant to stop: exit 0 either way."""
    try:
        follow(kube, name, ended, console=out(), timeout=None, what="run", view=view, interval=1.0)
    except ConsoleError as error:
        if error.code != INTERRUPTED:
            raise
    return OK
