"""The `kpromote` commands people use, without a cluster: what a plan concludes and how it is shown, the
exit codes, the one-line errors, the plain progress lines, and the backup commands on a real archive."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from services.cli import app
from services.console import apply, plan, rollback, status, watch
from services.console.backups import human_size
from services.console.common import CONFLICTS, OK, PRECHECK_FAILED, ConsoleError, load_policy_file
from shared.backup import BackupDir, backup_root
from shared.kinds import Context
from shared.kube import Kube
from shared.markers import PROMOTED_BY, PROMOTED_IN_RUN
from shared.models import PromotePolicy, PromotePolicySpec
from tests.shared import kinds_builders as build

POLICY = {
    "apiVersion": "kosmos.io/v1alpha1",
    "kind": "PromotePolicy",
    "metadata": {"name": "promote-shop"},
    "spec": {"clusterName": "member1", "includedNamespaces": ["shop"]},
}
CONTEXT = Context(cluster="member1", policy="promote-shop", run="run-1")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Wide enough that tables never wrap a name, and no KPROMOTE_* setting leaking in from the shell."""
    for variable in ("KPROMOTE_KUBECONFIG", "KPROMOTE_BACKUP_DIR", "KPROMOTE_MEMBER_KUBECONFIGS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def write_policy(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def assert_one_line_error(result: Any, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------ policy file and connection errors
def test_a_valid_policy_file_loads_with_the_watchers_model(tmp_path: Path) -> None:
    policy = load_policy_file(write_policy(tmp_path, POLICY))
    assert policy.metadata["name"] == "promote-shop"
    assert policy.spec.included_namespaces == ["shop"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"spec": {"clusterName": "member1", "includeNamespaces": ["shop"]}}, "spec.includeNamespaces"),
        ({"spec": {"includedNamespaces": ["shop"]}}, "spec.clusterName"),
        ({"kind": "Deployment"}, "kind"),
        ({"metadata": {}}, "metadata.name"),
    ],
)
def test_a_bad_policy_file_is_one_line_naming_the_field_and_exit_2(
    runner: CliRunner, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    path = write_policy(tmp_path, {**POLICY, **change})
    result = runner.invoke(app, ["apply", "-f", str(path), "--kubeconfig", str(tmp_path / "unused")])
    assert_one_line_error(result, 2, field, str(path))


def test_a_missing_or_broken_policy_file_says_what_to_fix(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "-f", str(tmp_path / "nope.yaml")])
    assert_one_line_error(result, 2, "no policy file at", "-f")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert_one_line_error(runner.invoke(app, ["plan", "-f", str(broken)]), 2, "not valid YAML", "line")


def test_no_kubeconfig_names_the_path_and_both_ways_to_give_one(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "absent.kubeconfig"
    result = runner.invoke(app, ["status", "shop", "--kubeconfig", str(missing)])
    assert_one_line_error(
        result, 2, f"no kubeconfig at {missing}: pass --kubeconfig or set KPROMOTE_KUBECONFIG"
    )
    result = runner.invoke(app, ["rollback", "shop"], env={"KPROMOTE_KUBECONFIG": str(missing)})
    assert_one_line_error(result, 2, f"no kubeconfig at {missing}")


def test_an_unreachable_control_plane_is_exit_1_without_a_traceback(
    runner: CliRunner, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "down.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "down", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "down", "context": {"cluster": "down", "user": "u"}}],
                "current-context": "down",
            }
        )
    )
    result = runner.invoke(app, ["status", "shop", "--kubeconfig", str(kubeconfig)])
    assert_one_line_error(result, 1, "cannot reach", "check the server address in the kubeconfig")


def test_an_unusable_kubeconfig_is_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "empty.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    result = runner.invoke(app, ["status", "shop", "--kubeconfig", str(kubeconfig)])
    assert_one_line_error(result, 2, "is not usable", "--kubeconfig")


