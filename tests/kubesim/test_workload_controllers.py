"""The ReplicaSet, Deployment and StatefulSet controllers, driven through the official client over HTTP.

Each test reproduces a behaviour measured on real control planes (docs/control-plane-traps.md, sections orphan
deletion to Deployment before its ReplicaSets) that promote depends on: adoption without new pods or
ReplicaSets, deterministic names, byte-exact ControllerRevisions, and the restarts a modified template causes.
Restore tests run a "member" cluster and the test's cluster as the control plane, and copy objects the way
promote does: without uid, resourceVersion, creationTimestamp, generation, managedFields, ownerReferences and
status.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import SimulatedCluster, SimulatorThread
from kubesim.controllers.hashing import fnv1_32, fnv1a_32, pod_template_hash, safe_encode
from kubesim.objects import go_json
from kubesim.testing import api_client, mark_pod_running, wait_until

SMP = "application/strategic-merge-patch+json"
"""Named explicitly: which content type the client picks for a dict body differs between its versions."""
_SERVER_SET = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "ownerReferences",
)


@dataclass
class Clients:
    """One simulated cluster and the official clients reaching it."""

    sim: SimulatedCluster
    thread: SimulatorThread
    api: client.ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api

    def settle(self) -> None:
        """Wait until the controllers have nothing left to do, so "nothing happened" can be asserted."""
        self.thread.settle(self.sim, quiet_for=0.2)


@pytest.fixture
def plane(
    simulator: SimulatorThread,
    cluster: SimulatedCluster,
    api: client.ApiClient,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
) -> Clients:
    """The test's cluster, playing the Kosmos control plane in restore tests."""
    return Clients(cluster, simulator, api, core, apps)


@pytest.fixture
def member(simulator: SimulatorThread) -> Iterator[Clients]:
    """A second simulated cluster: the member an application is promoted from."""
    sim = simulator.start_cluster(SimulatedCluster("member"))
    with api_client(sim.url) as api:
        yield Clients(sim, simulator, api, client.CoreV1Api(api), client.AppsV1Api(api))
    simulator.run(sim.stop())
    simulator.clusters.remove(sim)


# ---------------------------------------------------------------------------------------------- helpers
def _exists(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _namespace(clients: Clients, name: str | None = None) -> str:
    """A fresh namespace, once its `default` ServiceAccount exists (pods are refused before that)."""
    name = name or f"wl-{uuid.uuid4().hex[:8]}"
    clients.core.create_namespace({"metadata": {"name": name}})
    wait_until(
        lambda: _exists(lambda: clients.core.read_namespaced_service_account("default", name)),
        what=f"the default ServiceAccount of {name}",
    )
    return name


def _template(app: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
    }


def _workload(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": _template(name),
            **spec,
        },
    }


