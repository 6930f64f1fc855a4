"""The watcher's look at completed namespaces: a condition and an Event when something in the member has
taken their pods back (shared/steps/aftercare.py says why), and again when that is mended.

Registered only when `KPROMOTE_COMPLETED_CHECK_INTERVAL` is above 0. The condition is written only when
what it says changes, so a policy that stays well costs one list per completed namespace and interval.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from services.watcher.handlers import set_condition
from shared.kube import KubeError
from shared.kube.connect import MemberUnavailable
from shared.models import NamespacePhase, PolicyPhase
from shared.models.conditions import CONTROLLED_IN_MEMBER, condition_of
from shared.models.policy import GROUP, PLURAL, VERSION, ConditionStatus
from shared.precheck import capped
from shared.runtime import MemberChanged, runtime
from shared.settings import settings
from shared.steps.aftercare import member_controllers

LISTED = 10
"""Pods named in the condition's message; the count says how many there are in all."""
WATCHED_PHASES = (PolicyPhase.COMPLETED.value, PolicyPhase.PARTIALLY_FAILED.value)
log = logging.getLogger(__name__)


def controlled_message(problems: list[str]) -> str:
    """What the condition says when promoted pods have a controller in the member, and how to mend it
    without losing them."""
    return (
        f"{len(problems)} promoted pod(s) have a controller in the member again: "
        f"{', '.join(capped(problems, LISTED))}. Something re-created their owners there (a GitOps tool "
        f"syncing the namespace?), and both clusters now manage these pods: a scale-down or rollout in "
        f"either can delete them. Stop that tool syncing these namespaces to the member, then delete the "
        f"member's owners without their pods (kubectl delete deployment,replicaset,statefulset NAME -n "
        f"NAMESPACE --cascade=orphan)"
    )


def watched(status: Mapping[str, Any], spec: Mapping[str, Any], body: kopf.Body) -> bool:
    """A policy whose run ended with completed namespaces, not being rolled back or deleted."""
    return (
        status.get("phase") in WATCHED_PHASES
        and spec.get("rollback") != "true"
        and not body.metadata.get("deletionTimestamp")
    )


def look_at_completed(
    *, name: str, body: kopf.Body, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **_: Any
) -> None:
    if not watched(status, spec, body):
        return
    completed = [
        ns["name"] for ns in status.get("namespaces") or () if ns.get("phase") == NamespacePhase.COMPLETED
    ]
    if not completed:
        return
    rt = runtime()
    try:
        claim = rt.claims.get(status.get("clusterName", ""), completed[0])
        if claim is None or claim.run_id != status.get("runId"):
            return  # released (the policy is going) or another run's now: nothing of this run to look after
        problems = member_controllers(rt, claim.spec, completed)
    except (KubeError, MemberChanged, MemberUnavailable) as error:
        log.warning(
            "policy %s: could not look at the member's pods of its completed namespaces (again in %.0fs): %s",
            name,
            settings().completed_check_interval,
            error,
        )
        return
    report(body, status, patch, problems)


def report(body: kopf.Body, status: Mapping[str, Any], patch: kopf.Patch, problems: list[str]) -> None:
    """The condition, written when what it says changed; a Warning Event when it turns True, a Normal one
    when it turns back."""
    current = condition_of(status.get("conditions"), CONTROLLED_IN_MEMBER)
    controlled = bool(problems)
    if current is None and not controlled:
        return
    state = ConditionStatus.TRUE if controlled else ConditionStatus.FALSE
    message = controlled_message(problems) if controlled else "no promoted pod has a controller in the member"
    if current is not None and current.get("status") == state and current.get("message") == message:
        return
    reason = "OwnerReturnedInMember" if controlled else "NoMemberController"
    set_condition(
        status, patch, CONTROLLED_IN_MEMBER, controlled, reason, message, body.metadata.get("generation")
    )
    was_controlled = current is not None and current.get("status") == ConditionStatus.TRUE
    if controlled and not was_controlled:
        kopf.warn(body, reason=CONTROLLED_IN_MEMBER, message=message)
    elif not controlled:
        kopf.event(body, type="Normal", reason=reason, message=message)


def register() -> None:
    interval = settings().completed_check_interval
    if interval > 0:
        kopf.timer(GROUP, VERSION, PLURAL, interval=interval, initial_delay=interval)(look_at_completed)
