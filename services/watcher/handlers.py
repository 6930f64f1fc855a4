"""The policy watcher: kopf handlers that precheck a PromotePolicy, claim its namespaces, publish one job
per namespace, write the live progress back into the policy's status, start rollbacks, and cancel the
run of a policy being deleted. It does no migration work itself.

What a run owns is recorded in Kubernetes (`shared.claims`), not here: the watcher claims every
namespace before publishing, and moves a claim to "rolling back" before publishing a rollback, so a
message only ever acts when its claim agrees. Progress comes from Redis (written idempotently by the
workers) and is written to the status at most once per interval, as one patch, only when it changed.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf
import kubernetes
from pydantic import ValidationError

from services.celery_app import app
from services.pipeline import compensate_namespace, rollback_namespace, start_namespace
from shared import metrics
from shared.claims import Claim, ClaimsHeld, ClaimState, RunSpec
from shared.models import NamespacePhase, NamespaceStatus, PolicyPhase, PromotePolicySpec
from shared.models.conditions import with_condition
from shared.models.policy import GROUP, PLURAL, VERSION, ConditionStatus, spec_problems
from shared.models.status_size import render_within_budget
from shared.models.times import now_rfc3339, parse_rfc3339
from shared.precheck import capped, precheck
from shared.progress import NamespaceRun, Progress
from shared.runtime import Runtime, runtime

STATUS_INTERVAL = 0.5
"""How often the status is refreshed and rollback requests are answered: a person (and a rollback)
waits on it, so half a second; the status is patched only when it changed."""
LARGE_POLICY = 100
LARGE_POLICY_INTERVAL = 1.0
"""A policy of more namespaces than LARGE_POLICY has its status refreshed this often instead."""
TERMINAL = {
    NamespacePhase.COMPLETED,
    NamespacePhase.FAILED,
    NamespacePhase.ROLLED_BACK,
    NamespacePhase.FAILED_ROLLBACK,
}
log = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Our status schema is typed, so kopf keeps its own bookkeeping in annotations, not in status."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="promote.kosmos.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="promote.kosmos.io", key="last-handled-configuration"
    )
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 60


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Credentials from the kubeconfig our settings name, read by the official client (tokens, client
    certificates, CA), so the watcher and the workers always talk to the same control plane."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=runtime().settings.kubeconfig, client_configuration=configuration
    )
    header = configuration.auth_settings().get("BearerToken", {}).get("value") or ""
    token = header.removeprefix("Bearer ").strip()
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme="Bearer" if token else None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def _run_id(uid: str) -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uid[:8]}-{secrets.token_hex(2)}"


def set_condition(
    status: Mapping[str, Any],
    patch: kopf.Patch,
    type_: str,
    value: bool,
    reason: str,
    message: str,
    generation: Any,
) -> None:
    conditions = patch.status.get("conditions") or list(status.get("conditions") or [])
    state = ConditionStatus.TRUE if value else ConditionStatus.FALSE
    patch.status["conditions"] = with_condition(conditions, type_, state, reason, message, generation)


def _fail_precheck(
    body: kopf.Body, status: Mapping[str, Any], patch: kopf.Patch, errors: list[str], message: str
) -> None:
    generation = body.metadata.get("generation")
    patch.status.update(
        {"phase": PolicyPhase.FAILED_PRECHECK.value, "precheckErrors": errors, "message": message}
    )
    set_condition(status, patch, "Prechecked", False, "PrecheckFailed", message, generation)
    kopf.warn(body, reason="PrecheckFailed", message=f"{message}: {'; '.join(errors[:5])}")


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
def start(
    *,
    name: str,
    uid: str,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    if status.get("phase") not in (None, "", PolicyPhase.PENDING.value):
        return
    generation = body.metadata.get("generation")
    if spec.get("rollback") not in (None, "", "false"):
        _fail_precheck(
            body,
            status,
            patch,
            [
                f'spec.rollback: "{spec.get("rollback")}" on a new policy: there is nothing to roll back '
                f'yet; create the policy without it, and set rollback: "true" once it has run'
            ],
            "the spec is invalid; nothing was changed",
        )
        return
    try:
        parsed = PromotePolicySpec.model_validate(dict(spec))
    except ValidationError as exc:
        _fail_precheck(body, status, patch, spec_problems(exc), "the spec is invalid; nothing was changed")
        return
    rt = runtime()
    result = precheck(
        rt.control_plane,
        parsed,
        rt.settings.protected_namespaces,
        rt.settings.member_kubeconfigs,
        member_limits=rt.member_limits(parsed.cluster_name),
        fan_out=rt.fan_out,
    )
    run_id = _run_id(uid)
    run = RunSpec(
        policy=name,
        policy_uid=uid,
        run_id=run_id,
        generation=generation or 0,
        started=time.time(),
        cluster=parsed.cluster_name,
        member_id=result.member_id,
        included_resources=tuple(parsed.included_namespace_scoped_resources),
        excluded_resources=tuple(parsed.excluded_namespace_scoped_resources),
    )
    held = [] if result.errors else _claims_refused(rt, run, result.namespaces)
    if result.errors or held:
        _fail_precheck(
            body,
            status,
            patch,
            result.errors or capped(held),
            f"precheck failed with {result.error_count or len(held)} problem(s); nothing was changed. "
            f"Fix the policy or the "
            f"clusters (or wait for the policy holding a namespace), then re-create the policy",
        )
        return
    patch.status.update(
        {
            "phase": PolicyPhase.RUNNING.value,
            "runId": run_id,
            "clusterName": parsed.cluster_name,
            "observedGeneration": generation,
            "startTime": now_rfc3339(),
            "precheckErrors": [],
            "precheckWarnings": result.warnings,
            "namespacesTotal": len(result.namespaces),
            "namespacesDone": 0,
            "message": "promoting",
            "namespaces": render_within_budget([NamespaceStatus(name=ns) for ns in result.namespaces]),
        }
    )
    message = f"{len(result.namespaces)} namespace(s) claimed and published, run {run_id}"
    set_condition(status, patch, "Prechecked", True, "PrecheckPassed", message, generation)
    kopf.event(body, type="Normal", reason="RunStarted", message=message)
    for namespace in result.namespaces:
        start_namespace(app, NamespaceRun(name, namespace, run_id, parsed.cluster_name))
    log.info("policy %s: %s", name, message)


def _claims_refused(rt: Runtime, run: RunSpec, namespaces: list[str]) -> list[str]:
    """Every namespace claimed and nothing to say, or none claimed and why."""
    try:
        rt.claims.acquire_all(run, namespaces, rt.fan_out)
    except ClaimsHeld as refused:
        return [str(held) for held in refused.held]
    return []


def policy_phase(namespaces: list[NamespaceStatus], rolling_back: bool) -> PolicyPhase:
    phases = {ns.phase for ns in namespaces}
    if not phases <= TERMINAL:
        return PolicyPhase.ROLLING_BACK if rolling_back else PolicyPhase.RUNNING
    if NamespacePhase.FAILED_ROLLBACK in phases:  # a compensation's too: a person is needed either way
        return PolicyPhase.FAILED_ROLLBACK
    if rolling_back:
        return PolicyPhase.ROLLED_BACK
    if phases == {NamespacePhase.COMPLETED}:
        return PolicyPhase.COMPLETED
    if NamespacePhase.COMPLETED in phases:
        return PolicyPhase.PARTIALLY_FAILED
    return PolicyPhase.FAILED


ROLLBACK_FROM = {
    PolicyPhase.COMPLETED.value,
    PolicyPhase.PARTIALLY_FAILED.value,
    PolicyPhase.FAILED.value,
    PolicyPhase.FAILED_ROLLBACK.value,
}


def _answer_rollback_request(
    name: str, body: kopf.Body, spec: Mapping[str, Any], status: Mapping[str, Any], patch: kopf.Patch
) -> None:
    """`rollback: "true"` rolls back every namespace that is not already back, and the request is reset
    so that it is not replayed; on a policy still running it waits until the run has finished. A request
    that cannot be honoured is refused with a condition and an Event, and reset.

    Read from the spec by the timer (level-triggered), not from a field-change handler: a change that
    arrives while the watcher resets an earlier request must not be lost between two event batches."""
    request = spec.get("rollback")
    phase = status.get("phase")
    if request in (None, "", "false") or phase in (None, "", PolicyPhase.PENDING.value):
        return  # a new policy: start() refuses a rollback request there
    if request != "true":
        _refuse_rollback(
            body, status, patch, request, f'spec.rollback: "{request}" is not a request; set "true"'
        )
    elif not status.get("runId"):
        _refuse_rollback(
            body, status, patch, request, f"the policy never ran ({phase}): nothing to roll back"
        )
    elif phase == PolicyPhase.ROLLED_BACK.value:
        _refuse_rollback(body, status, patch, request, "the policy is already rolled back")
    elif phase in ROLLBACK_FROM:
        _start_rollback(name, body, status, patch)


def _reset_rollback(patch: kopf.Patch, request: str) -> None:
    """Remove `spec.rollback` only if it still holds the request answered (kopf applies this to the
    freshly read object): a newer request written meanwhile stays."""

    def reset(body: kopf.RawBody) -> None:
        if (body.get("spec") or {}).get("rollback") == request:
            del body["spec"]["rollback"]

    patch.fns.append(reset)


def _refuse_rollback(
    body: kopf.Body, status: Mapping[str, Any], patch: kopf.Patch, request: str, why: str
) -> None:
    _reset_rollback(patch, request)
    set_condition(
        status, patch, "RollbackRefused", True, "RollbackRefused", why, body.metadata.get("generation")
    )
    kopf.warn(body, reason="RollbackRefused", message=f"{why}; spec.rollback was reset")


def _run_of(name: str, namespace: str, status: Mapping[str, Any], claim: Claim | None = None) -> NamespaceRun:
    attempt = claim.attempt if claim is not None else 1
    return NamespaceRun(name, namespace, status["runId"], status["clusterName"], attempt)


def rollback_due(phase: NamespacePhase) -> bool:
    """Whether a rollback request sends a namespace, its progress in this phase, a rollback message: not
    when one is queued, running (`Compensating`, written before the message goes) or done. kopf may call
    the timer again with the policy as it was before the request was answered (its watch lags a busy API
    server), and two rollbacks of one namespace at once collide: one stops at the other's deletions and
    retries seconds later. A lost message is the watchdog's to resume; a FailedRollback is retried."""
    return phase not in (NamespacePhase.COMPENSATING, NamespacePhase.ROLLED_BACK)


