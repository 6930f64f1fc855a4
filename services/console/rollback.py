"""`kpromote rollback`: ask the watcher to roll a policy back, and with --wait follow it to its end.

The request is the policy's `spec.rollback: "true"`, set with a merge patch (the field is what the
watcher and Kosmos users already know). It is refused here, before anything is written, in the phases
where the watcher would ignore it, so that nobody waits for a rollback that will never start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.markup import escape

from services.console.common import (
    OK,
    USAGE,
    ConsoleError,
    connect,
    get_policy,
    guarded,
    load_settings,
    out,
    phase_of,
    policy_resource,
)
from services.console.watch import follow, report
from shared.models import PolicyPhase

ROLLBACK_FROM = frozenset(
    {PolicyPhase.COMPLETED, PolicyPhase.PARTIALLY_FAILED, PolicyPhase.FAILED, PolicyPhase.FAILED_ROLLBACK}
)
"""The phases from which the watcher starts a requested rollback (services.watcher.handlers)."""
ROLLBACK_ENDS = frozenset({PolicyPhase.ROLLED_BACK, PolicyPhase.FAILED_ROLLBACK})


def refusal(name: str, phase: str) -> str | None:
    """Why a rollback cannot be requested in `phase`, in words that say what to do instead; None if it can."""
    if phase in ROLLBACK_FROM:
        return None
    if phase == PolicyPhase.ROLLED_BACK:
        return f'PromotePolicy "{name}" is already RolledBack: there is nothing left to roll back'
    if phase == PolicyPhase.ROLLING_BACK:
        return f'PromotePolicy "{name}" is already rolling back: follow it with kpromote status {name}'
    if phase == PolicyPhase.FAILED_PRECHECK:
        return (
            f'PromotePolicy "{name}" failed its precheck, so nothing was changed and there is nothing to '
            f"roll back: delete it with kubectl delete promotepolicy {name}"
        )
    return (
        f'PromotePolicy "{name}" is {phase}: a rollback can be requested once it is Completed, '
        f"PartiallyFailed, Failed or FailedRollback; wait for it with kpromote status {name}"
    )


def rollback_finished(before: Mapping[str, Any], policy: Mapping[str, Any]) -> bool:
    """Whether the rollback requested on `before` has ended in `policy`.

    An end phase alone is not enough: until the watcher picks the request up, a policy retried from
    FailedRollback still shows that phase. The watcher clears `spec.rollback` when it starts and stamps a
    new completionTime when it ends, so the end is an end phase with the request cleared and either a
    new phase or a new completion time."""
    phase = phase_of(policy)
    if phase not in ROLLBACK_ENDS or (policy.get("spec") or {}).get("rollback") == "true":
        return False
    completed = (policy.get("status") or {}).get("completionTime")
    return phase != phase_of(before) or completed != (before.get("status") or {}).get("completionTime")


@guarded
def run(name: str, wait: bool, kubeconfig: str | None, timeout: float | None) -> int:
    settings = load_settings()
    console = out()
    with connect(kubeconfig, settings) as kube:
        before = get_policy(kube, name)
        reason = refusal(name, phase_of(before))
        if reason is not None:
            raise ConsoleError(reason, USAGE)
        kube.patch(policy_resource(kube), "", name, {"spec": {"rollback": "true"}})
        console.print(f"Rollback of PromotePolicy {escape(name)} requested.")
        if not wait:
            console.print(f"Follow it with: kpromote status {escape(name)}")
            return OK
        final = follow(
            kube,
            name,
            lambda policy: rollback_finished(before, policy),
            console=console,
            timeout=timeout,
            what="rollback",
        )
    return report(
        console,
        final,
        success=PolicyPhase.ROLLED_BACK,
        done="the member is as it was before the promote.",
        hint="; request the rollback again to retry it",
    )
