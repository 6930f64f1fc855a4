"""`kpromote apply`: create the PromotePolicy of a file, and with --wait follow it to its end.

The watcher acts on a policy once, when it is created, so applying again is not an update: an existing
policy with the same spec is reported (and followed), one with another spec is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from services.console.common import (
    OK,
    USAGE,
    ConsoleError,
    connect,
    guarded,
    load_policy_file,
    load_settings,
    out,
    phase_of,
    policy_resource,
)
from services.console.watch import follow, report
from shared.kube import AlreadyExists, Kube
from shared.models import PolicyPhase, PromotePolicy, PromotePolicySpec

IN_FLIGHT = frozenset({PolicyPhase.PENDING, PolicyPhase.PRECHECKING, PolicyPhase.RUNNING})
"""Phases a promote passes through; any other phase is where `apply --wait` stops."""
METADATA_KEPT = ("name", "labels", "annotations")
"""What a user's metadata may set; uid, resourceVersion and the like belong to the API server."""


def promote_finished(policy: Mapping[str, Any]) -> bool:
    return phase_of(policy) not in IN_FLIGHT


def body_of(policy: PromotePolicy) -> dict[str, Any]:
    body = policy.model_copy(update={"status": None}).to_api()
    body["metadata"] = {key: policy.metadata[key] for key in METADATA_KEPT if key in policy.metadata}
    return body


def same_request(existing: Mapping[str, Any], wanted: PromotePolicySpec) -> bool:
    """Equal but for `rollback`, which the watcher resets once it has acted on it."""
    try:
        current = PromotePolicySpec.model_validate(existing.get("spec") or {})
    except ValueError:
        return False
    return current.model_dump(exclude={"rollback"}) == wanted.model_dump(exclude={"rollback"})


def create(kube: Kube, policy: PromotePolicy, console: Console) -> None:
    name = policy.metadata["name"]
    resource = policy_resource(kube)
    try:
        kube.create(resource, body_of(policy))
    except AlreadyExists:
        existing = kube.get(resource, "", name) or {}
        if not same_request(existing, policy.spec):
            raise ConsoleError(
                f'PromotePolicy "{name}" already exists with a different spec, and a policy runs once: '
                f"delete it (kubectl delete promotepolicy {name}) or give the file another name",
                USAGE,
            ) from None
        console.print(f"PromotePolicy {escape(name)} already exists ({phase_of(existing)}); left as it is.")
        return
    console.print(f"PromotePolicy {escape(name)} created.")


@guarded
def run(policy_file: Path, wait: bool, kubeconfig: str | None, timeout: float | None) -> int:
    policy = load_policy_file(policy_file)
    settings = load_settings()
    console = out()
    name = policy.metadata["name"]
    with connect(kubeconfig, settings) as kube:
        create(kube, policy, console)
        if not wait:
            console.print(f"Follow it with: kpromote status {escape(name)}")
            return OK
        final = follow(kube, name, promote_finished, console=console, timeout=timeout, what="promote")
    return report(
        console,
        final,
        success=PolicyPhase.COMPLETED,
        done=f"{(final.get('status') or {}).get('namespacesDone', 0)} namespace(s) promoted.",
        hint="",
    )
