"""Rollback on request and compensation on failure: the member ends exactly as it was, checked by a diff."""

from __future__ import annotations

from kubernetes import client

from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin, wait_until
from tests.pipeline.conftest import Installation
from tests.pipeline.snapshots import diff, snapshot
from tests.pipeline.test_precheck import fail_precheck


def test_user_rollback_restores_the_member_exactly_and_spares_pre_existing_objects(
    installation: Installation,
) -> None:
    rbac = client.RbacAuthorizationV1Api(installation.cp_api)
    shared_role = {
        "metadata": {"name": "shop-rb-pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }
    rbac.create_cluster_role(shared_role)  # exists in the control plane before the promote, identical
    seeded = seed_namespace(installation.member_api, "shop-rb")
    before = snapshot(installation.member_api, "shop-rb")

    installation.apply("rb-full", includedNamespaces=["shop-rb"])
    assert installation.wait_done("rb-full")["phase"] == "Completed"
    installation.request_rollback("rb-full")
    status = installation.wait_done("rb-full", phases=("RolledBack", "FailedRollback"))

    assert status["phase"] == "RolledBack", status
    assert status["namespaces"][0]["phase"] == "RolledBack"
    policy = installation.policies.get_cluster_custom_object(
        "kosmos.io", "v1alpha1", "promotepolicies", "rb-full"
    )
    assert "rollback" not in policy["spec"], "the request is reset so that it is not replayed"
    assert diff(before, snapshot(installation.member_api, "shop-rb")) == []
    assert {k: v["uid"] for k, v in before.items() if k.startswith("pod/")} == {
        f"pod/{name}": uid for name, uid in seeded.pods.items()
    }
    assert installation.link.member_deletions == []
    cp_core = client.CoreV1Api(installation.cp_api)
    wait_until(
        lambda: "shop-rb" not in {n.metadata.name for n in cp_core.list_namespace().items},
        what="the control-plane namespace to be gone",
    )
    assert rbac.read_cluster_role("shop-rb-pod-reader").metadata.annotations is None, (
        "pre-existing: untouched"
    )
    bindings = {b.metadata.name for b in rbac.list_cluster_role_binding().items}
    assert "shop-rb-web-pod-reader" not in bindings, "created by the promote: removed"
    volumes = {v.metadata.name for v in cp_core.list_persistent_volume().items}
    assert not {v for v in volumes if v.startswith("pv-shop-rb-")}


def test_a_failed_rebuild_compensates_that_namespace_only(installation: Installation) -> None:
    seeded = {ns: seed_namespace(installation.member_api, ns, full=False) for ns in ("comp-bad", "comp-good")}
    before = snapshot(installation.member_api, "comp-bad")
    admin = SimAdmin(installation.control_plane.url)
    fault = admin.add_fault(
        verb="create",
        resource="deployments.apps",
        namespace="comp-bad",
        status=500,
        message="injected: etcd is unhappy",
    )
    try:
        installation.apply("comp", includedNamespaces=["comp-bad", "comp-good"])
        status = installation.wait_done("comp")
    finally:
        admin.clear_faults()
    assert fault["id"]
    phases = {ns["name"]: ns for ns in status["namespaces"]}
    assert status["phase"] == "PartiallyFailed", status
    assert phases["comp-good"]["phase"] == "Completed"
    assert phases["comp-bad"]["phase"] == "RolledBack", phases["comp-bad"]
    assert "etcd is unhappy" in phases["comp-bad"]["message"]
    assert diff(before, snapshot(installation.member_api, "comp-bad")) == []
    member = client.CoreV1Api(installation.member_api)
    for namespace, seed in seeded.items():
        live = {p.metadata.name: p.metadata.uid for p in member.list_namespaced_pod(namespace).items}
        assert live == seed.pods, namespace
    cp_namespaces = {n.metadata.name for n in client.CoreV1Api(installation.cp_api).list_namespace().items}
    assert "comp-bad" not in cp_namespaces and "comp-good" in cp_namespaces
    assert installation.link.member_deletions == []


def test_a_rollback_does_not_wait_out_the_namespace_controllers_grace_and_a_new_promote_waits_for_it(
    installation: Installation,
) -> None:
    """kube-controller-manager leaves a deleted namespace alone for 5 s before emptying it: a rollback
    that waited for its control-plane namespace to be gone took at least that long, holding a worker
    thread. It is RolledBack while the namespace is still terminating, and a promote of the namespace
    meanwhile is refused by its precheck, saying why, with nothing touched."""
    seed_namespace(installation.member_api, "shop-grace", full=False)
    before = snapshot(installation.member_api, "shop-grace")
    installation.apply("grace", includedNamespaces=["shop-grace"])
    assert installation.wait_done("grace")["phase"] == "Completed"
    cp_core = client.CoreV1Api(installation.cp_api)

    installation.control_plane.set_namespace_deletion_grace(15)
    try:
        installation.request_rollback("grace")
        status = installation.wait_done("grace", phases=("RolledBack", "FailedRollback"))
        assert status["phase"] == "RolledBack", status
        assert cp_core.read_namespace("shop-grace").status.phase == "Terminating"
        message = status["namespaces"][0]["message"]
        assert '"shop-grace" is being removed by its namespace controller' in message
        assert diff(before, snapshot(installation.member_api, "shop-grace")) == []
        assert installation.link.member_deletions == []

        errors = fail_precheck(installation, "grace-again", includedNamespaces=["shop-grace"])
        assert any('"shop-grace" is still being deleted in the control plane' in e for e in errors), errors
    finally:
        installation.control_plane.set_namespace_deletion_grace(0)
    wait_until(
        lambda: "shop-grace" not in {n.metadata.name for n in cp_core.list_namespace().items},
        timeout=30,
        what="the namespace controller to empty and remove the control-plane namespace",
    )
    assert installation.link.member_deletions == [], "its content was unmarked before it was deleted"
    assert diff(before, snapshot(installation.member_api, "shop-grace")) == []
