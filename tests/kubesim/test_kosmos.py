"""The Kosmos emulation between a simulated control plane and member, seen only over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import SimulatorThread
from kubesim.kosmos import KosmosLink
from kubesim.serve import start_pair
from kubesim.testing import MERGE_PATCH, api_client, mark_pod_running, wait_until

NODE = "kosmos-member1"


@pytest.fixture
def pair(simulator: SimulatorThread) -> Iterator[tuple[client.CoreV1Api, client.CoreV1Api, KosmosLink]]:
    control_plane, member, link = simulator.run(start_pair("member1"))
    with api_client(control_plane.url) as cp_api, api_client(member.url) as member_api:
        yield client.CoreV1Api(cp_api), client.CoreV1Api(member_api), link
    simulator.run(link.stop())
    simulator.run(member.stop())
    simulator.run(control_plane.stop())


def _namespace_in_both(cp: client.CoreV1Api, member: client.CoreV1Api, name: str) -> None:
    for core in (cp, member):
        core.create_namespace({"metadata": {"name": name}})
        wait_until(lambda core=core: _has_default_sa(core, name), what=f"default SA in {name}")


def _has_default_sa(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException:
        return False
    return True


def _pod(name: str, labels: dict[str, str], node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


def _gone(read, *args) -> bool:
    try:
        read(*args)
    except ApiException as error:
        return error.status == 404
    return False


def test_control_plane_holds_the_cluster_object_and_the_virtual_node(pair) -> None:
    cp, _, link = pair
    node = cp.read_node(NODE)
    assert node.metadata.labels["kosmos.io/node"] == "true"
    assert node.metadata.annotations["kosmos-io/owned-by-cluster"] == "member1"
    assert [(t.key, t.effect) for t in node.spec.taints] == [("kosmos.io/node", "NoSchedule")]
    cluster = client.CustomObjectsApi(cp.api_client).get_cluster_custom_object(
        "kosmos.io", "v1alpha1", "clusters", "member1"
    )
    kubeconfig = yaml.safe_load(base64.b64decode(cluster["spec"]["kubeconfig"]))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == link.member.url


def test_status_of_marked_member_pods_is_copied_and_labels_synced(pair) -> None:
    cp, member, _ = pair
    _namespace_in_both(cp, member, "app")
    member.create_namespaced_pod("app", _pod("web-1", {"app": "web", "kosmos-io/pod": "true"}))
    mark_pod_running(member, "app", "web-1")
    cp.create_namespaced_pod(
        "app", _pod("web-1", {"app": "web", "kosmos-io/pod": "true", "kosmos-io/synced": "true"}, NODE)
    )
    wait_until(
        lambda: cp.read_namespaced_pod("web-1", "app").status.phase == "Running",
        what="the member status to reach the control-plane twin",
    )
    wait_until(
        lambda: member.read_namespaced_pod("web-1", "app").metadata.labels.get("kosmos-io/synced") == "true",
        what="Kosmos to copy the control-plane labels to the member pod",
    )


def test_unmarked_member_pods_are_left_alone(pair, simulator: SimulatorThread) -> None:
    cp, member, link = pair
    _namespace_in_both(cp, member, "app")
    member_uid = member.create_namespaced_pod("app", _pod("solo", {"app": "solo"})).metadata.uid
    mark_pod_running(member, "app", "solo")
    cp.create_namespaced_pod("app", _pod("solo", {"app": "solo"}, NODE))
    cp.delete_namespaced_pod("solo", "app", grace_period_seconds=0)
    simulator.run(link.drained())
    assert member.read_namespaced_pod("solo", "app").metadata.uid == member_uid
    assert link.member_deletions == []


def test_deleting_a_control_plane_pod_deletes_its_marked_member_twin(pair) -> None:
    cp, member, link = pair
    _namespace_in_both(cp, member, "app")
    member.create_namespaced_pod("app", _pod("web-1", {"kosmos-io/pod": "true"}))
    cp.create_namespaced_pod("app", _pod("web-1", {"kosmos-io/pod": "true"}, NODE))
    cp.delete_namespaced_pod("web-1", "app", grace_period_seconds=0)
    wait_until(
        lambda: _gone(member.read_namespaced_pod, "web-1", "app"), what="the member twin to be deleted"
    )
    assert link.member_deletions == [("pods", "app", "web-1")]


def test_removing_the_marker_first_protects_the_member_pod(pair, simulator: SimulatorThread) -> None:
    cp, member, link = pair
    _namespace_in_both(cp, member, "app")
    member.create_namespaced_pod("app", _pod("web-1", {"kosmos-io/pod": "true"}))
    cp.create_namespaced_pod("app", _pod("web-1", {"kosmos-io/pod": "true"}, NODE))
    member.patch_namespaced_pod(
        "web-1", "app", {"metadata": {"labels": {"kosmos-io/pod": None}}}, _content_type=MERGE_PATCH
    )
    cp.delete_namespaced_pod("web-1", "app", grace_period_seconds=0)
    simulator.run(link.drained())
    assert member.read_namespaced_pod("web-1", "app").metadata.deletion_timestamp is None
    assert link.member_deletions == []


@pytest.mark.parametrize("kind", ["configmap", "secret"])
def test_deleting_an_owned_control_plane_object_deletes_the_member_twin(pair, kind: str) -> None:
    cp, member, link = pair
    _namespace_in_both(cp, member, "app")
    create = getattr(cp, f"create_namespaced_{'config_map' if kind == 'configmap' else 'secret'}")
    create_member = getattr(member, f"create_namespaced_{'config_map' if kind == 'configmap' else 'secret'}")
    read_member = getattr(member, f"read_namespaced_{'config_map' if kind == 'configmap' else 'secret'}")
    delete = getattr(cp, f"delete_namespaced_{'config_map' if kind == 'configmap' else 'secret'}")
    create_member("app", {"metadata": {"name": "cfg"}})
    create("app", {"metadata": {"name": "cfg", "annotations": {"kosmos-io/cluster-owners": "member1"}}})
    delete("cfg", "app")
    wait_until(lambda: _gone(read_member, "cfg", "app"), what="the member twin to be deleted")
    plural = "configmaps" if kind == "configmap" else "secrets"
    assert link.member_deletions == [(plural, "app", "cfg")]


def test_objects_owned_by_another_cluster_do_not_touch_this_member(pair, simulator: SimulatorThread) -> None:
    cp, member, link = pair
    _namespace_in_both(cp, member, "app")
    member.create_namespaced_config_map("app", {"metadata": {"name": "cfg"}})
    cp.create_namespaced_config_map(
        "app", {"metadata": {"name": "cfg", "annotations": {"kosmos-io/cluster-owners": "other"}}}
    )
    cp.delete_namespaced_config_map("cfg", "app")
    simulator.run(link.drained())
    assert member.read_namespaced_config_map("cfg", "app").metadata.name == "cfg"
    assert link.member_deletions == []
