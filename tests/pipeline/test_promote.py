"""End to end: a PromotePolicy applied to the control plane, real watcher and worker processes, real Redis,
simulated clusters over HTTP. What a platform team would check by hand, checked by machine."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from kubesim.seed import seed_namespace
from shared.backup import verify_archive
from tests.pipeline.conftest import Installation

NODE = "kosmos-member1"


def _names(items: list) -> set[str]:
    return {i.metadata.name for i in items}


def _made_by(pods: list[client.V1Pod], kind: str, name: str) -> set[str]:
    """The names of the pods whose controller is the `kind` called `name`."""
    return {
        pod.metadata.name
        for pod in pods
        for owner in pod.metadata.owner_references or []
        if owner.controller and owner.kind == kind and owner.name == name
    }


def test_a_full_namespace_is_promoted_without_restarting_a_pod(installation: Installation) -> None:
    seeded = seed_namespace(installation.member_api, "shop-full")
    member_core = client.CoreV1Api(installation.member_api)
    member_apps = client.AppsV1Api(installation.member_api)
    member_pods = member_core.list_namespaced_pod("shop-full").items
    assert _names(member_pods) == set(seeded.pods)
    job_pods = _made_by(member_pods, "Job", "migrate-once")
    agent_pods = _made_by(member_pods, "DaemonSet", "node-agent")
    assert len(job_pods) == 1 and len(agent_pods) == 2, (job_pods, agent_pods)  # one per member Node
    member_ips = {
        s.metadata.name: s.spec.cluster_ip for s in member_core.list_namespaced_service("shop-full").items
    }
    # Both clusters allocate from one range (as in the measured setup): hold the member's IP in the control
    # plane, so that a tool copying cluster IPs would be refused with 422 "provided IP is already allocated".
    try:
        client.CoreV1Api(installation.cp_api).create_namespaced_service(
            "default",
            {
                "metadata": {"name": "holds-shop-full-web-ip"},
                "spec": {"clusterIP": member_ips["web"], "ports": [{"port": 80}]},
            },
        )
    except client.ApiException as error:  # an earlier test's Service holds it already: held either way
        assert error.status == 422 and "already allocated" in error.body, error.body

    installation.apply("promote-full", includedNamespaces=["shop-full"])
    status = installation.wait_done("promote-full")

    assert status["phase"] == "Completed", status
    [namespace] = status["namespaces"]
    assert namespace["phase"] == "Completed" and namespace["counts"]["rebuilt"] > 20, namespace
    skipped = {(s["resource"], s["name"]) for s in namespace["skipped"]}
    assert ("daemonsets.apps", "node-agent") in skipped and ("jobs.batch", "migrate-once") in skipped
    assert {("pods", name) for name in job_pods | agent_pods} <= skipped

    # Member: every pod kept, owners gone, DaemonSet and finished Job stay. The running pods are the
    # control plane's twins now, except the DaemonSet's, which stay unmarked with their DaemonSet.
    after = {p.metadata.name: p for p in member_core.list_namespaced_pod("shop-full").items}
    assert {name: pod.metadata.uid for name, pod in after.items()} == seeded.pods
    assert all(pod.metadata.deletion_timestamp is None for pod in after.values())
    running = {name for name, pod in after.items() if pod.status.phase == "Running"}
    assert running - agent_pods and agent_pods <= running
    marked = {name for name, pod in after.items() if pod.metadata.labels.get("kosmos-io/pod") == "true"}
    assert marked == running - agent_pods
    assert member_apps.list_namespaced_deployment("shop-full").items == []
    assert member_apps.list_namespaced_replica_set("shop-full").items == []
    assert member_apps.list_namespaced_stateful_set("shop-full").items == []
    assert _names(member_apps.list_namespaced_daemon_set("shop-full").items) == {"node-agent"}
    assert installation.link.member_deletions == []

    # Control plane: everything adopted, nothing created by a controller.
    cp_core = client.CoreV1Api(installation.cp_api)
    cp_apps = client.AppsV1Api(installation.cp_api)
    pods = cp_core.list_namespaced_pod("shop-full").items
    assert _names(pods) == set(seeded.pods) - job_pods - agent_pods
    assert all(p.spec.node_name == NODE and p.metadata.labels["kosmos-io/pod"] == "true" for p in pods)
    owners = {p.metadata.name: p.metadata.owner_references[0].kind for p in pods}
    assert set(owners.values()) == {"ReplicaSet", "StatefulSet"}
    replica_sets = cp_apps.list_namespaced_replica_set("shop-full").items
    assert len(replica_sets) == 2 and all(
        rs.metadata.owner_references[0].name == "web" for rs in replica_sets
    )
    deployment = cp_apps.read_namespaced_deployment("web", "shop-full")
    assert deployment.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    reasons = {e.reason for e in cp_core.list_namespaced_event("shop-full").items}
    assert not reasons & {"SuccessfulCreate", "ScalingReplicaSet"}, reasons
    services = {
        s.metadata.name: s.spec.cluster_ip for s in cp_core.list_namespaced_service("shop-full").items
    }
    assert services["web-headless"] == "None" and services["db"] == "None"
    assert services["web"] not in (None, "None", member_ips["web"])
    claim = cp_core.read_namespaced_persistent_volume_claim("data", "shop-full")
    assert claim.status.phase == "Bound"
    volume = cp_core.read_persistent_volume(claim.spec.volume_name)
    assert volume.spec.claim_ref.uid == claim.metadata.uid
    assert (
        cp_core.read_namespaced_config_map("web-config", "shop-full").metadata.annotations[
            "kosmos-io/cluster-owners"
        ]
        == "member1"
    )
    rbac = client.RbacAuthorizationV1Api(installation.cp_api)
    assert rbac.read_cluster_role_binding("shop-full-web-pod-reader").subjects[0].name == "web"
    custom = client.CustomObjectsApi(installation.cp_api)
    assert custom.get_namespaced_custom_object("example.com", "v1", "shop-full", "widgets", "w1")["spec"] == {
        "size": 3
    }

    # The member's volumes can no longer be reclaimed by anything the promote did.
    member_volume = member_core.read_persistent_volume("pv-shop-full-data")
    assert member_volume.spec.persistent_volume_reclaim_policy == "Retain"

    # The durable backup verifies.
    report = verify_archive(Path(namespace["backupLocation"]))
    assert report.ok, report.problems