# ------------------------------------------------------------------------------------------- plan
def lookup_of(objects: dict[tuple[str, str], dict[str, Any]]) -> plan.Lookup:
    return lambda group_resource, namespace, name: objects.get((group_resource, name))


def shop_items() -> list[tuple[str, dict[str, Any]]]:
    finished = {"completionTime": "2024-03-11T03:01:00Z", "succeeded": 1}
    agent_pod = build.pod("agent-x1", owners=[build.owner("DaemonSet", "agent")])
    return [
        ("namespaces", build.served("v1", "Namespace", "shop", None)),
        ("deployments.apps", build.deployment()),
        ("replicasets.apps", build.replicaset()),
        ("pods", build.pod()),
        ("daemonsets.apps", build.daemonset()),
        ("pods", agent_pod),
        ("jobs.batch", build.job(status=finished)),
        ("configmaps", build.configmap("kube-root-ca.crt")),
        ("configmaps", build.configmap()),
        ("persistentvolumes", build.pv()),
        ("clusterroles.rbac.authorization.k8s.io", build.cluster_role("taken")),
        ("clusterroles.rbac.authorization.k8s.io", build.cluster_role("same")),
        ("clusterroles.rbac.authorization.k8s.io", build.cluster_role("ours")),
    ]


def control_plane_objects() -> dict[tuple[str, str], dict[str, Any]]:
    roles = "clusterroles.rbac.authorization.k8s.io"
    taken = build.cluster_role("taken")
    taken["rules"] = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    ours = build.cluster_role("ours")
    ours["rules"] = []
    ours["metadata"]["annotations"] = {PROMOTED_BY: "promote-shop", PROMOTED_IN_RUN: "run-1"}
    same = build.cluster_role("same")
    same["metadata"]["uid"] = "another-cluster's-uid"
    return {(roles, "taken"): taken, (roles, "same"): same, (roles, "ours"): ours}


def test_assess_counts_detach_stays_skips_and_only_real_conflicts() -> None:
    result = plan.assess("shop", shop_items(), CONTEXT, lookup_of(control_plane_objects()))

    assert result.backed_up["pods"] == 2 and result.backed_up["configmaps"] == 2
    assert result.promoted["pods"] == 1 and result.promoted["configmaps"] == 1
    assert dict(result.orphan_deleted) == {
        "deployments.apps": ["web"],
        "replicasets.apps": ["web-5c5fb89585"],
    }
    assert result.marked["pods"] == 1 and result.marked["configmaps"] == 1
    assert result.retained == ["pv-0"]
    assert {(e.resource, e.name) for e in result.stays} == {
        ("daemonsets.apps", "agent"),
        ("pods", "agent-x1"),
    }
    skipped = {(e.resource, e.name): e.reason for e in result.skipped}
    assert skipped[("jobs.batch", "migrate")] == "finished Job, not moved"
    assert ("configmaps", "kube-root-ca.crt") in skipped
    assert [(e.resource, e.name) for e in result.conflicts] == [
        ("clusterroles.rbac.authorization.k8s.io", "taken")
    ]


def test_the_exit_code_says_precheck_before_conflicts() -> None:
    conflict = plan.NamespacePlan("shop", conflicts=[plan.Entry("clusterroles", "", "taken", plan.CONFLICT)])
    assert plan.Plan("p", "member1").exit_code == OK
    assert plan.Plan("p", "member1", namespaces=[conflict]).exit_code == CONFLICTS
    assert plan.Plan("p", "member1", ["namespace missing"], [conflict]).exit_code == PRECHECK_FAILED


def test_a_dependency_shared_by_namespaces_is_one_conflict() -> None:
    entry = plan.Entry("clusterroles", "", "taken", plan.CONFLICT)
    both = [plan.NamespacePlan("a", conflicts=[entry]), plan.NamespacePlan("b", conflicts=[entry])]
    document = plan.Plan("p", "member1", namespaces=both).to_json()
    assert document["conflicts"] == [entry.to_json()] and document["exitCode"] == CONFLICTS


