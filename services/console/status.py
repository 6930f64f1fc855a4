"""`kpromote status`: where a policy is, per namespace, and what was left behind and why.

The JSON and YAML forms are the policy's status read through the pydantic model (so fields have the
API's names and types whatever version of the watcher wrote them), with the policy's name and cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.console.common import (
    OK,
    ConsoleError,
    StatusFormat,
    connect,
    get_policy,
    guarded,
    load_settings,
    one_line_validation_error,
    out,
    print_json,
    print_yaml,
)
from shared.models import PromotePolicy, PromotePolicyStatus

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


def render(console: Console, doc: Mapping[str, Any]) -> None:
    progress = f"{doc.get('namespacesDone', 0)}/{doc.get('namespacesTotal', 0)} namespaces done"
    console.print(
        f"[bold]PromotePolicy {escape(doc['name'])}[/]  cluster {escape(doc['clusterName'])}  "
        f"phase [bold]{doc.get('phase', 'Pending')}[/]  {progress}"
    )
    for label, key in (("run", "runId"), ("started", "startTime"), ("finished", "completionTime")):
        if doc.get(key):
            console.print(f"{label}: {escape(str(doc[key]))}")
    if doc.get("rollbackRequested"):
        console.print("rollback: requested, not picked up by the watcher yet")
    if doc.get("message"):
        console.print(f"message: {escape(doc['message'])}")
    for error in doc.get("precheckErrors") or []:
        console.print(f"  [red]precheck:[/] {escape(error)}")
    namespaces = doc.get("namespaces") or []
    if namespaces:
        table = Table(title="Namespaces", title_justify="left")
        for column in ("namespace", "phase", "step", *(label for label, _ in COUNTS), "message"):
            table.add_column(column, justify="right" if column in dict(COUNTS) else "left")
        for namespace in namespaces:
            counts = namespace.get("counts") or {}
            table.add_row(
                escape(namespace["name"]),
                namespace.get("phase", "Pending"),
                escape(namespace.get("step") or ""),
                *(str(counts.get(key, 0)) for _, key in COUNTS),
                escape(namespace.get("message") or ""),
            )
        console.print(table)
        for namespace in namespaces:
            if namespace.get("backupLocation"):
                # Outside the table, whole: people copy it into `kpromote backups verify`.
                console.print(f"backup of {escape(namespace['name'])}: {escape(namespace['backupLocation'])}")
    skipped = [(ns["name"], item) for ns in namespaces for item in ns.get("skipped") or []]
    if skipped:
        table = Table(title="Left behind (stayed in the member or skipped)", title_justify="left")
        for column in ("namespace", "kind", "name", "reason"):
            table.add_column(column)
        for namespace, item in skipped:
            table.add_row(
                escape(namespace), escape(item["resource"]), escape(item["name"]), escape(item["reason"])
            )
        console.print(table)


@guarded
def run(name: str, output: StatusFormat, kubeconfig: str | None) -> int:
    settings = load_settings()
    with connect(kubeconfig, settings) as kube:
        doc = document(get_policy(kube, name))
    if output is StatusFormat.JSON:
        print_json(doc)
    elif output is StatusFormat.YAML:
        print_yaml(doc)
    else:
        render(out(), doc)
    return OK
