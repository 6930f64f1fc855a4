"""`kpromote rollback`: ask the watcher to roll a policy back, and with --wait follow it to its end.

The request is the policy's `spec.rollback: "true"`, set with a merge patch (the field is what the
watcher and Kosmos users already know). It is refused here, before anything is written, in the phases
where the watcher would ignore it, so that nobody waits for a rollback that will never start.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.markup import escape

from services.console.common import (
    FAILED,
    OK,
    USAGE,
    ConsoleError,
    connect,
    get_policy,
    guarded,
    kubeconfig_path,
    load_settings,
    out,
    phase_of,
    policy_resource,
    working_copy_of,
)
from services.console.watch import follow, report
from shared.backup import ARCHIVE_NAME, BackupDir
from shared.backup.store import S3_SCHEME, is_remote, split_s3_url, store_from_settings
from shared.claims import ClaimHeld, ClaimState, RunSpec
from shared.models import PolicyPhase
from shared.progress import NamespaceRun
from shared.runtime import Runtime
from shared.steps import rollback

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


def _open_backup(location: Path) -> tuple[BackupDir, dict[str, Any]]:
    """The backup a `--backup` location names (a run folder, its archive, or either's s3:// URL) and the
    settings that make the rollback worker's runtime find the same backup."""
    text = str(location)
    if text.startswith("s3:/") and not text.startswith(S3_SCHEME):
        text = S3_SCHEME + text.removeprefix("s3:/")  # a Path folds the URL's double slash
    if is_remote(text):
        bucket, path = split_s3_url(text.removesuffix(f"/{ARCHIVE_NAME}"))
        *prefix, policy, namespace, run = ["", "", "", *path.split("/")]
        base = "/".join(part for part in prefix if part)
        settings = load_settings().model_copy(update={"backup_url": f"s3://{bucket}/{base}".rstrip("/")})
        try:
            backup = BackupDir.of_run(
                store_from_settings(settings), policy, namespace, run, settings.backup_cache_dir
            )
        except ValueError:
            raise ConsoleError(
                f"{text} names no run: s3://bucket[/prefix]/POLICY/NAMESPACE/RUN", USAGE
            ) from None
        return backup, {"backup_url": settings.backup_url}
    root = location.parent if location.is_file() else location
    return BackupDir(root), {"backup_url": None, "backup_dir": root.parents[2]}


@guarded
def run_from_backup(location: Path, kubeconfig: str | None) -> int:
    """Roll one namespace back from its sealed backup alone, for a run whose policy is gone (deleted with
    its finalizer removed by hand, say). Everything the rollback needs is in the backup: the member, the
    run and what it did. The namespace's claim must be this run's, or free (it is taken for the
    rollback); the rollback itself is the routine the rollback worker runs."""
    backup, where = _open_backup(location)
    with working_copy_of(backup):
        return _roll_back_from(backup, where, kubeconfig)


def _roll_back_from(backup: BackupDir, where: dict[str, Any], kubeconfig: str | None) -> int:
    manifest = backup.manifest()
    spec = RunSpec.recorded_in(manifest.labels) if manifest is not None else None
    if manifest is None or spec is None:
        raise ConsoleError(
            f"{backup.location.removesuffix(ARCHIVE_NAME)} holds no sealed backup of a run: pass a run "
            "folder or its archive (or their s3:// URL)",
            USAGE,
        )
    namespace = manifest.labels["namespace"]
    settings = load_settings().model_copy(
        update={"kubeconfig": str(kubeconfig_path(kubeconfig, load_settings())), **where}
    )
    console = out()
    rt = Runtime(settings)
    run = NamespaceRun(spec.policy, namespace, spec.run_id, spec.cluster)
    live = rt.control_plane.get(policy_resource(rt.control_plane), "", spec.policy)
    if live is not None and (live.get("status") or {}).get("runId") == spec.run_id:
        raise ConsoleError(
            f'PromotePolicy "{spec.policy}" still holds run {spec.run_id}: roll it back with '
            f"kpromote rollback {spec.policy}",
            USAGE,
        )
    try:
        # Its cluster-scoped objects, like any rollback's claim: a namespace starting to use one of them
        # meanwhile waits until this rollback has ended (shared/steps/backup.py).
        rt.claims.acquire(
            spec, namespace, state=ClaimState.ROLLING_BACK, cluster_objects=manifest.cluster_objects()
        )
    except ClaimHeld as held:
        raise ConsoleError(
            f"{held}: this backup's run no longer owns it, so nothing was done", USAGE
        ) from None
    rt.claims.roll_back(spec.cluster, namespace, spec.run_id, ClaimState.PROMOTING, ClaimState.COMPLETED)
    console.print(
        f"Rolling back {escape(namespace)} of cluster {escape(spec.cluster)} from run {spec.run_id}…"
    )
    result = rollback.rollback(rt, run)
    if result.differences:
        for line in result.differences:
            console.print(f"  left: {escape(line)}")
        console.print("The rollback did not restore everything; fix the cause and run it again.")
        return FAILED
    rt.claims.release_run(spec.cluster, namespace, spec.run_id)
    console.print(
        f"Rolled back: {len(result.recreated)} owner(s) re-created, {len(result.reverted)} object(s) "
        f"restored, {len(result.deleted)} control-plane object(s) deleted"
        + (f", kept: {escape(', '.join(result.kept))}" if result.kept else "")
        + "."
    )
    return OK