def _start_rollback(name: str, body: kopf.Body, status: Mapping[str, Any], patch: kopf.Patch) -> None:
    """Each claim of the run moves to "rolling back" before its message goes out: the message acts only
    because the claim says so, and a stale one of an earlier request finds nothing to do."""
    _reset_rollback(patch, "true")
    rt = runtime()
    progress = Progress(rt.redis, name, status["runId"])
    listed = [
        ns["name"] for ns in status.get("namespaces", []) if ns.get("phase") != NamespacePhase.ROLLED_BACK
    ]
    readings = progress.read(listed)
    pending = [ns for ns, reading in zip(listed, readings, strict=True) if rollback_due(reading.status.phase)]
    claims = rt.fan_out(
        lambda namespace: rt.claims.roll_back(
            status["clusterName"], namespace, status["runId"], ClaimState.PROMOTING, ClaimState.COMPLETED
        ),
        pending,
    )
    for namespace, claim in zip(pending, claims, strict=True):
        run = _run_of(name, namespace, status, claim)
        if claim is None:
            progress.phase(namespace, NamespacePhase.ROLLED_BACK, "rolled back", RELEASED)
        else:
            progress.phase(namespace, NamespacePhase.COMPENSATING, "rolling back", "rollback requested")
            rollback_namespace(app, run)
    # Written even when every namespace was under way already (a pass that saw the policy before this
    # request was answered, or one after a watcher that stopped before its status was written): the
    # status then says rolling back, so its passes watch these namespaces and resume any that stall.
    message = f"rolling back {len(listed)} namespace(s) on request"
    patch.status.update({"phase": PolicyPhase.ROLLING_BACK.value, "completionTime": None, "message": message})
    set_condition(status, patch, "Completed", False, "RollingBack", message, body.metadata.get("generation"))
    if pending:
        kopf.event(body, type="Normal", reason="RollbackRequested", message=message)


