"""What `kubectl describe` and `kubectl wait` show of a policy: Events for each step a person cares about,
and standard conditions (Prechecked, Completed, RolledBack, Degraded) that `kubectl wait` can wait on."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from kubernetes import client

from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin
from tests.pipeline.conftest import Installation


def _conditions(installation: Installation, name: str) -> dict[str, str]:
    return {c["type"]: c["status"] for c in installation.status(name).get("conditions", [])}


def _reasons(installation: Installation, name: str) -> list[str]:
    core = client.CoreV1Api(installation.cp_api)
    events = core.list_event_for_all_namespaces().items
    return [
        e.reason
        for e in events
        if e.involved_object.kind == "PromotePolicy" and e.involved_object.name == name
    ]


def _kubectl_wait(installation: Installation, name: str, condition: str) -> subprocess.CompletedProcess[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    return subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            installation.env["KPROMOTE_KUBECONFIG"],
            "wait",
            f"--for=condition={condition}",
            f"promotepolicy/{name}",
            "--timeout=60s",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_promote_and_its_rollback_are_waited_for_and_described(installation: Installation) -> None:
    seed_namespace(installation.member_api, "cond-1", full=False)
    installation.apply("cond", includedNamespaces=["cond-1"])
    waited = _kubectl_wait(installation, "cond", "Completed")
    assert waited.returncode == 0, waited.stderr
    assert _conditions(installation, "cond") == {
        "Prechecked": "True",
        "Completed": "True",
        "RolledBack": "False",
        "Degraded": "False",
    }
    assert {"RunStarted", "NamespacePromoted"} <= set(_reasons(installation, "cond"))

    installation.request_rollback("cond")
    waited = _kubectl_wait(installation, "cond", "RolledBack")
    assert waited.returncode == 0, (waited.stderr, installation.status("cond"))
    conditions = _conditions(installation, "cond")
    assert (conditions["Completed"], conditions["RolledBack"], conditions["Degraded"]) == (
        "False",
        "True",
        "False",
    )
    assert {"RollbackRequested", "NamespaceRolledBack"} <= set(_reasons(installation, "cond"))


def test_a_compensated_namespace_degrades_the_policy_with_a_warning(installation: Installation) -> None:
    for namespace in ("deg-bad", "deg-good"):
        seed_namespace(installation.member_api, namespace, full=False)
    admin = SimAdmin(installation.control_plane.url)
    admin.add_fault(verb="create", resource="deployments.apps", namespace="deg-bad", status=500)
    try:
        installation.apply("deg", includedNamespaces=["deg-bad", "deg-good"])
        status = installation.wait_done("deg")
    finally:
        admin.clear_faults()
    assert status["phase"] == "PartiallyFailed", status
    assert _conditions(installation, "deg")["Degraded"] == "True"
    assert _conditions(installation, "deg")["Completed"] == "False"
    core = client.CoreV1Api(installation.cp_api)
    warnings = [
        e
        for e in core.list_event_for_all_namespaces().items
        if e.involved_object.name == "deg" and e.reason == "CompensationStarted"
    ]
    assert warnings and warnings[0].type == "Warning" and "deg-bad" in warnings[0].message
    assert {"NamespacePromoted", "NamespaceRolledBack"} <= set(_reasons(installation, "deg"))


def test_progress_has_totals_and_a_rollback_has_counters_of_its_own(installation: Installation) -> None:
    seeded = seed_namespace(installation.member_api, "totals-1", full=False)
    installation.apply("totals", includedNamespaces=["totals-1"])
    status = installation.wait_done("totals")
    [promoted] = status["namespaces"]
    counts, totals = promoted["counts"], promoted["totals"]
    assert counts["backedUp"] == totals["backedUp"] > 0
    assert counts["rebuilt"] == totals["rebuilt"] > 0, "every promoted object was rebuilt, no conflict"
    assert counts["detached"] == totals["detached"] > 0
    assert totals["skipped"] == counts["skipped"]
    assert promoted["durationSeconds"] >= 0 and status["durationSeconds"] >= 0
    assert "rollback" not in promoted

    installation.request_rollback("totals")
    status = installation.wait_done("totals", phases=("RolledBack", "FailedRollback"))
    [rolled] = status["namespaces"]
    assert rolled["counts"] == counts, "the promote's counts stay as the promote left them"
    rollback = rolled["rollback"]
    assert rollback["podsUnmarked"] == len(seeded.pods)
    assert rollback["ownersRecreated"] == 2  # the Deployment and its ReplicaSet
    assert rollback["objectsDeleted"] >= counts["rebuilt"] - 1  # all it rebuilt (its namespace included)
    assert rollback["startTime"] <= rollback["completionTime"]
