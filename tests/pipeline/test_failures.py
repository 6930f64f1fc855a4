"""A failure at any step rolls back that namespace only: the member ends as it was, no pod is touched.

Every case is one namespace of a single policy, with a persistent fault injected into the simulated API
server for that namespace alone (persistent, so the API client's own retries cannot hide it); one more
namespace has no fault and must complete. One policy run serves every case, so the file costs one
promote, not fourteen.

The verify case fails through the control plane's LIST of pods in that namespace: verification is the
only step that lists pods there (the rebuild creates them one by one), so the rebuild completes and the
very next request, verify's, fails. Not covered: the `namespaces` rebuild tier, because a namespace is
created with a POST that names no namespace in its path, so no fault can target one namespace's create
without failing every sibling's.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from kubesim.seed import PRIORITY_CLASS, STORAGE_CLASS, WIDGET_CRD, seed_namespace
from kubesim.testing import SimAdmin, wait_until
from shared.markers import PROMOTED_BY
from tests.pipeline.conftest import Installation
from tests.pipeline.snapshots import diff, pod_uids, snapshot

POLICY = "fail-each-step"
HEALTHY = "fail-none"


@dataclass(frozen=True)
class Case:
    id: str
    step: str
    """The failing task, as the namespace's message names it: with the installation's rebuild batches of
    one object, a tier holding one object is created by `rebuild.tiers`, a larger one by `rebuild.batch`."""
    cluster: str
    """"member" or "control-plane": which simulated API server refuses."""
    verb: str
    resource: str
    full: bool = False
    """Seed every kind (needed for StatefulSets, PVCs and named ServiceAccounts), else a small app."""

    @property
    def namespace(self) -> str:
        return f"fail-{self.id}"

    @property
    def message(self) -> str:
        return f"injected: {self.verb} {self.resource} refused for {self.id}"


CASES = (
    Case("backup-configmaps", "backup.run", "member", "list", "configmaps"),
    Case("detach-deployments", "detach.run", "member", "delete", "deployments.apps"),
    Case("detach-statefulsets", "detach.run", "member", "delete", "statefulsets.apps", full=True),
    Case("detach-services", "detach.run", "member", "patch", "services"),
    Case("detach-pods", "detach.run", "member", "patch", "pods"),
    Case("rebuild-pvcs", "rebuild.batch", "control-plane", "create", "persistentvolumeclaims", full=True),
    Case("rebuild-serviceaccounts", "rebuild.batch", "control-plane", "create", "serviceaccounts", full=True),
    Case("rebuild-configmaps", "rebuild.batch", "control-plane", "create", "configmaps"),
    Case("rebuild-pods", "rebuild.batch", "control-plane", "create", "pods"),
    # The first ReplicaSet created is the informer-lag barrier's, after the pods tier (`rebuild.tier_done`).
    Case("rebuild-replicasets", "rebuild.tier_done", "control-plane", "create", "replicasets.apps"),
    Case("rebuild-statefulsets", "rebuild.batch", "control-plane", "create", "statefulsets.apps", full=True),
    Case("rebuild-services", "rebuild.tiers", "control-plane", "create", "services"),
    Case("verify", "rebuild.verify", "control-plane", "list", "pods"),
)


@dataclass
class Outcome:
    status: dict[str, Any]
    before: dict[str, dict[str, Any]]
    """Namespace -> member snapshot taken before the promote."""
    pods: dict[str, dict[str, str]]
    """Namespace -> pod name -> UID before the promote."""
    fired: dict[str, int]
    """Case id -> how many requests its fault refused."""
    rebuilt: set[str]
    """Pods of the healthy namespace in the control plane once the policy finished."""

    def namespace(self, name: str) -> dict[str, Any]:
        return next(ns for ns in self.status["namespaces"] if ns["name"] == name)


@pytest.fixture(scope="module")
def outcome(installation: Installation) -> Iterator[Outcome]:
    namespaces = {case.namespace: case.full for case in CASES} | {HEALTHY: True}
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(lambda ns: seed_namespace(installation.member_api, ns, full=namespaces[ns]), namespaces)
        )
    before = {ns: snapshot(installation.member_api, ns) for ns in namespaces}
    pods = {ns: pod_uids(installation.member_api, ns) for ns in namespaces}
    admins = {
        "member": SimAdmin(installation.member.url),
        "control-plane": SimAdmin(installation.control_plane.url),
    }
    faults = {}
    try:
        for case in CASES:
            faults[case.id] = admins[case.cluster].add_fault(
                verb=case.verb,
                resource=case.resource,
                namespace=case.namespace,
                status=500,
                message=case.message,
            )
        installation.apply(POLICY, includedNamespaces=sorted(namespaces))
        status = installation.wait_done(POLICY, timeout=150)
        live = {(cluster, f["id"]): f["fired"] for cluster, admin in admins.items() for f in admin.faults()}
    finally:
        for admin in admins.values():
            admin.clear_faults()
    fired = {case.id: live[(case.cluster, faults[case.id]["id"])] for case in CASES}
    rebuilt = {
        p.metadata.name for p in client.CoreV1Api(installation.cp_api).list_namespaced_pod(HEALTHY).items
    }
    yield Outcome(status, before, pods, fired, rebuilt)


def test_the_policy_is_partially_failed_and_the_namespace_without_a_fault_completes(
    installation: Installation, outcome: Outcome
) -> None:
    assert outcome.status["phase"] == "PartiallyFailed", outcome.status
    assert outcome.namespace(HEALTHY)["phase"] == "Completed", outcome.namespace(HEALTHY)
    assert pod_uids(installation.member_api, HEALTHY) == outcome.pods[HEALTHY]
    finished = {s["name"] for s in outcome.namespace(HEALTHY)["skipped"] if s["resource"] == "pods"}
    assert outcome.rebuilt == set(outcome.pods[HEALTHY]) - finished
    assert installation.link.member_deletions == []


def test_shared_cluster_objects_stay_while_a_sibling_uses_them_and_go_with_the_last_rollback(
    installation: Installation, outcome: Outcome
) -> None:
    """Every full namespace needs the same PriorityClass, StorageClass and CRD, created once by the promote.
    The compensations of the failed namespaces leave them to the one that completed (its custom resource
    lives on the CRD); rolling that one back too removes those the promote created."""
    scheduling = client.SchedulingV1Api(installation.cp_api)
    storage = client.StorageV1Api(installation.cp_api)
    extensions = client.ApiextensionsV1Api(installation.cp_api)
    crd = WIDGET_CRD["metadata"]["name"]
    assert outcome.namespace(HEALTHY)["phase"] == "Completed", outcome.namespace(HEALTHY)["message"]
    scheduling.read_priority_class(PRIORITY_CLASS)
    storage.read_storage_class(STORAGE_CLASS)
    extensions.read_custom_resource_definition(crd)
    widget = client.CustomObjectsApi(installation.cp_api).get_namespaced_custom_object(
        "example.com", "v1", HEALTHY, "widgets", "w1"
    )
    assert widget["spec"] == {"size": 3}

    installation.request_rollback(POLICY)
    status = installation.wait_done(POLICY, phases=("RolledBack", "FailedRollback"))

    assert status["phase"] == "RolledBack", status
    assert pod_uids(installation.member_api, HEALTHY) == outcome.pods[HEALTHY]
    left = [
        obj.metadata.name
        for listing in (
            scheduling.list_priority_class(),
            storage.list_storage_class(),
            extensions.list_custom_resource_definition(),
        )
        for obj in listing.items
        if (obj.metadata.annotations or {}).get(PROMOTED_BY) == POLICY
    ]
    assert left == [], "what the promote created for every namespace goes with the last one"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_failure_rolls_back_its_namespace_to_exactly_what_the_member_had(
    installation: Installation, outcome: Outcome, case: Case
) -> None:
    status = outcome.namespace(case.namespace)
    assert outcome.fired[case.id] > 0, f"the fault never fired: {case} {status}"
    assert status["phase"] == "RolledBack", status
    assert f"{case.step}: KubeError: " in status["message"], status["message"]
    assert case.message in status["message"], status["message"]
    assert diff(outcome.before[case.namespace], snapshot(installation.member_api, case.namespace)) == []
    assert pod_uids(installation.member_api, case.namespace) == outcome.pods[case.namespace]
    cp_core = client.CoreV1Api(installation.cp_api)
    wait_until(
        lambda: case.namespace not in {n.metadata.name for n in cp_core.list_namespace().items},
        what=f"the control-plane namespace {case.namespace} to be gone",
    )


def test_a_compensation_that_cannot_finish_is_reported_for_a_person_and_a_later_rollback_finishes(
    installation: Installation,
) -> None:
    """The rebuild fails (a control-plane Deployment create), and so does its compensation: the member
    refuses to re-create the ReplicaSet that detach deleted. After its retries the namespace says what a
    person must fix; once the cause is gone, `rollback: "true"` on the FailedRollback policy finishes."""
    namespaces = ("twice-bad", "twice-good")
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda ns: seed_namespace(installation.member_api, ns, full=False), namespaces))
    before = snapshot(installation.member_api, "twice-bad")
    pods = {ns: pod_uids(installation.member_api, ns) for ns in namespaces}
    control_plane = SimAdmin(installation.control_plane.url)
    member = SimAdmin(installation.member.url)
    try:
        control_plane.add_fault(
            verb="create",
            resource="deployments.apps",
            namespace="twice-bad",
            status=500,
            message="injected: the control plane refuses Deployments",
        )
        member.add_fault(
            verb="create",
            resource="replicasets.apps",
            namespace="twice-bad",
            status=500,
            message="injected: the member refuses ReplicaSets",
        )
        installation.apply("twice", includedNamespaces=list(namespaces))
        status = installation.wait_done("twice", timeout=90)
    finally:
        control_plane.clear_faults()
        member.clear_faults()

    phases = {ns["name"]: ns for ns in status["namespaces"]}
    assert status["phase"] == "FailedRollback", status
    assert phases["twice-good"]["phase"] == "Completed"
    assert phases["twice-bad"]["phase"] == "FailedRollback", phases["twice-bad"]
    message = phases["twice-bad"]["message"]
    assert "left to fix by hand: " in message and "the member refuses ReplicaSets" in message, message
    assert "replicasets.apps twice-bad/web-" in message, message
    assert {ns: pod_uids(installation.member_api, ns) for ns in namespaces} == pods

    installation.request_rollback("twice")
    status = installation.wait_done("twice", timeout=60, phases=("RolledBack",))  # it is FailedRollback now

    assert status["phase"] == "RolledBack", status
    assert {ns["name"]: ns["phase"] for ns in status["namespaces"]} == dict.fromkeys(namespaces, "RolledBack")
    assert diff(before, snapshot(installation.member_api, "twice-bad")) == []
    assert {ns: pod_uids(installation.member_api, ns) for ns in namespaces} == pods
    cp_core = client.CoreV1Api(installation.cp_api)
    wait_until(
        lambda: not set(namespaces) & {n.metadata.name for n in cp_core.list_namespace().items},
        what="the control-plane namespaces to be gone",
    )
    assert installation.link.member_deletions == []
