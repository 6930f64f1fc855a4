"""The policy watcher: kopf handlers that precheck a PromotePolicy, publish one job per namespace, and
write the live progress back into the policy's status. It does no migration work itself.

Progress comes from Redis (written idempotently by the workers) and is written to the status at most
once per interval, as one patch, only when something changed.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import kopf
import kubernetes
from pydantic import ValidationError

from shared.celery_app import app
from shared.models import NamespacePhase, NamespaceStatus, PolicyPhase, PromotePolicySpec
from shared.models.policy import GROUP, PLURAL, VERSION, spec_problems
from shared.models.times import now_rfc3339
from shared.pipeline import rollback_namespace, start_namespace
from shared.precheck import precheck
from shared.progress import NamespaceRun, Progress
from shared.runtime import runtime

STATUS_INTERVAL = 1.0
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
    header = configuration.auth_settings().get("BearerToken", {}).get("value", "")
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


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
def start(
    name: str, uid: str, spec: dict[str, Any], status: dict[str, Any], patch: kopf.Patch, **_: Any
) -> None:
    if status.get("phase") not in (None, "", PolicyPhase.PENDING.value):
        return
    try:
        parsed = PromotePolicySpec.model_validate(dict(spec))
    except ValidationError as exc:
        patch.status.update(
            {
                "phase": PolicyPhase.FAILED_PRECHECK.value,
                "precheckErrors": spec_problems(exc),
                "message": "the spec is invalid; nothing was changed",
            }
        )
        return
    rt = runtime()
    result = precheck(
        rt.control_plane,
        parsed,
        rt.settings.protected_namespaces,
        rt.settings.member_kubeconfigs,
        member_limits=rt.member_limits(parsed.cluster_name),
    )
    if not result.ok:
        patch.status.update(
            {
                "phase": PolicyPhase.FAILED_PRECHECK.value,
                "precheckErrors": result.errors,
                "message": f"precheck failed with {len(result.errors)} problem(s); nothing was "
                f"changed. Fix the policy or the clusters, then re-create the policy",
            }
        )
        return
    run_id = _run_id(uid)
    patch.status.update(
        {
            "phase": PolicyPhase.RUNNING.value,
            "runId": run_id,
            "startTime": now_rfc3339(),
            "precheckErrors": [],
            "namespacesTotal": len(result.namespaces),
            "namespacesDone": 0,
            "message": "promoting",
            "namespaces": [
                NamespaceStatus(name=ns).model_dump(mode="json", by_alias=True, exclude_none=True)
                for ns in result.namespaces
            ],
        }
    )
    for namespace in result.namespaces:
        start_namespace(app, NamespaceRun(name, namespace, run_id))
    log.info("policy %s: %d namespace(s) published, run %s", name, len(result.namespaces), run_id)


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


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.rollback")
def rollback_requested(name: str, new: Any, status: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    """`rollback: "true"` rolls back every namespace that is not already back; the request is then reset
    so that it is not replayed. A policy that is still running is rolled back once it has finished."""
    if new == "true" and status.get("phase") in ROLLBACK_FROM and status.get("runId"):
        _start_rollback(name, status, patch)


def _start_rollback(name: str, status: dict[str, Any], patch: kopf.Patch) -> None:
    patch.spec["rollback"] = None
    pending = [
        ns["name"] for ns in status.get("namespaces", []) if ns.get("phase") != NamespacePhase.ROLLED_BACK
    ]
    patch.status.update(
        {
            "phase": PolicyPhase.ROLLING_BACK.value,
            "completionTime": None,
            "message": f"rolling back {len(pending)} namespace(s) on request",
        }
    )
    for namespace in pending:
        rollback_namespace(app, NamespaceRun(name, namespace, status["runId"]))


def _merged(current: NamespaceStatus, previous: dict[str, Any]) -> NamespaceStatus:
    """Redis may have lost a namespace's progress (a restart): then the status already written stands."""
    if current.phase is NamespacePhase.PENDING and previous.get("phase", "Pending") != "Pending":
        return NamespaceStatus.model_validate(previous)
    return current


def _watchdog(
    progress: Progress, run: NamespaceRun, phase: NamespacePhase, updated: float | None, rolling_back: bool
) -> None:
    """Resume a namespace whose progress stopped moving; redelivery and idempotent steps make a resumed
    run converge. After too many resumes, compensate instead (or, mid-rollback, resume the rollback)."""
    config = runtime().settings
    if phase in TERMINAL:
        return
    if updated is None:  # no record is no proof of a stall: count a whole stall timeout from now
        progress.touch(run.namespace)
        return
    if time.time() - updated < config.stall_timeout:
        return
    resumes = progress.bump_resumes(run.namespace)
    log.warning(
        "namespace %s of %s made no progress for %.0fs: resume #%d",
        run.namespace,
        run.policy,
        config.stall_timeout,
        resumes,
    )
    if rolling_back:
        rollback_namespace(app, run)
    elif phase is NamespacePhase.COMPENSATING or resumes > config.max_resumes:
        rollback_namespace(app, run, failed_task_id="")
    else:
        start_namespace(app, run)


@kopf.timer(GROUP, VERSION, PLURAL, interval=STATUS_INTERVAL, initial_delay=STATUS_INTERVAL)
def report(name: str, spec: dict[str, Any], status: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    rolling_back = status.get("phase") == PolicyPhase.ROLLING_BACK.value
    if (status.get("phase") != PolicyPhase.RUNNING.value and not rolling_back) or not status.get("runId"):
        return
    progress = Progress(runtime().redis, name, status["runId"])
    previous = status.get("namespaces", [])
    readings = progress.read([ns["name"] for ns in previous])
    namespaces = [_merged(reading.status, ns) for reading, ns in zip(readings, previous, strict=True)]
    for namespace, reading in zip(namespaces, readings, strict=True):
        run = NamespaceRun(name, namespace.name, status["runId"])
        _watchdog(progress, run, namespace.phase, reading.updated, rolling_back)
    rendered = [ns.model_dump(mode="json", by_alias=True, exclude_none=True) for ns in namespaces]
    phase = policy_phase(namespaces, rolling_back)
    done = sum(1 for ns in namespaces if ns.phase in TERMINAL)
    update: dict[str, Any] = {"namespaces": rendered, "namespacesDone": done, "phase": phase.value}
    if phase not in (PolicyPhase.RUNNING, PolicyPhase.ROLLING_BACK):
        update["completionTime"] = now_rfc3339()
        update["message"] = _summary(phase, namespaces)
    if any(status.get(key) != value for key, value in update.items() if key != "completionTime"):
        patch.status.update(update)
    if spec.get("rollback") == "true" and phase.value in ROLLBACK_FROM:
        _start_rollback(name, {**status, **update}, patch)


def _summary(phase: PolicyPhase, namespaces: list[NamespaceStatus]) -> str:
    by_phase: dict[str, list[str]] = {}
    for ns in namespaces:
        by_phase.setdefault(ns.phase.value, []).append(ns.name)
    parts = [f"{phase_name}: {', '.join(names)}" for phase_name, names in sorted(by_phase.items())]
    return f"{phase.value}. " + "; ".join(parts)
