"""The informer-lag barrier against the simulator: it waits for adoption, cleans up after itself, and
takes its one name back from what an interrupted earlier attempt left, in as few requests as it can."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kubesim import SimulatedCluster
from kubesim.testing import SimAdmin, wait_until
from shared.kube import Kube
from shared.steps import barrier


@pytest.fixture
def kube(cluster: SimulatedCluster) -> Iterator[Kube]:
    with Kube.from_kubeconfig(cluster.kubeconfig()) as kube_:
        yield kube_


@pytest.fixture
def namespace(kube: Kube) -> str:
    """A fresh namespace, once its `default` ServiceAccount exists (pods are refused before that)."""
    name = f"barrier-{uuid.uuid4().hex[:8]}"
    kube.create(kube.discovery.resolve("namespaces"), {"metadata": {"name": name}})
    accounts = kube.discovery.resolve("serviceaccounts")
    wait_until(lambda: kube.get(accounts, name, "default"), what="the default ServiceAccount")
    return name


def _left(kube: Kube, namespace: str) -> list[str]:
    return [
        f"{resource} {obj['metadata']['name']}"
        for resource in ("pods", "replicasets.apps")
        for obj in kube.list(kube.discovery.resolve(resource), namespace)
    ]


def _writes(admin: SimAdmin, namespace: str) -> list[str]:
    return [
        f"{entry['verb']} {entry['resource']}"
        for entry in admin.requests()
        if entry["namespace"] == namespace and entry["verb"] in ("create", "delete")
    ]


def test_the_barrier_creates_its_pod_and_replicaset_once_and_leaves_nothing(
    kube: Kube, namespace: str, admin: SimAdmin
) -> None:
    admin.clear_requests()
    assert barrier.await_pod_informers(kube, namespace, timeout=10) >= 0
    assert _left(kube, namespace) == []
    assert sorted(_writes(admin, namespace)) == [
        "create pods",
        "create replicasets",
        "delete pods",
        "delete replicasets",
    ]


@pytest.mark.parametrize("left_behind", [("pods",), ("replicasets.apps",), ("pods", "replicasets.apps")])
def test_what_an_interrupted_attempt_left_is_replaced(
    kube: Kube, namespace: str, left_behind: tuple[str, ...]
) -> None:
    """An old barrier whose ReplicaSet selects an older token must not stand in for this one: it is
    deleted, and this barrier's own pod and ReplicaSet are created and awaited."""
    pod, replica_set = barrier.bodies(namespace, "old-token")
    bodies = {"pods": pod, "replicasets.apps": replica_set}
    for resource in left_behind:
        kube.create(kube.discovery.resolve(resource), bodies[resource], namespace)
    assert barrier.await_pod_informers(kube, namespace, timeout=10) >= 0
    assert _left(kube, namespace) == []
