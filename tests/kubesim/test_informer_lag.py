"""Informer lag: the controllers see writes late, and a ReplicaSet races its pods as on a loaded cluster.

On a real control plane under load, a ReplicaSet created right after its pods did not see them, created
pods of its own and deleted them a moment later (issue #10, item 8). These tests drive the simulator's
per-cluster lag over HTTP with the official client and check what kube-controller-manager does then.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import SimulatedCluster, SimulatorThread
from kubesim.testing import SimAdmin, api_client, mark_pod_running, wait_until

LAG = 0.5


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    """A fresh namespace, once its `default` ServiceAccount exists (pods are refused before that)."""
    name = f"lag-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})

    def has_default_account() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    wait_until(has_default_account, what=f"the default ServiceAccount of {name}")
    return name


def _pod(name: str, app: str, **spec: object) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}], **spec},
    }


def _replicaset(name: str, replicas: int) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
        },
    }


def _running_pods(core: client.CoreV1Api, namespace: str, app: str, count: int) -> dict[str, str]:
    """`count` pods of `app`, Running and Ready as a promote's restored pods are; name -> uid."""
    uids = {}
    for index in range(count):
        pod = core.create_namespaced_pod(namespace, _pod(f"{app}-original-{index}", app))
        mark_pod_running(core, namespace, pod.metadata.name)
        uids[pod.metadata.name] = pod.metadata.uid
    return uids


def _reasons(core: client.CoreV1Api, namespace: str, reason: str) -> list[str]:
    events = core.list_namespaced_event(namespace).items
    return [event.message for event in events if event.reason == reason]


def _owned_by(core: client.CoreV1Api, namespace: str, owner_uid: str) -> dict[str, str]:
    """Active pods whose controller is `owner_uid`: name -> uid."""
    return {
        pod.metadata.name: pod.metadata.uid
        for pod in core.list_namespaced_pod(namespace).items
        if pod.metadata.deletion_timestamp is None
        and any(ref.controller and ref.uid == owner_uid for ref in pod.metadata.owner_references or [])
    }


def test_without_lag_a_replicaset_created_right_after_its_pods_adopts_them(
    simulator: SimulatorThread,
    cluster: SimulatedCluster,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    admin: SimAdmin,
    namespace: str,
) -> None:
    assert admin.informer_lag() == {"seconds": 0.0, "pending_events": 0}
    originals = _running_pods(core, namespace, "web", 2)
    rs = apps.create_namespaced_replica_set(namespace, _replicaset("web", 2))

    wait_until(lambda: _owned_by(core, namespace, rs.metadata.uid) == originals, what="adoption")
    simulator.settle(cluster, quiet_for=0.2)
    assert _reasons(core, namespace, "SuccessfulCreate") == []
    assert _owned_by(core, namespace, rs.metadata.uid) == originals


def test_a_replicaset_created_within_the_lag_creates_pods_then_deletes_the_surplus(
    simulator: SimulatorThread,
    cluster: SimulatedCluster,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    admin: SimAdmin,
    namespace: str,
) -> None:
    admin.set_informer_lag(LAG)
    originals = _running_pods(core, namespace, "web", 2)
    rs = apps.create_namespaced_replica_set(namespace, _replicaset("web", 2))

    created = wait_until(
        lambda: _reasons(core, namespace, "SuccessfulCreate"), timeout=LAG, what="pods of its own"
    )
    assert len(created) == 2
    assert not originals.keys() & _owned_by(core, namespace, rs.metadata.uid).keys(), "not seen yet"

    deleted = wait_until(
        lambda: (
            len(_reasons(core, namespace, "SuccessfulDelete")) == 2
            and _reasons(core, namespace, "SuccessfulDelete")
        ),
        timeout=5 * LAG,
        what="the surplus deleted",
    )
    simulator.settle(cluster, quiet_for=0.2)
    own_pods = {message.removeprefix("Created pod: ") for message in created}
    assert {message.removeprefix("Deleted pod: ") for message in deleted} == own_pods
    assert _owned_by(core, namespace, rs.metadata.uid) == originals
    assert len(_reasons(core, namespace, "SuccessfulCreate")) == 2, "no storm while the cache lagged"
    assert apps.read_namespaced_replica_set(namespace=namespace, name="web").status.replicas == 2