RELEASED = "already rolled back: the run no longer holds the namespace"


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_changed(
    *,
    old: kopf.BodyEssence | Any | None,
    new: kopf.BodyEssence | Any | None,
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    """A run keeps the spec it started with; an edit afterwards is reported, never applied."""
    if not status.get("runId"):
        return
    before, after = dict(old or {}), dict(new or {})
    changed = sorted(
        k for k in before.keys() | after.keys() if k != "rollback" and before.get(k) != after.get(k)
    )
    if not changed:
        return
    message = (
        f"spec changed after the run started ({', '.join(changed)}); not applied: run "
        f"{status['runId']} keeps the spec of generation {status.get('observedGeneration')}. "
        f"Create a new policy for the new spec"
    )
    set_condition(
        status, patch, "SpecChanged", True, "SpecChangedAfterRun", message, body.metadata.get("generation")
    )
    kopf.warn(body, reason="SpecChangedAfterRun", message=message)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def cancel(*, name: str, body: kopf.Body, status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    """Deleting a policy cancels its run: namespaces not yet completed are rolled back from their backup,
    completed ones stay promoted (their claims are released), and only then does the policy go (kopf
    holds it with a finalizer until this handler returns)."""
    if not status.get("runId") or not status.get("clusterName"):
        return
    rt = runtime()
    progress = Progress(rt.redis, name, status["runId"])
    names = [ns["name"] for ns in status.get("namespaces", [])]
    waiting: list[str] = []
    claims = rt.fan_out(lambda namespace: rt.claims.get(status["clusterName"], namespace), names)
    for namespace, reading, claim in zip(names, progress.read(names), claims, strict=True):
        run = _run_of(name, namespace, status)
        if claim is None or claim.run_id != run.run_id:
            continue
        if claim.state is ClaimState.COMPLETED:
            rt.claims.release(claim)
            continue
        if claim.state is ClaimState.PROMOTING:
            claim = rt.claims.roll_back(run.cluster, namespace, run.run_id, ClaimState.PROMOTING)
            if claim is None:
                continue
            rollback_namespace(app, _run_of(name, namespace, status, claim))
            kopf.event(
                body,
                type="Normal",
                reason="NamespaceCancelled",
                message=f"{namespace}: rolling back, the policy is deleted",
            )
        elif reading.status.phase is NamespacePhase.FAILED_ROLLBACK:
            rollback_namespace(app, _run_of(name, namespace, status, claim))
        else:
            _watchdog(progress, _run_of(name, namespace, status), reading.status.phase, reading.updated, True)
        waiting.append(namespace)
    if waiting:
        message = f"deleting: waiting for {len(waiting)} namespace(s) to roll back: {', '.join(waiting[:10])}"
        patch.status.update({"phase": PolicyPhase.ROLLING_BACK.value, "message": message})
        raise kopf.TemporaryError(message, delay=2)


def _merged(current: NamespaceStatus, previous: dict[str, Any]) -> NamespaceStatus:
    """Redis may have lost a namespace's progress (a restart): then the status already written stands."""
    if current.phase is NamespacePhase.PENDING and previous.get("phase", "Pending") != "Pending":
        return NamespaceStatus.model_validate(previous)
    return current


def _watchdog(
    progress: Progress, run: NamespaceRun, phase: NamespacePhase, updated: float | None, rolling_back: bool
) -> None:
    """Resume a namespace whose progress stopped moving: once per stall, as its claim says. A resumed
    run gets a new attempt in its claim, so the messages of the stalled one (redelivered late, say) do
    nothing. After too many resumes, compensate instead; a stalled rollback is published again."""
    rt = runtime()
    config = rt.settings
    if phase in TERMINAL:
        return
    if updated is None:  # no record is no proof of a stall: count a whole stall timeout from now
        progress.touch(run.namespace)
        return
    if time.time() - updated < config.stall_timeout:
        return
    resumes = progress.bump_resumes(run.namespace)
    metrics.namespace_stalled(run.policy)
    claim = rt.claims.get(run.cluster, run.namespace)
    log.warning(
        "namespace %s of %s made no progress for %.0fs: resume #%d (claim: %s)",
        run.namespace,
        run.policy,
        config.stall_timeout,
        resumes,
        claim.describe() if claim else "none",
    )
    if claim is None or claim.run_id != run.run_id:
        progress.phase(run.namespace, NamespacePhase.ROLLED_BACK, "rolled back", RELEASED)
    elif claim.state is ClaimState.COMPLETED:
        progress.phase(run.namespace, NamespacePhase.COMPLETED, "done", "promoted (as its claim records)")
    elif claim.state is ClaimState.ROLLING_BACK:
        current = replace(run, attempt=claim.attempt)
        (rollback_namespace if rolling_back else compensate_namespace)(app, current)
    elif resumes > config.max_resumes or phase is NamespacePhase.COMPENSATING:
        compensate_namespace(app, replace(run, attempt=claim.attempt))
    else:
        resumed = rt.claims.change(run.cluster, run.namespace, lambda c: _next_attempt(c, run.run_id))
        if resumed is not None and resumed.state is ClaimState.PROMOTING and resumed.run_id == run.run_id:
            start_namespace(app, replace(run, attempt=resumed.attempt))


def _next_attempt(claim: Claim | None, run_id: str) -> Claim | None:
    if claim is None or claim.run_id != run_id or claim.state is not ClaimState.PROMOTING:
        return None
    return replace(claim, attempt=claim.attempt + 1)


@kopf.timer(GROUP, VERSION, PLURAL, interval=STATUS_INTERVAL, initial_delay=STATUS_INTERVAL)
def report(
    *,
    name: str,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Every STATUS_INTERVAL: the run's progress into the status (and the watchdog), then any rollback
    request."""
    if body.metadata.get("deletionTimestamp"):
        return  # cancel() owns a policy being deleted
    current: Mapping[str, Any] = status
    running = status.get("phase") in (PolicyPhase.RUNNING.value, PolicyPhase.ROLLING_BACK.value)
    if running and status.get("runId") and _refresh_due(memo, len(status.get("namespaces") or ())):
        current = {**status, **_refresh(name, body, status, patch)}
    _answer_rollback_request(name, body, spec, current, patch)


def _refresh_due(memo: kopf.Memo, namespaces: int) -> bool:
    """Whether this pass refreshes the status: every pass for a policy of up to LARGE_POLICY namespaces,
    once a LARGE_POLICY_INTERVAL beyond (its status is hundreds of KiB, and rewriting it twice a second
    cost the API server and the watcher more than the half second saves: 1,000 x 20 ran 97 -> 130 s)."""
    if namespaces <= LARGE_POLICY:
        return True
    now = time.monotonic()
    if now - memo.get("refreshed", 0.0) < LARGE_POLICY_INTERVAL - STATUS_INTERVAL / 2:
        return False
    memo["refreshed"] = now
    return True


def _refresh(name: str, body: kopf.Body, status: Mapping[str, Any], patch: kopf.Patch) -> dict[str, Any]:
    """The status as progress says it is now; written only when it changed."""
    rolling_back = status.get("phase") == PolicyPhase.ROLLING_BACK.value
    progress = Progress(runtime().redis, name, status["runId"])
    previous = status.get("namespaces", [])
    readings = progress.read([ns["name"] for ns in previous])
    namespaces = [_merged(reading.status, ns) for reading, ns in zip(readings, previous, strict=True)]
    for namespace, reading in zip(namespaces, readings, strict=True):
        _watchdog(
            progress, _run_of(name, namespace.name, status), namespace.phase, reading.updated, rolling_back
        )
    rendered = render_within_budget(namespaces)
    phase = policy_phase(namespaces, rolling_back)
    done = sum(1 for ns in namespaces if ns.phase in TERMINAL)
    update: dict[str, Any] = {"namespaces": rendered, "namespacesDone": done, "phase": phase.value}
    if phase not in (PolicyPhase.RUNNING, PolicyPhase.ROLLING_BACK):
        update["completionTime"] = now_rfc3339()
        update["message"] = _summary(phase, namespaces)
        if status.get("startTime"):
            elapsed = parse_rfc3339(update["completionTime"]) - parse_rfc3339(status["startTime"])
            update["durationSeconds"] = round(elapsed.total_seconds(), 1)
    if any(
        status.get(key) != value
        for key, value in update.items()
        if key not in ("completionTime", "durationSeconds")
    ):
        patch.status.update(update)
        _announce(body, previous, namespaces, rolling_back)
        if phase.value != status.get("phase"):
            _conclude(body, status, patch, phase, update.get("message", ""))
    return update


UNDONE = (NamespacePhase.ROLLED_BACK, NamespacePhase.FAILED_ROLLBACK)
NAMESPACE_EVENTS = {
    NamespacePhase.COMPLETED: ("Normal", "NamespacePromoted"),
    NamespacePhase.ROLLED_BACK: ("Normal", "NamespaceRolledBack"),
    NamespacePhase.FAILED_ROLLBACK: ("Warning", "NamespaceRollbackFailed"),
}


def _announce(
    body: kopf.Body, previous: list[dict[str, Any]], namespaces: list[NamespaceStatus], rolling_back: bool
) -> None:
    """An Event for each namespace that reached an end, or began a compensation, since the last pass."""
    before = {ns["name"]: ns.get("phase") for ns in previous}
    undoing = {phase.value for phase in (NamespacePhase.COMPENSATING, *UNDONE)}
    for ns in namespaces:
        if before.get(ns.name) == ns.phase.value:
            continue
        if not rolling_back and ns.phase.value in undoing and before.get(ns.name) not in undoing:
            # Seen compensating, or already back: a small namespace is undone within one status pass.
            kopf.warn(
                body, reason="CompensationStarted", message=f"{ns.name}: {ns.message or 'rolling back'}"
            )
        if ns.phase in NAMESPACE_EVENTS:
            kind, reason = NAMESPACE_EVENTS[ns.phase]
            kopf.event(body, type=kind, reason=reason, message=f"{ns.name}: {ns.message or ns.phase.value}")


def _conclude(
    body: kopf.Body, status: Mapping[str, Any], patch: kopf.Patch, phase: PolicyPhase, message: str
) -> None:
    """The conditions `kubectl wait --for=condition=...` waits on, as the policy's phase moves. Each says
    the generation it was written for (kubectl ignores a condition older than the object's generation, and
    a rollback request is a newer generation than the run's)."""
    generation = body.metadata.get("generation")
    degraded = phase in (PolicyPhase.PARTIALLY_FAILED, PolicyPhase.FAILED, PolicyPhase.FAILED_ROLLBACK)
    reason = phase.value
    set_condition(status, patch, "Completed", phase is PolicyPhase.COMPLETED, reason, message, generation)
    set_condition(status, patch, "RolledBack", phase is PolicyPhase.ROLLED_BACK, reason, message, generation)
    set_condition(status, patch, "Degraded", degraded, reason, message, generation)


NAMES_IN_SUMMARY = 10
"""Namespaces named per phase in the final message (and the conditions that repeat it)."""


def _summary(phase: PolicyPhase, namespaces: list[NamespaceStatus]) -> str:
    by_phase: dict[str, list[str]] = {}
    for ns in namespaces:
        by_phase.setdefault(ns.phase.value, []).append(ns.name)
    parts = [
        f"{phase_name}: {', '.join(capped(names, NAMES_IN_SUMMARY))}"
        for phase_name, names in sorted(by_phase.items())
    ]
    return f"{phase.value}. " + "; ".join(parts)