def _statefulset(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return _workload(name, replicas, serviceName=name, **spec)


def _pods(clients: Clients, namespace: str) -> list[client.V1Pod]:
    return clients.core.list_namespaced_pod(namespace).items


def _wait_for_pods(clients: Clients, namespace: str, count: int) -> list[client.V1Pod]:
    def counted() -> list[client.V1Pod]:
        pods = _pods(clients, namespace)
        return pods if len(pods) == count else []

    return wait_until(counted, what=f"{count} pods")


def _uids(pods: list[client.V1Pod]) -> dict[str, str]:
    return {pod.metadata.name: pod.metadata.uid for pod in pods}


def _controller(obj: Any) -> client.V1OwnerReference | None:
    return next((ref for ref in obj.metadata.owner_references or [] if ref.controller), None)


def _events(clients: Clients, namespace: str) -> list[tuple[str, str]]:
    return [(e.reason, e.message) for e in clients.core.list_namespaced_event(namespace).items]


def _reasons(clients: Clients, namespace: str) -> set[str]:
    return {reason for reason, _ in _events(clients, namespace)}


def _raw_items(response: Any) -> list[dict[str, Any]]:
    """Objects as served (a `_preload_content=False` response), not round-tripped through the models."""
    return json.loads(response.data)["items"]


def _restorable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as promote restores it: no server-set metadata, no ownerReferences, no status."""
    copy = {key: value for key, value in obj.items() if key != "status"}
    copy["metadata"] = {key: value for key, value in obj["metadata"].items() if key not in _SERVER_SET}
    return copy


def _run_pending_pods(clients: Clients, namespace: str) -> None:
    """The kubelet's part: every pod not yet Ready reports Running and Ready."""
    for pod in _pods(clients, namespace):
        if not pod.metadata.deletion_timestamp and not (pod.status and pod.status.phase == "Running"):
            mark_pod_running(clients.core, namespace, pod.metadata.name)


def _drive(clients: Clients, namespace: str, done: Callable[[], bool], what: str) -> None:
    """Run pods as they appear until `done`: lets rollouts and OrderedReady progress."""

    def step() -> bool:
        _run_pending_pods(clients, namespace)
        return done()

    wait_until(step, what=what)


def _deployment_rolled_out(clients: Clients, namespace: str, name: str, replicas: int) -> Callable[[], bool]:
    def done() -> bool:
        status = clients.apps.read_namespaced_deployment(name, namespace).status
        counts = (status.replicas, status.updated_replicas, status.available_replicas)
        return counts == (replicas, replicas, replicas) and len(_pods(clients, namespace)) == replicas

    return done


def _statefulset_rolled_out(clients: Clients, namespace: str, name: str, replicas: int) -> Callable[[], bool]:
    def done() -> bool:
        status = clients.apps.read_namespaced_stateful_set(name, namespace).status
        return bool(
            status
            and status.update_revision
            and status.current_revision == status.update_revision
            and status.updated_replicas == status.ready_replicas == replicas
        )

    return done


def _annotate_template(patch: Callable[..., Any], name: str, namespace: str, value: str) -> None:
    body = {"spec": {"template": {"metadata": {"annotations": {"example.com/rev": value}}}}}
    patch(name, namespace, body, _content_type=SMP)


def _web_in_member(member: Clients) -> str:
    """Deployment `web` at revision 2: a current ReplicaSet with 2 running pods and a history one at 0."""
    namespace = _namespace(member, "shop")
    member.apps.create_namespaced_deployment(namespace, _workload("web", 2))
    _drive(member, namespace, _deployment_rolled_out(member, namespace, "web", 2), "web revision 1")
    _annotate_template(member.apps.patch_namespaced_deployment, "web", namespace, "2")
    _drive(
        member,
        namespace,
        lambda: len(member.apps.list_namespaced_replica_set(namespace).items) == 2,
        "web rs 2",
    )
    _drive(member, namespace, _deployment_rolled_out(member, namespace, "web", 2), "web revision 2")
    return namespace


def _db_in_member(member: Clients) -> str:
    """StatefulSet `db` rolled once: two revisions, both pods Ready on the second."""
    namespace = _namespace(member, "shop")
    member.apps.create_namespaced_stateful_set(namespace, _statefulset("db", 2))
    _drive(member, namespace, _statefulset_rolled_out(member, namespace, "db", 2), "db revision 1")
    _annotate_template(member.apps.patch_namespaced_stateful_set, "db", namespace, "2")
    _drive(
        member,
        namespace,
        lambda: len(member.apps.list_namespaced_controller_revision(namespace).items) == 2,
        "db revision 2 created",
    )
    _drive(member, namespace, _statefulset_rolled_out(member, namespace, "db", 2), "db revision 2")
    return namespace


def _restore_pods(member: Clients, plane: Clients, namespace: str) -> dict[str, str]:
    """Pods copied into the control plane, with the member's pod status reported there (as Kosmos does)."""
    for pod in _raw_items(member.core.list_namespaced_pod(namespace, _preload_content=False)):
        plane.core.create_namespaced_pod(namespace, _restorable(pod))
        mark_pod_running(plane.core, namespace, pod["metadata"]["name"])
    return _uids(_pods(plane, namespace))


def _restore_replicasets(member: Clients, plane: Clients, namespace: str) -> None:
    for rs in _raw_items(member.apps.list_namespaced_replica_set(namespace, _preload_content=False)):
        plane.apps.create_namespaced_replica_set(namespace, _restorable(rs))


def _restore_deployment(member: Clients, plane: Clients, namespace: str) -> None:
    (deployment,) = _raw_items(member.apps.list_namespaced_deployment(namespace, _preload_content=False))
    plane.apps.create_namespaced_deployment(namespace, _restorable(deployment))


def _restore_statefulset(member: Clients, plane: Clients, namespace: str) -> None:
    (statefulset,) = _raw_items(member.apps.list_namespaced_stateful_set(namespace, _preload_content=False))
    plane.apps.create_namespaced_stateful_set(namespace, _restorable(statefulset))


def _member_revisions(member: Clients, namespace: str) -> list[dict[str, Any]]:
    return _raw_items(member.apps.list_namespaced_controller_revision(namespace, _preload_content=False))


def _post_go_encoded_revision(plane: Clients, namespace: str, revision: dict[str, Any]) -> None:
    """Bypasses the client's serialiser: `data` goes out exactly as Go's encoding/json writes it."""
    restorable = _restorable(revision)
    head = {key: value for key, value in restorable.items() if key != "data"}
    body = json.dumps(head)[:-1].encode() + b',"data":' + go_json(revision["data"]) + b"}"
    configuration = plane.api.configuration
    response = plane.api.rest_client.pool_manager.request(
        "POST",
        f"{configuration.host}/apis/apps/v1/namespaces/{namespace}/controllerrevisions",
        body=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": configuration.get_api_key_with_prefix("authorization"),
        },
    )
    assert response.status == 201, response.data