def rendered(draw: Any, *args: Any) -> str:
    buffer = StringIO()
    draw(Console(file=buffer, width=220, color_system=None), *args)
    return buffer.getvalue()


def test_the_plan_table_shows_every_section_and_what_to_do_next() -> None:
    namespace = plan.assess("shop", shop_items(), CONTEXT, lookup_of(control_plane_objects()))
    namespace.dependencies = [
        plan.Dependency("persistentvolumes", "pv-0", True),
        plan.Dependency("storageclasses.storage.k8s.io", "fast", False),
    ]
    text = rendered(plan.render, plan.Plan("promote-shop", "member1", [], [namespace]), Path("p.yaml"))
    for expected in (
        "Precheck passed",
        "namespace shop",
        "deployments.apps",
        "persistentvolumes (cluster)",
        "not in the member: not backed up",
        "delete, orphaning dependents",
        "reclaim policy to Retain",
        "a control-plane copy would run duplicate pods",
        "finished Job, not moved",
        "Conflicts with the control plane",
        "taken",
        "(exit 4)",
    ):
        assert expected in text, expected
    failed = rendered(
        plan.render, plan.Plan("promote-shop", "member1", ['namespace "x" does not exist']), Path("p")
    )
    assert 'namespace "x" does not exist' in failed and "(exit 3)" in failed


def test_the_plan_json_is_complete_and_parseable() -> None:
    namespace = plan.assess("shop", shop_items(), CONTEXT, lookup_of({}))
    document = json.loads(json.dumps(plan.Plan("promote-shop", "member1", [], [namespace]).to_json()))
    assert document["clean"] is True and document["exitCode"] == OK
    [shop] = document["namespaces"]
    assert shop["backedUp"]["pods"] == 2 and shop["detach"]["retain"] == ["pv-0"]
    assert shop["detach"]["orphanDelete"]["deployments.apps"] == ["web"]
    assert {"resource": "daemonsets.apps", "namespace": "app", "name": "agent"}.items() <= shop["stays"][
        0
    ].items()


# ------------------------------------------------------------------- apply, rollback and the waiting
IN_FLIGHT = [None, "Pending", "Prechecking", "Running"]
ENDS = ["Completed", "PartiallyFailed", "Failed", "FailedPrecheck", "RolledBack"]


@pytest.mark.parametrize(("phase", "done"), [(p, False) for p in IN_FLIGHT] + [(p, True) for p in ENDS])
def test_apply_waits_while_the_promote_is_in_flight(phase: str | None, done: bool) -> None:
    assert apply.promote_finished({"status": {"phase": phase} if phase else None}) is done


def test_applying_again_compares_everything_but_the_rollback_request() -> None:
    spec = PromotePolicySpec.model_validate(POLICY["spec"])
    assert apply.same_request({"spec": {**POLICY["spec"], "rollback": None}}, spec)
    assert not apply.same_request({"spec": {**POLICY["spec"], "includedNamespaces": ["other"]}}, spec)
    applied = {**POLICY, "metadata": {"name": "promote-shop", "uid": "u1"}, "status": {"phase": "Completed"}}
    body = apply.body_of(PromotePolicy.model_validate(applied))
    assert "status" not in body and body["metadata"] == {"name": "promote-shop"}


@pytest.mark.parametrize(
    ("phase", "allowed", "fragment"),
    [
        ("Completed", True, ""),
        ("PartiallyFailed", True, ""),
        ("Failed", True, ""),
        ("FailedRollback", True, ""),
        ("Running", False, "once it is Completed, PartiallyFailed, Failed or FailedRollback"),
        ("Pending", False, "kpromote status shop"),
        ("RolledBack", False, "already RolledBack"),
        ("RollingBack", False, "already rolling back"),
        ("FailedPrecheck", False, "nothing was changed"),
    ],
)
def test_a_rollback_is_refused_in_phases_the_watcher_would_ignore(
    phase: str, allowed: bool, fragment: str
) -> None:
    reason = rollback.refusal("shop", phase)
    assert (reason is None) is allowed
    assert fragment in (reason or "")


