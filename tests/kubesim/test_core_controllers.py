"""Garbage collection, namespace lifecycle and PV binding, seen through the official client over HTTP.

These are the control-plane behaviours that decide whether a promote keeps pods and data
(docs/control-plane-traps.md: orphan deletion, stale ownerReferences, PV binding, PV reclaim, pod grace
period). Owner chains are built by hand from ConfigMaps: the garbage collector treats every kind alike, and no
workload controller interferes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import SimulatedCluster, SimulatorThread
from kubesim.testing import api_client, wait_until

NODE = "member-node-1"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
CLAIM_LOST = "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
MISBOUND = "Two claims are bound to the same volume, this one is bound incorrectly"


# ------------------------------------------------------------------------------------------ helpers
def _namespace(core: client.CoreV1Api, name: str) -> str:
    core.create_namespace({"metadata": {"name": name}})
    wait_until(lambda: _exists(core.read_namespaced_service_account, "default", name), what=f"SA in {name}")
    return name


def _exists(read: Callable[..., Any], *args: str) -> bool:
    try:
        read(*args)
    except ApiException as error:
        if error.status != 404:
            raise
        return False
    return True


def _gone(read: Callable[..., Any], *args: str) -> bool:
    return not _exists(read, *args)


def _ref(owner: Any, *, block: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": block,
    }


def _config_map(core: client.CoreV1Api, namespace: str, name: str, *owners: dict[str, Any]) -> Any:
    body = {"metadata": {"name": name, "ownerReferences": list(owners)}, "data": {"k": "v"}}
    created = core.create_namespaced_config_map(namespace, body)
    created.kind, created.api_version = "ConfigMap", "v1"
    return created


def _pod(
    core: client.CoreV1Api, namespace: str, name: str, *owners: dict[str, Any], bound: bool = False
) -> Any:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    if bound:
        spec["nodeName"] = NODE
    return core.create_namespaced_pod(
        namespace, {"metadata": {"name": name, "ownerReferences": list(owners)}, "spec": spec}
    )


def _dangling_ref(kind: str = "ReplicaSet", name: str = "web-5c5fb89585") -> dict[str, Any]:
    """A reference copied from another cluster: right kind and name, but that cluster's uid."""
    return {
        "apiVersion": "apps/v1" if kind == "ReplicaSet" else "v1",
        "kind": kind,
        "name": name,
        "uid": str(uuid.uuid4()),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _terminating(core: client.CoreV1Api, namespace: str, pod: str) -> bool:
    return core.read_namespaced_pod(pod, namespace).metadata.deletion_timestamp is not None


def _events(core: client.CoreV1Api, namespace: str, reason: str) -> list[Any]:
    return [e for e in core.list_namespaced_event(namespace).items if e.reason == reason]


def _delete_claim(core: client.CoreV1Api, namespace: str, name: str) -> None:
    """Delete a claim without parsing the answer: only the effect on its volume matters here."""
    core.delete_namespaced_persistent_volume_claim(name, namespace, _preload_content=False)


def _settle(simulator: SimulatorThread, cluster: SimulatedCluster) -> None:
    """Let every controller finish, so that "still X" assertions are not merely "not yet Y"."""
    simulator.settle(cluster, quiet_for=0.2)


# ------------------------------------------------------------------------------- garbage collection
def test_orphan_deletion_releases_dependents_which_keep_running(core: client.CoreV1Api) -> None:
    ns = _namespace(core, "gc-orphan")
    owner = _config_map(core, ns, "web-deployment")
    child = _config_map(core, ns, "web-replicaset", _ref(owner))
    pods = {name: _pod(core, ns, name, _ref(child), bound=True).metadata.uid for name in ("web-a", "web-b")}

    response = core.delete_namespaced_config_map(
        "web-replicaset", ns, propagation_policy="Orphan", _preload_content=False
    )
    returned = json.loads(response.data)  # the object as returned: the typed client would make it a Status
    assert returned["metadata"]["finalizers"] == ["orphan"]
    assert returned["metadata"]["deletionTimestamp"]
    wait_until(
        lambda: _gone(core.read_namespaced_config_map, "web-replicaset", ns),
        timeout=2,
        what="the orphaned owner to go",
    )

    for name, uid in pods.items():
        pod = core.read_namespaced_pod(name, ns)
        assert pod.metadata.uid == uid
        assert pod.metadata.deletion_timestamp is None
        assert pod.metadata.owner_references is None
    assert core.read_namespaced_config_map("web-deployment", ns).metadata.deletion_timestamp is None


def test_background_deletion_cascades_and_leaves_bound_pods_terminating(core: client.CoreV1Api) -> None:
    ns = _namespace(core, "gc-background")
    owner = _config_map(core, ns, "owner")
    middle = _config_map(core, ns, "middle", _ref(owner))
    grandchild = _config_map(core, ns, "grandchild", _ref(middle))
    bound = _pod(core, ns, "bound", _ref(owner), bound=True)
    _pod(core, ns, "unbound", _ref(owner))

    core.delete_namespaced_config_map("owner", ns)

    wait_until(lambda: _gone(core.read_namespaced_pod, "unbound", ns), what="the unbound pod to go")
    wait_until(
        lambda: _gone(core.read_namespaced_config_map, grandchild.metadata.name, ns),
        what="the cascade to reach the grandchild",
    )
    assert _gone(core.read_namespaced_config_map, "middle", ns)
    terminating = core.read_namespaced_pod("bound", ns)
    assert terminating.metadata.uid == bound.metadata.uid
    assert terminating.metadata.deletion_timestamp is not None
    assert terminating.metadata.deletion_grace_period_seconds == 30


def test_foreground_deletion_waits_for_blocking_dependents(
    core: client.CoreV1Api, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    ns = _namespace(core, "gc-foreground")
    owner = _config_map(core, ns, "owner")
    _pod(core, ns, "unbound", _ref(owner))
    _pod(core, ns, "bound", _ref(owner), bound=True)
    _config_map(core, ns, "not-blocking", _ref(owner, block=False))

    core.delete_namespaced_config_map("owner", ns, propagation_policy="Foreground")

    wait_until(lambda: _gone(core.read_namespaced_pod, "unbound", ns), what="the unbound dependent to go")
    wait_until(lambda: _terminating(core, ns, "bound"), what="the bound dependent to terminate")
    _settle(simulator, cluster)
    waiting = core.read_namespaced_config_map("owner", ns)
    assert waiting.metadata.finalizers == ["foregroundDeletion"]
    assert waiting.metadata.deletion_timestamp is not None

    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    wait_until(lambda: _gone(core.read_namespaced_config_map, "owner", ns), what="the owner to go")
    wait_until(
        lambda: _gone(core.read_namespaced_config_map, "not-blocking", ns),
        what="the non-blocking dependent to be collected after its owner",
    )


def test_foreground_deletion_runs_down_a_chain_of_owners(
    core: client.CoreV1Api, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    """A dependent with dependents of its own is deleted in the foreground too (Deployment, RS, pod)."""
    ns = _namespace(core, "gc-foreground-chain")
    owner = _config_map(core, ns, "deployment")
    middle = _config_map(core, ns, "replicaset", _ref(owner))
    _pod(core, ns, "pod", _ref(middle), bound=True)

    core.delete_namespaced_config_map("deployment", ns, propagation_policy="Foreground")

    wait_until(lambda: _terminating(core, ns, "pod"), what="the pod at the end of the chain to terminate")
    _settle(simulator, cluster)
    for name in ("deployment", "replicaset"):
        waiting = core.read_namespaced_config_map(name, ns)
        assert waiting.metadata.finalizers == ["foregroundDeletion"], name
        assert waiting.metadata.deletion_timestamp is not None, name

    core.delete_namespaced_pod("pod", ns, grace_period_seconds=0)
    wait_until(lambda: _gone(core.read_namespaced_config_map, "deployment", ns), what="the chain to go")
    assert _gone(core.read_namespaced_config_map, "replicaset", ns)


def test_objects_created_with_a_foreign_owner_uid_are_collected_at_once(core: client.CoreV1Api) -> None:
    """docs/control-plane-traps.md#stale-ownerreferences:
    pods restored with their member ownerReferences are deleted by the control plane."""
    ns = _namespace(core, "gc-dangling")
    same_name = _config_map(core, ns, "web")
    _pod(core, ns, "restored-bound", _dangling_ref(), bound=True)
    _pod(core, ns, "restored-unbound", _dangling_ref())
    _config_map(core, ns, "same-name-other-uid", _dangling_ref("ConfigMap", "web"))
    _config_map(core, ns, "right-uid-wrong-name", {**_ref(same_name), "name": "not-web"})

    wait_until(lambda: _terminating(core, ns, "restored-bound"), timeout=2, what="the bound pod to terminate")
    for name in ("same-name-other-uid", "right-uid-wrong-name"):
        wait_until(lambda name=name: _gone(core.read_namespaced_config_map, name, ns), what=f"{name} to go")
    wait_until(lambda: _gone(core.read_namespaced_pod, "restored-unbound", ns), what="the unbound pod to go")
    assert core.read_namespaced_config_map("web", ns).metadata.deletion_timestamp is None


def test_a_live_owner_keeps_its_dependent_and_only_dangling_refs_are_dropped(
    core: client.CoreV1Api, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    ns = _namespace(core, "gc-mixed")
    live = _config_map(core, ns, "live")
    pod = _pod(core, ns, "shared", _dangling_ref(), {**_ref(live), "controller": False})

    wait_until(
        lambda: len(core.read_namespaced_pod("shared", ns).metadata.owner_references) == 1,
        what="the dangling reference to be dropped",
    )
    _settle(simulator, cluster)
    kept = core.read_namespaced_pod("shared", ns)
    assert kept.metadata.uid == pod.metadata.uid
    assert kept.metadata.deletion_timestamp is None
    assert [r.uid for r in kept.metadata.owner_references] == [live.metadata.uid]


def test_owners_must_share_the_namespace_or_be_cluster_scoped(
    core: client.CoreV1Api, api: client.ApiClient, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    ns, other = _namespace(core, "gc-scope"), _namespace(core, "gc-scope-other")
    elsewhere = _config_map(core, other, "owner")
    role = client.RbacAuthorizationV1Api(api).create_cluster_role({"metadata": {"name": "gc-scope-owner"}})
    role_ref = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "name": "gc-scope-owner",
        "uid": role.metadata.uid,
    }
    _config_map(core, ns, "owned-across-namespaces", _ref(elsewhere))
    _config_map(core, ns, "owned-by-cluster-role", role_ref)

    wait_until(
        lambda: _gone(core.read_namespaced_config_map, "owned-across-namespaces", ns),
        what="the dependent of an owner in another namespace to be collected",
    )
    _settle(simulator, cluster)
    assert _exists(core.read_namespaced_config_map, "owned-by-cluster-role", ns)

    client.RbacAuthorizationV1Api(api).delete_cluster_role("gc-scope-owner")
    wait_until(
        lambda: _gone(core.read_namespaced_config_map, "owned-by-cluster-role", ns),
        what="the dependent of the deleted ClusterRole to be collected",
    )


# --------------------------------------------------------------------------------------- namespaces
def test_namespace_deletion_is_blocked_by_a_bound_pod_until_grace_zero(
    core: client.CoreV1Api, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    """docs/control-plane-traps.md#pod-grace-period:
    the rollback must delete bound pods with gracePeriodSeconds=0."""
    ns = _namespace(core, "ns-delete")
    _config_map(core, ns, "cfg")
    core.create_namespaced_secret(ns, {"metadata": {"name": "sec"}, "stringData": {"k": "v"}})
    _pod(core, ns, "unbound")
    _pod(core, ns, "bound", bound=True)

    core.delete_namespace(ns)
    wait_until(lambda: _gone(core.read_namespaced_pod, "unbound", ns), what="the unbound pod to go")
    _settle(simulator, cluster)
    namespace = core.read_namespace(ns)
    assert namespace.status.phase == "Terminating"
    conditions = {c.type: c for c in namespace.status.conditions}
    assert conditions["NamespaceContentRemaining"].status == "True"
    remaining = conditions["NamespaceContentRemaining"].message
    assert remaining == "Some resources are remaining: pods. has 1 resource instances"
    assert conditions["NamespaceDeletionContentFailure"].status == "False"
    assert [p.metadata.name for p in core.list_namespaced_pod(ns).items] == ["bound"]
    assert core.list_namespaced_config_map(ns).items == []
    assert core.list_namespaced_secret(ns).items == []
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "late"}})
    assert refused.value.status == 403
    assert "because it is being terminated" in json.loads(refused.value.body)["message"]
    with pytest.raises(ApiException) as again:  # as kube-apiserver answers `kubectl delete` of it
        core.delete_namespace(ns)
    assert again.value.status == 409
    assert "The system is ensuring all content is removed" in json.loads(again.value.body)["message"]

    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    wait_until(lambda: _gone(core.read_namespace, ns), what="the namespace to be finalized")


def test_a_terminating_namespace_is_left_alone_for_the_deletion_grace_then_emptied(
    simulator: SimulatorThread,
) -> None:
    """kube-controller-manager's namespaceDeletionGracePeriod: nothing in a deleted namespace is touched
    until it has passed, so a client waiting for the namespace to go waits at least that long."""
    graced = simulator.start_cluster(SimulatedCluster("graced", namespace_deletion_grace_s=3.0))
    try:
        with api_client(graced.url) as api:
            core = client.CoreV1Api(api)
            ns = _namespace(core, "ns-graced")
            _config_map(core, ns, "cfg")
            deleted = time.monotonic()
            core.delete_namespace(ns)
            time.sleep(0.5)
            assert core.read_namespace(ns).status.phase == "Terminating"
            assert "cfg" in {c.metadata.name for c in core.list_namespaced_config_map(ns).items}
            wait_until(lambda: _gone(core.read_namespace, ns), what="the namespace to be finalized")
            assert time.monotonic() - deleted >= 3.0
    finally:
        simulator.run(graced.stop())
        simulator.clusters.remove(graced)


def test_default_service_account_and_root_ca_appear_and_come_back(core: client.CoreV1Api) -> None:
    ns = _namespace(core, "ns-defaults")
    wait_until(lambda: _exists(core.read_namespaced_config_map, "kube-root-ca.crt", ns), what="root CA")
    ca = core.read_namespaced_config_map("kube-root-ca.crt", ns)
    assert ca.data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----\n")
    assert "kubernetes.io/description" in ca.metadata.annotations
    account = core.read_namespaced_service_account("default", ns)

    core.delete_namespaced_service_account("default", ns)
    core.delete_namespaced_config_map("kube-root-ca.crt", ns)
    wait_until(lambda: _exists(core.read_namespaced_service_account, "default", ns), what="the SA back")
    wait_until(lambda: _exists(core.read_namespaced_config_map, "kube-root-ca.crt", ns), what="the CA back")
    assert core.read_namespaced_service_account("default", ns).metadata.uid != account.metadata.uid

    core.patch_namespaced_config_map("kube-root-ca.crt", ns, {"data": {"ca.crt": "tampered"}})
    wait_until(
        lambda: core.read_namespaced_config_map("kube-root-ca.crt", ns).data == ca.data,
        what="the publisher to restore the CA bundle",
    )


def test_pod_needs_its_service_account(core: client.CoreV1Api) -> None:
    ns = _namespace(core, "ns-sa")
    body = {
        "metadata": {"name": "p"},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "nginx:1.25"}]},
    }
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(ns, body)
    assert refused.value.status == 403
    assert 'serviceaccount "app" not found' in json.loads(refused.value.body)["message"]

    core.create_namespaced_service_account(ns, {"metadata": {"name": "app"}})
    assert core.create_namespaced_pod(ns, body).spec.service_account_name == "app"