def test_waiting_longer_than_the_lag_before_creating_the_replicaset_creates_nothing(
    simulator: SimulatorThread,
    cluster: SimulatedCluster,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    admin: SimAdmin,
    namespace: str,
) -> None:
    admin.set_informer_lag(0.3)
    originals = _running_pods(core, namespace, "web", 2)
    time.sleep(0.45)
    rs = apps.create_namespaced_replica_set(namespace, _replicaset("web", 2))

    wait_until(lambda: _owned_by(core, namespace, rs.metadata.uid) == originals, what="adoption")
    simulator.settle(cluster, quiet_for=0.2)
    assert _reasons(core, namespace, "SuccessfulCreate") == []
    assert _owned_by(core, namespace, rs.metadata.uid) == originals


def test_pods_become_visible_to_the_controllers_in_the_order_they_were_created(
    core: client.CoreV1Api, apps: client.AppsV1Api, admin: SimAdmin, namespace: str
) -> None:
    """What a barrier relies on: once a pod is seen, every pod written before it is seen too.

    A ReplicaSet of 0 replicas adopts every matching pod as soon as it sees it; the pods are bound to a
    node, so its scale-down leaves them Terminating and their ownerReferences readable. Names run against
    creation order, so an order by name could not pass for the order of writes.
    """
    rs = apps.create_namespaced_replica_set(namespace, _replicaset("web", 0))
    admin.set_informer_lag(0.3)
    names = [f"web-{letter}" for letter in "edcba"]
    for name in names:
        core.create_namespaced_pod(namespace, _pod(name, "web", nodeName="node-1"))
        time.sleep(0.08)

    seen: list[list[str]] = []

    def all_adopted() -> bool:
        adopted = {
            pod.metadata.name
            for pod in core.list_namespaced_pod(namespace).items
            if any(ref.uid == rs.metadata.uid for ref in pod.metadata.owner_references or [])
        }
        seen.append([name for name in names if name in adopted])
        assert adopted == set(seen[-1]), "adopted pods outside the given names"
        return len(adopted) == len(names)

    wait_until(all_adopted, timeout=5, interval=0.01, what="every pod adopted")
    assert all(visible == names[: len(visible)] for visible in seen), seen
    assert any(0 < len(visible) < len(names) for visible in seen), "never saw a partial prefix"


def test_a_statefulset_created_within_the_lag_fails_to_create_its_taken_ordinal_then_adopts_it(
    simulator: SimulatorThread,
    cluster: SimulatedCluster,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    admin: SimAdmin,
    namespace: str,
) -> None:
    """The real controller names pods by ordinal, so it cannot duplicate one: its create meets
    AlreadyExists (a FailedCreate Warning) until its informer shows the pod, which it then adopts.
    OnDelete, because the hand-made pod carries no revision label and would otherwise be rolled."""
    admin.set_informer_lag(LAG)
    original = core.create_namespaced_pod(namespace, _pod("db-0", "db", hostname="db-0", subdomain="db"))
    mark_pod_running(core, namespace, "db-0")
    statefulset = apps.create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "updateStrategy": {"type": "OnDelete"},
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
                },
            },
        },
    )

    wait_until(
        lambda: _owned_by(core, namespace, statefulset.metadata.uid) == {"db-0": original.metadata.uid},
        timeout=5 * LAG,
        what="db-0 adopted",
    )
    simulator.settle(cluster, quiet_for=0.2)
    failures = _reasons(core, namespace, "FailedCreate")
    assert failures and all('pods "db-0" already exists' in message for message in failures)
    assert _reasons(core, namespace, "SuccessfulCreate") == []


def test_the_lag_is_set_by_constructor_shown_in_the_request_log_and_caught_up_when_reset(
    simulator: SimulatorThread,
) -> None:
    lagged = simulator.start_cluster(SimulatedCluster("lagged", informer_lag_ms=5_000))
    try:
        admin = SimAdmin(lagged.url)
        with api_client(lagged.url) as api:
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": "slow"}})
            assert admin.informer_lag()["seconds"] == 5.0
            assert admin.informer_lag()["pending_events"] > 0
            assert admin.stats()["informer_lag_ms"] == 5_000
            assert {entry["informer_lag_ms"] for entry in admin.requests()} == {5_000}

            admin.set_informer_lag(0)
            assert admin.informer_lag() == {"seconds": 0.0, "pending_events": 0}
            core.list_namespace()
            assert admin.requests()[-1]["informer_lag_ms"] == 0
    finally:
        simulator.run(lagged.stop())
        simulator.clusters.remove(lagged)


@pytest.fixture(autouse=True)
def _no_lag_left(admin: SimAdmin) -> Iterator[None]:
    """The cluster is the test's own, but a lag left behind would slow its teardown's settle."""
    yield
    admin.set_informer_lag(0)