def policy_in(phase: str, completed: str | None = "2024-01-01T00:00:00Z", request: str | None = None) -> Any:
    return {
        "metadata": {"name": "shop"},
        "spec": {"clusterName": "member1", "rollback": request},
        "status": {"phase": phase, "completionTime": completed},
    }


def test_a_rollback_has_ended_only_once_the_watcher_took_the_request_and_finished_it() -> None:
    completed = policy_in("Completed")
    assert not rollback.rollback_finished(completed, policy_in("Completed", request="true"))
    assert not rollback.rollback_finished(completed, policy_in("RollingBack", completed=None))
    assert rollback.rollback_finished(completed, policy_in("RolledBack", "2024-01-01T00:05:00Z"))
    retried = policy_in("FailedRollback")
    assert not rollback.rollback_finished(retried, policy_in("FailedRollback", request="true"))
    assert not rollback.rollback_finished(retried, policy_in("FailedRollback"))
    assert rollback.rollback_finished(retried, policy_in("FailedRollback", "2024-01-01T00:05:00Z"))


def progress(phase: str, ns_phase: str, step: str, backed_up: int = 0) -> dict[str, Any]:
    return {
        "phase": phase,
        "namespacesDone": 0,
        "namespacesTotal": 1,
        "namespaces": [{"name": "shop", "phase": ns_phase, "step": step, "counts": {"backedUp": backed_up}}],
    }


def test_plain_progress_prints_one_line_per_change_and_nothing_when_nothing_changed() -> None:
    first = progress("Running", "BackingUp", "backup pods", 3)
    assert watch.changed_lines("p", None, first) == [
        "p: Running, 0/1 namespaces done",
        "p/shop: BackingUp - backup pods (backed up 3, detached 0, rebuilt 0, skipped 0)",
    ]
    assert watch.changed_lines("p", first, first) == []
    later = progress("Running", "Detaching", "delete owners (orphan)", 12)
    assert watch.changed_lines("p", first, later) == [
        "p/shop: Detaching - delete owners (orphan) (backed up 12, detached 0, rebuilt 0, skipped 0)"
    ]


class FakeControlPlane:
    """Serves a policy that changes on each read, as the watcher would change it between polls."""

    def __init__(self, policies: Iterator[dict[str, Any]]) -> None:
        self.policies = policies
        self.discovery = self

    def by_group_resource(self, group_resource: str) -> str:
        return group_resource

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        return next(self.policies)


def fake(policies: Iterator[dict[str, Any]]) -> Kube:
    return cast(Kube, FakeControlPlane(policies))


def test_following_prints_each_change_once_and_a_timeout_says_how_to_pick_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch, "POLL_INTERVAL", 0.0)
    monkeypatch.setattr(watch, "clock", lambda: "12:00:00")
    states = [
        progress("Running", "BackingUp", "backup pods"),
        progress("Running", "BackingUp", "backup pods"),
        progress("Completed", "Completed", "done", 9),
    ]
    policies = iter({"metadata": {"name": "p"}, "status": state} for state in states)
    buffer = StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    final = watch.follow(
        fake(policies), "p", apply.promote_finished, console=console, timeout=None, what="promote"
    )
    assert final["status"]["phase"] == "Completed"
    # Each line says when the change was seen (HH:MM:SS), as a log reader needs.
    assert buffer.getvalue().splitlines() == [
        "12:00:00 p: Running, 0/1 namespaces done",
        "12:00:00 p/shop: BackingUp - backup pods (backed up 0, detached 0, rebuilt 0, skipped 0)",
        "12:00:00 p: Completed, 0/1 namespaces done",
        "12:00:00 p/shop: Completed - done (backed up 9, detached 0, rebuilt 0, skipped 0)",
    ]
    running = itertools.repeat({"metadata": {"name": "p"}, "status": progress("Running", "Rebuilding", "x")})
    with pytest.raises(ConsoleError) as stopped:
        watch.follow(
            fake(running), "p", apply.promote_finished, console=console, timeout=0.01, what="promote"
        )
    assert stopped.value.code == 1 and "still Running" in str(stopped.value)
    assert "the promote goes on in the cluster: follow it with kpromote status p --watch" in str(
        stopped.value
    )