# ---------------------------------------------------------------------------------------- PV / PVC
def _pv(
    name: str,
    *,
    claim: tuple[str, str, str | None] | None = None,
    policy: str = "Retain",
    size: str = "1Gi",
    storage_class: str = "manual",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": policy,
        "storageClassName": storage_class,
        "hostPath": {"path": f"/nonexistent/{name}"},
    }
    if claim is not None:
        namespace, claim_name, uid = claim
        spec["claimRef"] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": namespace,
            "name": claim_name,
            **({"uid": uid} if uid else {}),
        }
    return {"metadata": {"name": name}, "spec": spec}


def _pvc(name: str, *, volume: str | None = None, restored_annotations: bool = False) -> dict[str, Any]:
    annotations = {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"} if restored_annotations else {}
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "manual",
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if volume:
        spec["volumeName"] = volume
    return {"metadata": {"name": name, "annotations": annotations}, "spec": spec}


def _claim_phase(core: client.CoreV1Api, ns: str, name: str) -> str:
    return core.read_namespaced_persistent_volume_claim(name, ns).status.phase


def _volume_phase(core: client.CoreV1Api, name: str) -> str:
    return core.read_persistent_volume(name).status.phase


def _assert_bound(core: client.CoreV1Api, ns: str, claim: str, volume: str) -> None:
    pvc = core.read_namespaced_persistent_volume_claim(claim, ns)
    pv = core.read_persistent_volume(volume)
    assert pvc.status.phase == "Bound"
    assert pvc.spec.volume_name == volume
    assert pvc.status.capacity == {"storage": "1Gi"}
    assert pvc.status.access_modes == ["ReadWriteOnce"]
    assert pv.status.phase == "Bound"
    assert pv.spec.claim_ref.uid == pvc.metadata.uid
    assert pvc.metadata.annotations[BIND_COMPLETED] == "yes"


def test_restored_bound_claim_before_its_volume_is_lost_then_bound(core: client.CoreV1Api) -> None:
    """docs/control-plane-traps.md#pv-binding:
    row 1 (Kosmos order): Lost with ClaimLost, then Bound; the Warning stays."""
    ns = _namespace(core, "pv-row1")
    pvc = core.create_namespaced_persistent_volume_claim(
        ns, _pvc("data", volume="pv-row1", restored_annotations=True)
    )
    wait_until(lambda: _claim_phase(core, ns, "data") == "Lost", what="the claim to be Lost")
    lost = _events(core, ns, "ClaimLost")
    assert [(e.type, e.message) for e in lost] == [("Warning", CLAIM_LOST)]

    core.create_persistent_volume(_pv("pv-row1", claim=(ns, "data", pvc.metadata.uid)))
    wait_until(lambda: _claim_phase(core, ns, "data") == "Bound", what="the claim to be Bound again")
    _assert_bound(core, ns, "data", "pv-row1")
    assert len(_events(core, ns, "ClaimLost")) == 1


def test_restored_bound_claim_with_a_uidless_volume_is_misbound_for_good(
    core: client.CoreV1Api, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    """docs/control-plane-traps.md#pv-binding:
    row 2: the PV was never bound to this claim's uid, so the claim is Lost for good."""
    ns = _namespace(core, "pv-row2")
    core.create_persistent_volume(_pv("pv-row2", claim=(ns, "data", None)))
    wait_until(lambda: _volume_phase(core, "pv-row2") == "Available", what="the PV to be Available")
    core.create_namespaced_persistent_volume_claim(
        ns, _pvc("data", volume="pv-row2", restored_annotations=True)
    )

    wait_until(lambda: _claim_phase(core, ns, "data") == "Lost", what="the claim to be Lost")
    _settle(simulator, cluster)
    assert _claim_phase(core, ns, "data") == "Lost"
    assert _volume_phase(core, "pv-row2") == "Available"
    assert core.read_persistent_volume("pv-row2").spec.claim_ref.uid is None
    assert [(e.type, e.message) for e in _events(core, ns, "ClaimMisbound")] == [("Warning", MISBOUND)]


def test_volume_first_then_clean_claim_binds_without_warning(core: client.CoreV1Api) -> None:
    """docs/control-plane-traps.md#pv-binding:
    row 3 (works best): the controller fills in the claimRef uid."""
    ns = _namespace(core, "pv-row3")
    core.create_persistent_volume(_pv("pv-row3", claim=(ns, "data", None)))
    core.create_namespaced_persistent_volume_claim(ns, _pvc("data", volume="pv-row3"))

    wait_until(lambda: _claim_phase(core, ns, "data") == "Bound", what="the claim to bind")
    _assert_bound(core, ns, "data", "pv-row3")
    assert BOUND_BY_CONTROLLER not in (core.read_persistent_volume("pv-row3").metadata.annotations or {})
    assert [e for e in core.list_namespaced_event(ns).items if e.type == "Warning"] == []


def test_clean_claim_then_volume_with_its_uid_binds_without_warning(
    core: client.CoreV1Api, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    """docs/control-plane-traps.md#pv-binding:
    row 4: Pending until the PV appears, then Bound."""
    ns = _namespace(core, "pv-row4")
    pvc = core.create_namespaced_persistent_volume_claim(ns, _pvc("data", volume="pv-row4"))
    _settle(simulator, cluster)
    assert _claim_phase(core, ns, "data") == "Pending"

    core.create_persistent_volume(_pv("pv-row4", claim=(ns, "data", pvc.metadata.uid)))
    wait_until(lambda: _claim_phase(core, ns, "data") == "Bound", what="the claim to bind")
    _assert_bound(core, ns, "data", "pv-row4")
    assert [e for e in core.list_namespaced_event(ns).items if e.type == "Warning"] == []


def test_claim_without_volume_name_takes_the_smallest_fitting_volume(core: client.CoreV1Api) -> None:
    ns = _namespace(core, "pv-match")
    core.create_persistent_volume(_pv("pv-match-big", size="5Gi"))
    core.create_persistent_volume(_pv("pv-match-small", size="1Gi"))
    core.create_persistent_volume(_pv("pv-match-tiny", size="500Mi"))
    core.create_persistent_volume(_pv("pv-match-other-class", size="1Gi", storage_class="fast"))
    wait_until(lambda: _volume_phase(core, "pv-match-big") == "Available", what="the PVs to be Available")

    core.create_namespaced_persistent_volume_claim(ns, _pvc("data"))
    wait_until(lambda: _claim_phase(core, ns, "data") == "Bound", what="the claim to bind")
    _assert_bound(core, ns, "data", "pv-match-small")
    claim = core.read_namespaced_persistent_volume_claim("data", ns)
    assert claim.metadata.annotations[BOUND_BY_CONTROLLER] == "yes"
    assert core.read_persistent_volume("pv-match-small").metadata.annotations[BOUND_BY_CONTROLLER] == "yes"
    others = ("pv-match-big", "pv-match-tiny", "pv-match-other-class")
    assert {_volume_phase(core, name) for name in others} == {"Available"}


def test_claim_prefers_the_volume_pre_bound_to_it(core: client.CoreV1Api) -> None:
    ns = _namespace(core, "pv-prebound")
    core.create_persistent_volume(_pv("pv-prebound-free", size="1Gi"))
    core.create_persistent_volume(_pv("pv-prebound-mine", size="5Gi", claim=(ns, "data-db-0", None)))
    core.create_namespaced_persistent_volume_claim(ns, _pvc("data-db-0"))

    wait_until(lambda: _claim_phase(core, ns, "data-db-0") == "Bound", what="the claim to bind")
    claim = core.read_namespaced_persistent_volume_claim("data-db-0", ns)
    assert claim.spec.volume_name == "pv-prebound-mine"
    assert _volume_phase(core, "pv-prebound-free") == "Available"


def test_deleting_the_claim_of_a_delete_volume_deletes_the_volume(core: client.CoreV1Api) -> None:
    """docs/control-plane-traps.md#pv-reclaim:
    with reclaim policy Delete the disk goes with the claim."""
    ns = _namespace(core, "pv-reclaim-delete")
    core.create_persistent_volume(_pv("pv-reclaim-delete", claim=(ns, "data", None), policy="Delete"))
    core.create_namespaced_persistent_volume_claim(ns, _pvc("data", volume="pv-reclaim-delete"))
    wait_until(lambda: _claim_phase(core, ns, "data") == "Bound", what="the claim to bind")

    _delete_claim(core, ns, "data")
    wait_until(lambda: _gone(core.read_persistent_volume, "pv-reclaim-delete"), what="the PV to be deleted")
    deleted = _events(core, "default", "VolumeDeleted")
    assert [(e.type, e.involved_object.name) for e in deleted] == [("Warning", "pv-reclaim-delete")]


def test_deleting_the_claim_of_a_retain_volume_leaves_it_released(
    core: client.CoreV1Api, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    ns = _namespace(core, "pv-reclaim-retain")
    core.create_persistent_volume(_pv("pv-reclaim-retain", claim=(ns, "data", None), policy="Retain"))
    pvc = core.create_namespaced_persistent_volume_claim(ns, _pvc("data", volume="pv-reclaim-retain"))
    wait_until(lambda: _claim_phase(core, ns, "data") == "Bound", what="the claim to bind")

    _delete_claim(core, ns, "data")
    wait_until(lambda: _volume_phase(core, "pv-reclaim-retain") == "Released", what="the PV to be Released")
    _settle(simulator, cluster)
    pv = core.read_persistent_volume("pv-reclaim-retain")
    assert pv.status.phase == "Released"
    assert pv.spec.claim_ref.uid == pvc.metadata.uid
    assert _events(core, "default", "VolumeDeleted") == []


def test_volume_restored_with_a_stale_claim_uid_is_released_and_reclaimed(core: client.CoreV1Api) -> None:
    """syncVolume: a claimRef uid that no claim of that name has means the claim was deleted."""
    ns = _namespace(core, "pv-stale-uid")
    core.create_namespaced_persistent_volume_claim(ns, _pvc("data", volume="pv-stale-uid"))
    core.create_persistent_volume(_pv("pv-stale-uid", claim=(ns, "data", str(uuid.uuid4())), policy="Delete"))

    wait_until(lambda: _gone(core.read_persistent_volume, "pv-stale-uid"), what="the PV to be reclaimed")
    assert _claim_phase(core, ns, "data") == "Pending"
    assert [e.involved_object.name for e in _events(core, "default", "VolumeDeleted")] == ["pv-stale-uid"]