def _revision_numbers(clients: Clients, namespace: str) -> dict[str, int]:
    return {
        r.metadata.name: r.revision for r in clients.apps.list_namespaced_controller_revision(namespace).items
    }


# ---------------------------------------------------------------------------------------------- hashing
def test_hashes_are_go_fnv_and_safe_encoding() -> None:
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"foobar") == 0xBF9CF968
    assert fnv1_32(b"foobar") == 0x31F0B262
    assert safe_encode(1234567890) == "56789bcdf4"
    assert pod_template_hash(_template("web"), None) != pod_template_hash(_template("web"), 1)


# ---------------------------------------------------------------------------------------------- ReplicaSets
def test_replicaset_creates_pods_up_to_replicas_and_deletes_not_ready_extras_first(plane: Clients) -> None:
    namespace = _namespace(plane)
    plane.apps.create_namespaced_replica_set(namespace, _workload("web", 3))
    pods = _wait_for_pods(plane, namespace, 3)
    assert all(pod.metadata.name.startswith("web-") and _controller(pod).name == "web" for pod in pods)
    created = [message for reason, message in _events(plane, namespace) if reason == "SuccessfulCreate"]
    assert sorted(created) == sorted(f"Created pod: {pod.metadata.name}" for pod in pods)

    ready = pods[1].metadata.name
    mark_pod_running(plane.core, namespace, ready)
    plane.apps.patch_namespaced_replica_set("web", namespace, {"spec": {"replicas": 1}}, _content_type=SMP)
    wait_until(
        lambda: [p.metadata.name for p in _pods(plane, namespace)] == [ready], what="the ready pod kept"
    )
    deleted = [message for reason, message in _events(plane, namespace) if reason == "SuccessfulDelete"]
    assert len(deleted) == 2 and f"Deleted pod: {ready}" not in deleted
    wait_until(lambda: plane.apps.read_namespaced_replica_set("web", namespace).status.ready_replicas == 1)
    status = plane.apps.read_namespaced_replica_set("web", namespace).status
    assert (status.replicas, status.available_replicas, status.fully_labeled_replicas) == (1, 1, 1)