def test_a_policy_without_status_or_with_a_pending_rollback_request_awaits_the_watcher() -> None:
    assert watch.unanswered({"metadata": {"name": "p"}})
    assert watch.unanswered(policy_in("Completed", request="true"))
    assert not watch.unanswered(policy_in("RollingBack"))


def test_the_end_of_a_wait_is_exit_0_only_on_success_and_lists_what_failed() -> None:
    failed = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "FailedPrecheck",
            "message": "precheck failed with 1 problem(s)",
            "precheckErrors": ['namespace "x" does not exist in the member cluster'],
            "precheckWarnings": ["the member runs Kubernetes v1.33.5, the control plane v1.34.1: …"],
        },
    }
    buffer = StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    assert watch.report(console, failed, success="Completed", done="", hint="") == 1
    assert 'precheck: namespace "x" does not exist' in buffer.getvalue()
    assert "warning: the member runs Kubernetes v1.33.5" in buffer.getvalue()
    shown = rendered(status.render, status.document({**POLICY, "status": failed["status"]}))
    assert "warning: the member runs Kubernetes v1.33.5" in shown
    done = {"metadata": {"name": "p"}, "status": {"phase": "Completed"}}
    assert watch.report(console, done, success="Completed", done="1 namespace(s) promoted.", hint="") == 0


# ------------------------------------------------------------------------------------------ status
def test_status_says_when_promoted_pods_are_managed_in_the_member_again() -> None:
    taken_back = {
        "type": "ControlledInMember",
        "status": "True",
        "reason": "OwnerReturnedInMember",
        "message": "1 promoted pod(s) have a controller in the member again: shop/web-1 by ReplicaSet web",
        "lastTransitionTime": "2026-12-07T15:00:00Z",
    }
    policy = {**POLICY, "status": {"phase": "Completed", "conditions": [taken_back]}}
    assert "member: 1 promoted pod(s) have a controller" in rendered(status.render, status.document(policy))
    mended = {**taken_back, "status": "False", "message": "no promoted pod has a controller in the member"}
    policy = {**POLICY, "status": {"phase": "Completed", "conditions": [mended]}}
    assert "member:" not in rendered(status.render, status.document(policy))


def test_status_document_and_table_carry_namespaces_and_skipped_items_with_reasons() -> None:
    policy = {
        **POLICY,
        "status": {
            "phase": "Completed",
            "namespacesDone": 1,
            "namespacesTotal": 1,
            "namespaces": [
                {
                    "name": "shop",
                    "phase": "Completed",
                    "step": "verify adoption",
                    "counts": {"backedUp": 30, "detached": 12, "rebuilt": 25, "skipped": 1},
                    "backupLocation": "/backups/promote-shop/shop/run-1/backup.tar.gz",
                    "skipped": [{"resource": "daemonsets.apps", "name": "agent", "reason": "stays"}],
                }
            ],
        },
    }
    document = status.document(policy)
    assert document["name"] == "promote-shop" and document["clusterName"] == "member1"
    assert document["namespaces"][0]["counts"]["rebuilt"] == 25
    text = rendered(status.render, document)
    for expected in ("Completed", "1/1 namespaces done", "run-1/backup.tar.gz", "daemonsets.apps", "stays"):
        assert expected in text, expected


