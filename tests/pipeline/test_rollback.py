"""Rollback on request and compensation on failure: the member ends exactly as it was, checked by a diff."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from kubesim.seed import seed_namespace
from kubesim.testing import MERGE_PATCH, SimAdmin, wait_until
from tests.pipeline.conftest import Installation

VOLATILE = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")
OWNER_KINDS = {"Deployment", "ReplicaSet", "StatefulSet", "CronJob"}


def _snapshot(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """Everything a person would compare, normalised: re-created owners may only differ in identity."""
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    listings = {
        "pod": core.list_namespaced_pod(namespace),
        "service": core.list_namespaced_service(namespace),
        "configmap": core.list_namespaced_config_map(namespace),
        "secret": core.list_namespaced_secret(namespace),
        "serviceaccount": core.list_namespaced_service_account(namespace),
        "pvc": core.list_namespaced_persistent_volume_claim(namespace),
        "deployment": apps.list_namespaced_deployment(namespace),
        "replicaset": apps.list_namespaced_replica_set(namespace),
        "statefulset": apps.list_namespaced_stateful_set(namespace),
        "daemonset": apps.list_namespaced_daemon_set(namespace),
        "cronjob": batch.list_namespaced_cron_job(namespace),
        "job": batch.list_namespaced_job(namespace),
    }
    snapshot: dict[str, dict[str, Any]] = {}
    for kind, listing in listings.items():
        for item in api.sanitize_for_serialization(listing)["items"]:
            metadata = item["metadata"]
            owners = sorted((r["kind"], r["name"]) for r in metadata.get("ownerReferences") or [])
            entry = {
                "labels": metadata.get("labels") or {},
                "annotations": metadata.get("annotations") or {},
                "owners": owners,
                "spec": item.get("spec"),
            }
            if kind == "pod":
                entry["uid"] = metadata["uid"]
                entry["terminating"] = bool(metadata.get("deletionTimestamp"))
            snapshot[f"{kind}/{metadata['name']}"] = entry
    for volume in core.list_persistent_volume().items:
        if volume.spec.claim_ref and volume.spec.claim_ref.namespace == namespace:
            snapshot[f"pv/{volume.metadata.name}"] = {
                "reclaim": volume.spec.persistent_volume_reclaim_policy,
                "claim": volume.spec.claim_ref.name,
            }
    return snapshot


def _diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = [f"{key} missing after rollback" for key in before if key not in after]
    problems += [f"{key} appeared" for key in after if key not in before]
    problems += [
        f"{key} differs: {before[key]} != {after[key]}"
        for key in before
        if key in after and before[key] != after[key]
    ]
    return problems


def _request_rollback(installation: Installation, name: str) -> None:
    installation.policies.patch_cluster_custom_object(
        "kosmos.io",
        "v1alpha1",
        "promotepolicies",
        name,
        {"spec": {"rollback": "true"}},
        _content_type=MERGE_PATCH,
    )


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
    before = _snapshot(installation.member_api, "shop-rb")

    installation.apply("rb-full", includedNamespaces=["shop-rb"])
    assert installation.wait_done("rb-full")["phase"] == "Completed"
    _request_rollback(installation, "rb-full")
    status = installation.wait_done("rb-full", phases=("RolledBack", "FailedRollback"))

    assert status["phase"] == "RolledBack", status
    assert status["namespaces"][0]["phase"] == "RolledBack"
    policy = installation.policies.get_cluster_custom_object(
        "kosmos.io", "v1alpha1", "promotepolicies", "rb-full"
    )
    assert "rollback" not in policy["spec"], "the request is reset so that it is not replayed"
    assert _diff(before, _snapshot(installation.member_api, "shop-rb")) == []
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
    before = _snapshot(installation.member_api, "comp-bad")
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
    assert _diff(before, _snapshot(installation.member_api, "comp-bad")) == []
    member = client.CoreV1Api(installation.member_api)
    for namespace, seed in seeded.items():
        live = {p.metadata.name: p.metadata.uid for p in member.list_namespaced_pod(namespace).items}
        assert live == seed.pods, namespace
    cp_namespaces = {n.metadata.name for n in client.CoreV1Api(installation.cp_api).list_namespace().items}
    assert "comp-bad" not in cp_namespaces and "comp-good" in cp_namespaces
    assert installation.link.member_deletions == []