def test_replicaset_adopts_orphan_pods_instead_of_creating(plane: Clients) -> None:
    namespace = _namespace(plane)
    for name, app in (("web-a", "web"), ("web-b", "web"), ("other", "other")):
        plane.core.create_namespaced_pod(
            namespace,
            {"metadata": {"name": name, **_template(app)["metadata"]}, "spec": _template(app)["spec"]},
        )
    before = _uids(_pods(plane, namespace))
    plane.apps.create_namespaced_replica_set(namespace, _workload("web", 2))
    wait_until(
        lambda: all(_controller(p) for p in _pods(plane, namespace) if p.metadata.name != "other"),
        what="adoption",
    )
    plane.settle()
    pods = {pod.metadata.name: pod for pod in _pods(plane, namespace)}
    assert _uids(list(pods.values())) == before
    assert _controller(pods["web-a"]).name == _controller(pods["web-b"]).name == "web"
    assert _controller(pods["other"]) is None
    assert "SuccessfulCreate" not in _reasons(plane, namespace)


# ---------------------------------------------------------------------------------------------- Deployments
def test_deployment_creates_a_deterministically_named_replicaset_and_pods(plane: Clients) -> None:
    namespace = _namespace(plane)
    plane.apps.create_namespaced_deployment(namespace, _workload("web", 2))
    _drive(plane, namespace, _deployment_rolled_out(plane, namespace, "web", 2), "web rolled out")
    deployment = plane.apps.read_namespaced_deployment("web", namespace)
    served = json.loads(plane.apps.read_namespaced_deployment("web", namespace, _preload_content=False).data)
    template = served["spec"]["template"]
    (rs,) = plane.apps.list_namespaced_replica_set(namespace).items
    template_hash = pod_template_hash(template, None)
    assert rs.metadata.name == f"web-{template_hash}"
    assert _controller(rs).uid == deployment.metadata.uid
    assert rs.spec.selector.match_labels == {"app": "web", "pod-template-hash": template_hash}
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert deployment.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert (
        rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"],
        rs.metadata.annotations["deployment.kubernetes.io/max-replicas"],
    ) == ("2", "3")
    assert all(pod.metadata.labels["pod-template-hash"] == template_hash for pod in _pods(plane, namespace))
    assert ("ScalingReplicaSet", f"Scaled up replica set {rs.metadata.name} to 2") in _events(
        plane, namespace
    )
    conditions = {c.type: (c.status, c.reason) for c in deployment.status.conditions}
    assert conditions["Available"] == ("True", "MinimumReplicasAvailable")
    wait_until(
        lambda: (
            {c.reason for c in plane.apps.read_namespaced_deployment("web", namespace).status.conditions}
            >= {"NewReplicaSetAvailable"}
        ),
        what="Progressing: NewReplicaSetAvailable",
    )


def test_modified_template_surges_a_new_replicaset_and_keeps_the_old_one(plane: Clients) -> None:
    """docs/control-plane-traps.md#template-changes:
    the Kosmos toleration added to the template is a rollout, not an adoption."""
    namespace = _namespace(plane)
    plane.apps.create_namespaced_deployment(namespace, _workload("web", 2))
    _drive(plane, namespace, _deployment_rolled_out(plane, namespace, "web", 2), "web rolled out")
    (old,) = plane.apps.list_namespaced_replica_set(namespace).items
    toleration = {"key": "kosmos.io/node", "operator": "Exists", "effect": "NoSchedule"}
    body = {"spec": {"template": {"spec": {"tolerations": [toleration]}}}}
    plane.apps.patch_namespaced_deployment("web", namespace, body, _content_type=SMP)
    wait_until(
        lambda: len(plane.apps.list_namespaced_replica_set(namespace).items) == 2, what="a new ReplicaSet"
    )
    plane.settle()
    replicasets = {rs.metadata.name: rs for rs in plane.apps.list_namespaced_replica_set(namespace).items}
    new = next(rs for name, rs in replicasets.items() if name != old.metadata.name)
    assert (replicasets[old.metadata.name].spec.replicas, new.spec.replicas) == (2, 1)
    assert new.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert ("ScalingReplicaSet", f"Scaled up replica set {new.metadata.name} to 1") in _events(
        plane, namespace
    )
    assert len(_pods(plane, namespace)) == 3