def test_status_says_how_many_objects_left_behind_the_shortened_status_does_not_list() -> None:
    listed = [{"resource": "configmaps", "name": f"cm-{i}", "reason": "stays"} for i in range(20)]
    policy = {
        **POLICY,
        "status": {
            "phase": "Completed",
            "namespaces": [
                {"name": "logs", "phase": "Completed", "counts": {"skipped": 1200}, "skipped": listed},
                {"name": "shop", "phase": "Completed", "counts": {"skipped": 1}, "skipped": listed[:1]},
            ],
        },
    }

    text = rendered(status.render, status.document(policy))

    assert "… and 1180 more left behind in logs, not listed" in text
    assert "more left behind in shop" not in text


# ----------------------------------------------------------------------------------------- backups
@pytest.fixture
def backups(tmp_path: Path) -> Iterator[Path]:
    base = tmp_path / "backups"
    sealed = BackupDir(backup_root(base, "promote-shop", "shop", "run-1"))
    sealed.write_part("namespaces", [build.served("v1", "Namespace", "shop", None)])
    sealed.write_part("configmaps", [build.configmap("a"), build.configmap("b")])
    sealed.write_part("persistentvolumes", [build.pv()])
    sealed.seal({"policy": "promote-shop", "namespace": "shop", "run": "run-1", "cluster": "member1"})
    BackupDir(backup_root(base, "promote-shop", "cart", "run-1")).write_part("pods", [build.pod()])
    yield base


def test_backups_list_shows_each_run_with_date_phase_items_and_size(runner: CliRunner, backups: Path) -> None:
    result = runner.invoke(app, ["backups", "list", "--dir", str(backups)])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "policy" in line)
    assert [word for word in re.split(r"[\s┃│]+", header) if word] == [
        "date", "policy", "namespace", "run", "phase", "items", "size"
    ]  # fmt: skip
    rows = {line.split("│")[3].strip(): line for line in result.stdout.splitlines() if "promote-shop" in line}
    assert set(rows) == {"cart", "shop"}
    assert "Incomplete (parts only)" in rows["cart"]
    assert "Completed" in rows["shop"] and " 4 " in rows["shop"]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows["shop"]), rows["shop"]
    listing = json.loads(runner.invoke(app, ["backups", "list", "--dir", str(backups), "-o", "json"]).stdout)
    assert sorted((r["namespace"], r["items"], r["sealed"], r["phase"]) for r in listing) == [
        ("cart", 1, False, "Incomplete"),
        ("shop", 4, True, "Completed"),
    ]
    assert all(r["date"].endswith("Z") for r in listing)
    result = runner.invoke(app, ["backups", "list"], env={"KPROMOTE_BACKUP_DIR": str(backups / "nope")})
    assert_one_line_error(result, 2, "no backup directory at", "KPROMOTE_BACKUP_DIR")


def test_backups_verify_is_exit_0_for_a_good_archive_and_1_for_a_damaged_one(
    runner: CliRunner, backups: Path
) -> None:
    run = backups / "promote-shop" / "shop" / "run-1"
    result = runner.invoke(app, ["backups", "verify", str(run)])
    assert result.exit_code == 0, result.output
    assert "OK, 4 item(s)" in result.stdout
    archive = run / "backup.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    result = runner.invoke(app, ["backups", "verify", str(archive)])
    assert result.exit_code == 1 and "do not roll back from this archive" in result.stdout
    missing = backups / "promote-shop" / "cart" / "run-1"
    assert_one_line_error(runner.invoke(app, ["backups", "verify", str(missing)]), 2, "no backup archive")


def test_backups_show_streams_the_items_then_counts_by_kind(runner: CliRunner, backups: Path) -> None:
    run = backups / "promote-shop" / "shop" / "run-1"
    result = runner.invoke(app, ["backups", "show", str(run)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "configmaps\tapp/a" in lines and "persistentvolumes\tpv-0" in lines and "namespaces\tshop" in lines
    assert "4 item(s) by kind" in result.stdout
    archive = run / "backup.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert_one_line_error(runner.invoke(app, ["backups", "show", str(archive)]), 1, "is damaged", "verify")


def test_sizes_read_as_people_read_them() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 5 * 1024**2 + 1)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
    ]
