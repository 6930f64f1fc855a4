"""The `kpromote` commands as a person runs them, end to end: real `python -m services` processes against
the session's installation (simulated Kosmos pair, real watcher and workers), stdout not a terminal.

One story, in order: plan (checked on the wire to write nothing on either cluster), apply --wait, a plan
of a sibling namespace that finds no false conflict, status, the backups of the run, a plan that the
precheck now refuses, rollback --wait, and a plan that finds a conflict with an object someone else made
in the control plane."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubesim.seed import PRIORITY_CLASS, STORAGE_CLASS, seed_namespace
from kubesim.testing import SimAdmin, wait_until
from tests.pipeline.conftest import Installation

NAMESPACE = "cli-e2e"
POLICY = "cli-e2e"
SIBLING = "cli-e2e-sibling"
"""A second namespace with the same cluster-scoped dependencies, planned while the first is promoted."""
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
CLUSTER_ROLES = "clusterroles.rbac.authorization.k8s.io"


def write_policy(directory: Path, name: str, namespace: str) -> Path:
    path = directory / f"{name}.yaml"
    document = {
        "apiVersion": "kosmos.io/v1alpha1",
        "kind": "PromotePolicy",
        "metadata": {"name": name},
        "spec": {"clusterName": "member1", "includedNamespaces": [namespace]},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def kpromote(
    installation: Installation, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        env={**installation.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def explain(result: subprocess.CompletedProcess[str], installation: Installation | None = None) -> str:
    logs = installation.logs() if installation is not None else ""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n{logs}"


def last_seq(admin: SimAdmin) -> int:
    return max((entry["seq"] for entry in admin.requests()), default=0)


def plan_without_writes(installation: Installation, policy_file: Path, *extra: str) -> list[Any]:
    """Run `plan` (JSON, then the table) and prove from both simulators' request logs that it wrote nothing;
    the two results."""
    admins = [SimAdmin(installation.control_plane.url), SimAdmin(installation.member.url)]
    marks = [last_seq(admin) for admin in admins]
    results = [
        kpromote(installation, "plan", "-f", str(policy_file), "-o", "json"),
        kpromote(installation, "plan", "-f", str(policy_file), *extra),
    ]
    logs = [admin.requests(mark) for admin, mark in zip(admins, marks, strict=True)]
    assert all(logs), "the plan must have read both clusters"
    writes = [entry for log in logs for entry in log if entry["verb"] in WRITE_VERBS]
    assert writes == [], writes
    return results


@pytest.mark.timeout(600)
def test_plan_apply_status_backups_and_rollback_from_the_command_line(
    installation: Installation, tmp_path: Path
) -> None:
    seeded = seed_namespace(installation.member_api, NAMESPACE)
    seed_namespace(installation.member_api, SIBLING)
    policy_file, sibling_file = (
        write_policy(tmp_path, POLICY, NAMESPACE),
        write_policy(tmp_path, SIBLING, SIBLING),
    )
    backup_dir = Path(installation.env["KPROMOTE_BACKUP_DIR"])

    # plan: everything the promote would do, and not one write anywhere.
    planned, table = plan_without_writes(installation, policy_file)
    assert planned.returncode == 0, explain(planned)
    document = json.loads(planned.stdout)
    assert document["clean"] is True and document["precheckErrors"] == document["precheckWarnings"] == []
    [namespace] = document["namespaces"]
    assert namespace["backedUp"]["pods"] == len(seeded.pods)
    assert namespace["backedUp"]["deployments.apps"] == 1 and namespace["backedUp"]["replicasets.apps"] == 2
    dependencies = {(d["resource"], d["name"]) for d in namespace["dependencies"]}
    assert {
        (CLUSTER_ROLES, f"{NAMESPACE}-pod-reader"),
        ("clusterrolebindings.rbac.authorization.k8s.io", f"{NAMESPACE}-web-pod-reader"),
        ("persistentvolumes", f"pv-{NAMESPACE}-data"),
        ("storageclasses.storage.k8s.io", STORAGE_CLASS),
        ("priorityclasses.scheduling.k8s.io", PRIORITY_CLASS),
        ("customresourcedefinitions.apiextensions.k8s.io", "widgets.example.com"),
    } <= dependencies
    detach = namespace["detach"]
    assert detach["orphanDelete"]["deployments.apps"] == ["web"]
    assert detach["orphanDelete"]["statefulsets.apps"] == ["db"]
    assert f"pv-{NAMESPACE}-data" in detach["retain"]
    stays = {(s["resource"], s["name"]) for s in namespace["stays"]}
    skipped = {(s["resource"], s["name"]): s["reason"] for s in namespace["skipped"]}
    assert ("daemonsets.apps", "node-agent") in stays
    assert skipped[("jobs.batch", "migrate-once")] == "finished Job, not moved"
    assert ("serviceaccounts", "default") in skipped
    assert table.returncode == 0, explain(table)
    assert (
        "Plan is clean" in table.stdout and "node-agent" in table.stdout and "Traceback" not in table.stderr
    )
    assert not (backup_dir / POLICY).exists(), "a plan writes no backup"

    # apply --wait, stdout not a terminal: plain lines, one per change, each after the time it was seen,
    # exit 0 on Completed. The control plane answers the first ConfigMap create of the namespace with a
    # 503: the worker retries it, and the run's log says so.
    SimAdmin(installation.control_plane.url).add_fault(
        verb="create", resource="configmaps", namespace=NAMESPACE, status=503, nth=1
    )
    applied = kpromote(
        installation, "apply", "-f", str(policy_file), "--wait", "--timeout", "240", timeout=300
    )
    assert applied.returncode == 0, explain(applied, installation)
    lines = applied.stdout.splitlines()
    assert "\x1b[" not in applied.stdout, "no live display when stdout is not a terminal"
    assert lines[0] == f"PromotePolicy {POLICY} created."
    progress = lines[1:-1]
    assert progress and all(re.match(r"\d\d:\d\d:\d\d ", line) for line in progress), progress
    untimed = [line[9:] for line in progress]
    assert f"{POLICY}: Running, 0/1 namespaces done" in untimed
    assert any(line.startswith(f"{POLICY}/{NAMESPACE}: Completed") for line in untimed)
    assert lines[-1] == f"PromotePolicy {POLICY} Completed: 1 namespace(s) promoted."
    again = kpromote(installation, "apply", "-f", str(policy_file))
    assert again.returncode == 0 and f"PromotePolicy {POLICY} already exists (Completed)" in again.stdout

    # The StorageClass, PriorityClass and CRD the sibling namespace shares are in the control plane now,
    # made by another policy: the same content, so no conflict.
    sibling = kpromote(installation, "plan", "-f", str(sibling_file), "-o", "json")
    assert sibling.returncode == 0 and json.loads(sibling.stdout)["conflicts"] == [], explain(sibling)

    # status -o json
    shown = kpromote(installation, "status", POLICY, "-o", "json")
    assert shown.returncode == 0, explain(shown)
    status = json.loads(shown.stdout)
    assert (status["name"], status["phase"], status["namespacesDone"]) == (POLICY, "Completed", 1)
    [promoted] = status["namespaces"]
    assert promoted["phase"] == "Completed" and promoted["counts"]["rebuilt"] > 20
    assert ("daemonsets.apps", "node-agent") in {(s["resource"], s["name"]) for s in promoted["skipped"]}

    # the run's backup: listed, verified, shown.
    archive = Path(promoted["backupLocation"])
    verified = kpromote(installation, "backups", "verify", str(archive))
    assert verified.returncode == 0 and "OK" in verified.stdout, explain(verified)
    listing = kpromote(installation, "backups", "list", "-o", "json")
    assert listing.returncode == 0, explain(listing)
    [run] = [r for r in json.loads(listing.stdout) if r["policy"] == POLICY]
    assert run["sealed"] and run["path"] == str(archive.parent) and run["items"] > 20
    contents = kpromote(installation, "backups", "show", str(archive.parent))
    assert contents.returncode == 0 and f"deployments.apps\t{NAMESPACE}/web" in contents.stdout.splitlines()
    # The plan the pipeline executed, recorded beside the backup, is the one `plan` printed beforehand.
    recorded = json.loads((archive.parent / "plan.json").read_bytes())
    assert recorded["objects"] == namespace["objects"] and len(recorded["objects"]) > 20
    check_velero_style_commands(installation, status, tmp_path)

    # now the namespace is in the control plane: the precheck refuses a second promote (exit 3).
    refused = kpromote(installation, "plan", "-f", str(policy_file))
    assert refused.returncode == 3, explain(refused)
    assert f'namespace "{NAMESPACE}" already exists in the control plane' in refused.stdout

    # rollback --wait
    assert kpromote(installation, "rollback", "no-such-policy").returncode == 2
    rolled_back = kpromote(installation, "rollback", POLICY, "--wait", "--timeout", "240", timeout=300)
    assert rolled_back.returncode == 0, explain(rolled_back, installation)
    assert rolled_back.stdout.splitlines()[-1].startswith(f"PromotePolicy {POLICY} RolledBack:")
    final = yaml.safe_load(kpromote(installation, "status", POLICY, "-o", "yaml").stdout)
    assert final["phase"] == "RolledBack" and final["namespaces"][0]["phase"] == "RolledBack"
    # The rollback writes into the same run's log; `status --watch` of an ended policy draws it once.
    logged = kpromote(installation, "logs", POLICY, "-n", NAMESPACE, "-o", "json")
    steps = {json.loads(line).get("step", "") for line in logged.stdout.splitlines()}
    assert any(step.startswith("rollback.") for step in steps), steps
    watched = kpromote(installation, "status", POLICY, "--watch", timeout=60)
    assert watched.returncode == 0 and f"{POLICY}: RolledBack" in watched.stdout, explain(watched)
    twice = kpromote(installation, "rollback", POLICY)
    assert twice.returncode == 2 and "already RolledBack" in twice.stderr

    # someone else's ClusterRole of the same name in the control plane: a conflict (exit 4).
    cp_core = client.CoreV1Api(installation.cp_api)
    wait_until(
        lambda: NAMESPACE not in {n.metadata.name for n in cp_core.list_namespace().items},
        what="the rolled-back namespace to leave the control plane",
    )
    rbac = client.RbacAuthorizationV1Api(installation.cp_api)
    role = f"{NAMESPACE}-pod-reader"
    if role in {r.metadata.name for r in rbac.list_cluster_role().items}:
        rbac.delete_cluster_role(role)
    rbac.create_cluster_role(
        {"metadata": {"name": role}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}
    )
    try:
        conflicting, table = plan_without_writes(installation, policy_file)
    finally:
        rbac.delete_cluster_role(role)
    assert conflicting.returncode == 4, explain(conflicting)
    assert [(c["resource"], c["name"]) for c in json.loads(conflicting.stdout)["conflicts"]] == [
        (CLUSTER_ROLES, role)
    ]
    assert table.returncode == 4 and "Conflicts with the control plane" in table.stdout


def check_velero_style_commands(installation: Installation, status: dict[str, Any], tmp_path: Path) -> None:
    """get, logs, backups list/show by name, prune (which keeps the live policy's backup), --version."""
    run_id = status["runId"]
    [promoted] = status["namespaces"]
    run_folder = Path(promoted["backupLocation"]).parent

    version = kpromote(installation, "--version")
    assert version.returncode == 0 and re.fullmatch(r"kpromote \d+\.\d+\.\d+\S*\n", version.stdout)

    # get: every policy, with done/total, age and duration.
    listed = kpromote(installation, "get", "-o", "json")
    assert listed.returncode == 0, explain(listed)
    [row] = [row for row in json.loads(listed.stdout) if row["name"] == POLICY]
    assert (row["phase"], row["namespacesDone"], row["namespacesTotal"], row["runId"]) == (
        "Completed",
        1,
        1,
        run_id,
    )
    assert row["ageSeconds"] >= row["durationSeconds"] >= 0
    table = kpromote(installation, "get")
    assert table.stdout.splitlines()[0].split() == ["NAME", "CLUSTER", "PHASE", "DONE", "AGE", "DURATION"]
    [line] = [line.split() for line in table.stdout.splitlines() if line.startswith(f"{POLICY} ")]
    assert line[:4] == [POLICY, "member1", "Completed", "1/1"], table.stdout

    # logs: the run's own log, beside its backup: the namespace's writes and the retried create.
    assert oct((run_folder / "run.log").stat().st_mode & 0o777) == "0o600"
    logged = kpromote(installation, "logs", POLICY)
    assert logged.returncode == 0, explain(logged)
    text = logged.stdout.splitlines()
    writes = [line for line in text if f"create deployments.apps {NAMESPACE}/web on control-plane" in line]
    assert writes and all(f" {NAMESPACE} rebuild." in line for line in writes), text[:20]
    assert any(f"delete deployments.apps {NAMESPACE}/web on member1" in line for line in text)
    assert any(
        re.search(rf"retry 1/\d+ of POST configmaps {NAMESPACE}/\S+ on control-plane", line) for line in text
    )
    assert not any("GET GET" in line for line in text)
    times = [line[:23] for line in text if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert times == sorted(times) and len(times) > 50
    raw = kpromote(installation, "logs", POLICY, "-n", NAMESPACE, "-o", "json")
    records = [json.loads(line) for line in raw.stdout.splitlines()]
    assert {(r["policy"], r["namespace"], r["run"]) for r in records} == {(POLICY, NAMESPACE, run_id)}
    assert kpromote(installation, "logs", POLICY, "-n", "no-such-namespace").returncode == 2

    # backups list: date, policy, namespace, run, phase, items, size.
    listing = kpromote(installation, "backups", "list")
    header = next(line for line in listing.stdout.splitlines() if " policy " in line)
    assert re.findall(r"\w+", header) == ["date", "policy", "namespace", "run", "phase", "items", "size"]
    [ours] = [line for line in listing.stdout.splitlines() if run_id in line]
    assert re.search(
        rf"\d{{4}}-\d\d-\d\d .*{POLICY}.*{NAMESPACE}.*{run_id}.*Completed.*\d+ .*(KiB|MiB)", ours
    )

    # backups show POLICY/NAMESPACE: addressed by name, the newest sealed run.
    by_name = kpromote(installation, "backups", "show", f"{POLICY}/{NAMESPACE}")
    assert by_name.returncode == 0, explain(by_name)
    assert f"deployments.apps\t{NAMESPACE}/web" in by_name.stdout.splitlines()

    # backups prune, on a copy of the volume (the session's backups belong to other tests too): the live
    # policy's run stays however old; an old run of a policy that is gone goes; a young one stays.
    volume = tmp_path / "volume"
    kept = volume / POLICY / NAMESPACE / run_id
    shutil.copytree(run_folder, kept)
    gone = volume / "deleted-policy" / "web" / "20200101-000000-old"
    young = volume / "deleted-policy" / "web" / "20990101-000000-new"
    for folder in (gone, young):
        folder.mkdir(parents=True)
        (folder / "run.log").write_text("{}\n")
    for path in [kept, *kept.rglob("*"), gone, gone / "run.log"]:
        os.utime(path, (1_000_000_000, 1_000_000_000))
    dry = kpromote(installation, "backups", "prune", "--older-than", "30d", "--dir", str(volume), "--dry-run")
    assert dry.returncode == 0 and "Would remove 1 run folder(s)" in dry.stdout, explain(dry)
    assert gone.exists()
    pruned = kpromote(
        installation, "backups", "prune", "--older-than", "30d", "--dir", str(volume), "-o", "json"
    )
    assert pruned.returncode == 0, explain(pruned)
    actions = {(d["policy"], d["run"]): (d["action"], d["reason"]) for d in json.loads(pruned.stdout)}
    assert actions[(POLICY, run_id)][0] == "kept"
    assert actions[(POLICY, run_id)][1] == (
        f"PromotePolicy {POLICY} (Completed) may roll back from it; "
        f"the claim of {NAMESPACE} on member1 (completed) records it"
    )
    assert actions[("deleted-policy", gone.name)][0] == "removed"
    assert actions[("deleted-policy", young.name)] == ("kept", "younger than 30d")
    assert kept.is_dir() and not gone.exists() and young.is_dir()