def test_recreate_removes_old_pods_before_the_new_replicaset_scales_up(plane: Clients) -> None:
    namespace = _namespace(plane)
    plane.apps.create_namespaced_deployment(namespace, _workload("web", 2, strategy={"type": "Recreate"}))
    _drive(plane, namespace, _deployment_rolled_out(plane, namespace, "web", 2), "web rolled out")
    (old,) = plane.apps.list_namespaced_replica_set(namespace).items
    _annotate_template(plane.apps.patch_namespaced_deployment, "web", namespace, "2")
    _drive(plane, namespace, _deployment_rolled_out(plane, namespace, "web", 2), "web recreated")
    replicasets = {
        rs.metadata.name: rs.spec.replicas for rs in plane.apps.list_namespaced_replica_set(namespace).items
    }
    new = next(name for name in replicasets if name != old.metadata.name)
    assert replicasets == {old.metadata.name: 0, new: 2}
    events = _events(plane, namespace)
    assert ("ScalingReplicaSet", f"Scaled down replica set {old.metadata.name} to 0") in events
    assert ("ScalingReplicaSet", f"Scaled up replica set {new} to 2") in events
    assert {_controller(pod).name for pod in _pods(plane, namespace)} == {new}


def test_orphaning_deletes_of_deployment_then_replicaset_keep_the_pods(plane: Clients) -> None:
    """docs/control-plane-traps.md#orphan-deletion:
    detach deletes top-down with propagationPolicy=Orphan and no pod is touched."""
    namespace = _namespace(plane)
    plane.apps.create_namespaced_deployment(namespace, _workload("web", 2))
    _drive(plane, namespace, _deployment_rolled_out(plane, namespace, "web", 2), "web rolled out")
    before = _uids(_pods(plane, namespace))
    (rs,) = plane.apps.list_namespaced_replica_set(namespace).items
    orphan = client.V1DeleteOptions(propagation_policy="Orphan")
    plane.apps.delete_namespaced_deployment("web", namespace, body=orphan)
    wait_until(
        lambda: not _exists(lambda: plane.apps.read_namespaced_deployment("web", namespace)),
        what="the Deployment gone",
    )
    assert _controller(plane.apps.read_namespaced_replica_set(rs.metadata.name, namespace)) is None
    plane.apps.delete_namespaced_replica_set(rs.metadata.name, namespace, body=orphan)
    wait_until(
        lambda: not plane.apps.list_namespaced_replica_set(namespace).items, what="the ReplicaSet gone"
    )
    plane.settle()
    pods = _pods(plane, namespace)
    assert _uids(pods) == before
    assert all(not pod.metadata.owner_references and not pod.metadata.deletion_timestamp for pod in pods)


def test_owners_being_deleted_adopt_nothing(plane: Clients) -> None:
    """docs/control-plane-traps.md#deleting-owner-is-inert:
    while an owner carries deletionTimestamp its controller does not act, so the dependents
    the garbage collector orphaned stay orphans (a finalizer keeps both owners terminating here)."""
    namespace = _namespace(plane)
    plane.apps.create_namespaced_deployment(namespace, _workload("web", 2))
    _drive(plane, namespace, _deployment_rolled_out(plane, namespace, "web", 2), "web rolled out")
    before = _uids(_pods(plane, namespace))
    (rs,) = plane.apps.list_namespaced_replica_set(namespace).items
    hold = {"metadata": {"finalizers": ["example.com/hold"]}}
    plane.apps.patch_namespaced_deployment("web", namespace, hold, _content_type=SMP)
    plane.apps.patch_namespaced_replica_set(rs.metadata.name, namespace, hold, _content_type=SMP)
    orphan = client.V1DeleteOptions(propagation_policy="Orphan")
    plane.apps.delete_namespaced_deployment("web", namespace, body=orphan)
    wait_until(
        lambda: not _controller(plane.apps.read_namespaced_replica_set(rs.metadata.name, namespace)),
        what="the ReplicaSet orphaned",
    )
    plane.apps.delete_namespaced_replica_set(rs.metadata.name, namespace, body=orphan)
    wait_until(
        lambda: not any(p.metadata.owner_references for p in _pods(plane, namespace)), what="pods orphaned"
    )
    plane.settle()
    assert plane.apps.read_namespaced_deployment("web", namespace).metadata.deletion_timestamp
    (still,) = plane.apps.list_namespaced_replica_set(namespace).items
    assert still.metadata.deletion_timestamp and _controller(still) is None
    assert _uids(_pods(plane, namespace)) == before
    assert not any(p.metadata.owner_references for p in _pods(plane, namespace))


