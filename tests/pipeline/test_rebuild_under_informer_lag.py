"""The control plane's controllers see the rebuild late, as kube-controller-manager's informers do under
load: the rebuild must not let a ReplicaSet start pods of its own meanwhile.

At this lag, a ReplicaSet created right after its pods creates pods of its own (shown first, by hand); a
promote at the same lag must create none at any time, which verify also checks from the Events.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin, mark_pod_running, wait_until
from shared.steps.verify import created_a_pod
from tests.pipeline.conftest import Installation
from tests.pipeline.snapshots import pod_uids

LAG = 0.5


@pytest.fixture
def lagging(installation: Installation) -> Iterator[SimAdmin]:
    admin = SimAdmin(installation.control_plane.url)
    admin.set_informer_lag(LAG)
    try:
        yield admin
    finally:
        admin.set_informer_lag(0)


def _pods_created_by_controllers(api: client.ApiClient, namespace: str) -> list[str]:
    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return [e.message for e in events if created_a_pod(api.sanitize_for_serialization(e))]


def test_at_this_lag_a_replicaset_created_right_after_its_pods_starts_its_own(
    installation: Installation, lagging: SimAdmin
) -> None:
    core, apps = client.CoreV1Api(installation.cp_api), client.AppsV1Api(installation.cp_api)
    core.create_namespace({"metadata": {"name": "lag-raw"}})
    wait_until(lambda: core.list_namespaced_service_account("lag-raw").items, what="the default account")
    template = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    pod = core.create_namespaced_pod(
        "lag-raw", {"metadata": {"name": "web-1", "labels": {"app": "web"}}, "spec": template}
    )
    mark_pod_running(core, "lag-raw", pod.metadata.name)
    apps.create_namespaced_replica_set(
        "lag-raw",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": template},
            },
        },
    )
    created = wait_until(
        lambda: _pods_created_by_controllers(installation.cp_api, "lag-raw"), what="the race"
    )
    assert created and created[0].startswith("Created pod")


def test_a_promote_at_that_lag_lets_no_controller_create_a_pod(
    installation: Installation, lagging: SimAdmin
) -> None:
    seeded = seed_namespace(installation.member_api, "lag-1")
    installation.apply("lag", includedNamespaces=["lag-1"])
    status = installation.wait_done("lag")
    assert status["phase"] == "Completed", status
    assert _pods_created_by_controllers(installation.cp_api, "lag-1") == []
    assert pod_uids(installation.member_api, "lag-1") == seeded.pods
    barrier_logged = [
        line
        for path in installation.workdir.glob("worker-*.log")
        for line in path.read_text().splitlines()
        if "lag-1: the control plane's controllers saw its pods after" in line
    ]
    assert barrier_logged, "the barrier waited for the controllers"