def test_restored_pods_and_replicasets_are_adopted_without_creating_anything(
    member: Clients, plane: Clients
) -> None:
    """docs/control-plane-traps.md#adoption:
    pods, then both ReplicaSets, then the Deployment: adoption only, history kept."""
    namespace = _web_in_member(member)
    member_rses = {rs.metadata.name: rs for rs in member.apps.list_namespaced_replica_set(namespace).items}
    _namespace(plane, namespace)
    pods = _restore_pods(member, plane, namespace)
    _restore_replicasets(member, plane, namespace)
    _restore_deployment(member, plane, namespace)

    def adopted() -> bool:
        replicasets = plane.apps.list_namespaced_replica_set(namespace).items
        return all(_controller(p) for p in _pods(plane, namespace)) and all(
            _controller(rs) for rs in replicasets
        )

    wait_until(adopted, what="pods and ReplicaSets adopted")
    plane.settle()
    assert _uids(_pods(plane, namespace)) == pods
    replicasets = {rs.metadata.name: rs for rs in plane.apps.list_namespaced_replica_set(namespace).items}
    assert replicasets.keys() == member_rses.keys()
    revisions = {
        rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs for rs in replicasets.values()
    }
    assert (revisions["1"].spec.replicas, revisions["2"].spec.replicas) == (0, 2)
    assert {_controller(p).name for p in _pods(plane, namespace)} == {revisions["2"].metadata.name}
    assert not {"SuccessfulCreate", "ScalingReplicaSet"} & _reasons(plane, namespace)
    restored = plane.apps.read_namespaced_deployment("web", namespace)
    assert restored.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert (
        restored.status.replicas,
        restored.status.updated_replicas,
        restored.status.available_replicas,
    ) == (2, 2, 2)


def test_deployment_restored_without_replicasets_recreates_the_same_name(
    member: Clients, plane: Clients
) -> None:
    """docs/control-plane-traps.md#deployment-before-its-replicasets:
    same ReplicaSet name, same pods, but a ScalingReplicaSet event and no history."""
    namespace = _web_in_member(member)
    current = next(
        rs.metadata.name
        for rs in member.apps.list_namespaced_replica_set(namespace).items
        if rs.spec.replicas
    )
    _namespace(plane, namespace)
    pods = _restore_pods(member, plane, namespace)
    _restore_deployment(member, plane, namespace)
    wait_until(lambda: all(_controller(p) for p in _pods(plane, namespace)), what="pods adopted")
    plane.settle()
    (rs,) = plane.apps.list_namespaced_replica_set(namespace).items
    assert rs.metadata.name == current
    assert _uids(_pods(plane, namespace)) == pods
    assert ("ScalingReplicaSet", f"Scaled up replica set {current} to 2") in _events(plane, namespace)
    assert "SuccessfulCreate" not in _reasons(plane, namespace)
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    restored = plane.apps.read_namespaced_deployment("web", namespace)
    assert restored.metadata.annotations["deployment.kubernetes.io/revision"] == "1"


# ---------------------------------------------------------------------------------------------- StatefulSets
def test_statefulset_creates_ordinals_in_order_with_their_claims(plane: Clients) -> None:
    namespace = _namespace(plane)
    claim = {
        "metadata": {"name": "data", "labels": {"tier": "storage"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    plane.apps.create_namespaced_stateful_set(namespace, _statefulset("db", 2, volumeClaimTemplates=[claim]))
    wait_until(lambda: _exists(lambda: plane.core.read_namespaced_pod("db-0", namespace)), what="db-0")
    plane.settle()
    assert [pod.metadata.name for pod in _pods(plane, namespace)] == ["db-0"]
    pod = plane.core.read_namespaced_pod("db-0", namespace)
    status = plane.apps.read_namespaced_stateful_set("db", namespace).status
    assert pod.metadata.labels["controller-revision-hash"] == status.update_revision
    assert pod.metadata.labels["statefulset.kubernetes.io/pod-name"] == "db-0"
    assert (pod.spec.hostname, pod.spec.subdomain) == ("db-0", "db")
    volume = next(v for v in pod.spec.volumes if v.name == "data")
    assert volume.persistent_volume_claim.claim_name == "data-db-0"
    pvc = plane.core.read_namespaced_persistent_volume_claim("data-db-0", namespace)
    assert pvc.metadata.labels == {"tier": "storage", "app": "db"}
    assert (status.replicas, status.collision_count) == (1, 0)

    mark_pod_running(plane.core, namespace, "db-0")
    wait_until(lambda: _exists(lambda: plane.core.read_namespaced_pod("db-1", namespace)), what="db-1")
    assert _exists(lambda: plane.core.read_namespaced_persistent_volume_claim("data-db-1", namespace))
    assert ("SuccessfulCreate", "create Pod db-1 in StatefulSet db successful") in _events(plane, namespace)


def test_statefulset_template_change_deletes_the_highest_ordinal_once_pods_are_ready(plane: Clients) -> None:
    """docs/control-plane-traps.md#template-changes:
    the restart a modified template causes, and why it hides while pods are not Ready."""
    namespace = _namespace(plane)
    plane.apps.create_namespaced_stateful_set(namespace, _statefulset("db", 2))
    _drive(plane, namespace, _statefulset_rolled_out(plane, namespace, "db", 2), "db ready")
    before = _uids(_pods(plane, namespace))
    mark_pod_running(plane.core, namespace, "db-0", ready=False)
    _annotate_template(plane.apps.patch_namespaced_stateful_set, "db", namespace, "2")
    plane.settle()
    assert _uids(_pods(plane, namespace)) == before
    assert len(plane.apps.list_namespaced_controller_revision(namespace).items) == 2

    mark_pod_running(plane.core, namespace, "db-0")
    wait_until(
        lambda: _uids(_pods(plane, namespace)).get("db-1") not in (None, before["db-1"]), what="db-1 replaced"
    )
    plane.settle()
    assert _uids(_pods(plane, namespace))["db-0"] == before["db-0"]
    assert ("SuccessfulDelete", "delete Pod db-1 in StatefulSet db successful") in _events(plane, namespace)
    status = plane.apps.read_namespaced_stateful_set("db", namespace).status
    assert status.update_revision != status.current_revision
    assert plane.core.read_namespaced_pod("db-1", namespace).metadata.labels["controller-revision-hash"] == (
        status.update_revision
    )


def test_parallel_statefulset_creates_all_ordinals_and_scales_down_from_the_top(plane: Clients) -> None:
    namespace = _namespace(plane)
    plane.apps.create_namespaced_stateful_set(
        namespace, _statefulset("db", 3, podManagementPolicy="Parallel")
    )
    pods = _wait_for_pods(plane, namespace, 3)
    assert sorted(pod.metadata.name for pod in pods) == ["db-0", "db-1", "db-2"]
    plane.apps.patch_namespaced_stateful_set("db", namespace, {"spec": {"replicas": 1}}, _content_type=SMP)
    wait_until(lambda: [pod.metadata.name for pod in _pods(plane, namespace)] == ["db-0"], what="db-0 only")
    status = plane.apps.read_namespaced_stateful_set("db", namespace).status
    assert (status.replicas, status.current_revision) == (1, status.update_revision)


def test_restored_go_encoded_revisions_and_pods_are_adopted(member: Clients, plane: Clients) -> None:
    """docs/control-plane-traps.md#controllerrevision-bytes:
    revisions sent with Go's bytes are adopted, keep their numbers, nothing is created."""
    namespace = _db_in_member(member)
    member_status = member.apps.read_namespaced_stateful_set("db", namespace).status
    _namespace(plane, namespace)
    pods = _restore_pods(member, plane, namespace)
    for revision in _member_revisions(member, namespace):
        _post_go_encoded_revision(plane, namespace, revision)
    _restore_statefulset(member, plane, namespace)

    def adopted() -> bool:
        revisions = plane.apps.list_namespaced_controller_revision(namespace).items
        return all(_controller(p) for p in _pods(plane, namespace)) and all(_controller(r) for r in revisions)

    wait_until(adopted, what="pods and revisions adopted")
    plane.settle()
    assert _revision_numbers(plane, namespace) == _revision_numbers(member, namespace)
    assert _uids(_pods(plane, namespace)) == pods
    status = plane.apps.read_namespaced_stateful_set("db", namespace).status
    assert status.current_revision == status.update_revision == member_status.update_revision
    assert (status.collision_count, status.ready_replicas, status.updated_replicas) == (0, 2, 2)
    assert not {"SuccessfulCreate", "SuccessfulDelete"} & _reasons(plane, namespace)


def test_revisions_sent_by_the_client_serialiser_block_the_statefulset(
    member: Clients, plane: Clients
) -> None:
    """docs/control-plane-traps.md#controllerrevision-bytes:
    `json.dumps` bytes differ from Go's, the adoption update is refused as a change of the
    immutable `data`, and the StatefulSet never adopts anything."""
    namespace = _db_in_member(member)
    _namespace(plane, namespace)
    pods = _restore_pods(member, plane, namespace)
    for revision in _member_revisions(member, namespace):
        plane.apps.create_namespaced_controller_revision(namespace, _restorable(revision))
    _restore_statefulset(member, plane, namespace)
    plane.settle()
    statefulset = plane.apps.read_namespaced_stateful_set("db", namespace)
    assert statefulset.status is None or statefulset.status.replicas is None
    assert _revision_numbers(plane, namespace) == _revision_numbers(member, namespace)
    assert not any(_controller(r) for r in plane.apps.list_namespaced_controller_revision(namespace).items)
    assert _uids(_pods(plane, namespace)) == pods
    assert not any(_controller(p) for p in _pods(plane, namespace))
    name = next(iter(_revision_numbers(plane, namespace)))
    with pytest.raises(ApiException) as refused:
        body = {"metadata": {"labels": {"marker": "x"}}}
        plane.apps.patch_namespaced_controller_revision(name, namespace, body, _content_type=SMP)
    assert refused.value.status == 422 and "field is immutable" in refused.value.body


def test_statefulset_without_restored_revisions_recreates_the_same_revision_name(
    member: Clients, plane: Clients
) -> None:
    """docs/control-plane-traps.md#controllerrevision-bytes:
    not restored at all: same name, revision 1, pods adopted, no rollout."""
    namespace = _db_in_member(member)
    member_status = member.apps.read_namespaced_stateful_set("db", namespace).status
    _namespace(plane, namespace)
    pods = _restore_pods(member, plane, namespace)
    _restore_statefulset(member, plane, namespace)
    wait_until(lambda: all(_controller(p) for p in _pods(plane, namespace)), what="pods adopted")
    plane.settle()
    assert _revision_numbers(plane, namespace) == {member_status.update_revision: 1}
    assert _uids(_pods(plane, namespace)) == pods
    assert not {"SuccessfulCreate", "SuccessfulDelete"} & _reasons(plane, namespace)
    status = plane.apps.read_namespaced_stateful_set("db", namespace).status
    assert status.current_revision == status.update_revision == member_status.update_revision
