"""After a namespace completed, a GitOps tool puts its Deployment back in the member: the member's
ReplicaSet adopts the running pods, and both clusters manage them. The watcher says so on the policy (a
condition and a Warning Event) and says so again once the owners are gone; it deletes nothing itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubesim import SimulatorThread
from kubesim.seed import seed_namespace
from kubesim.testing import wait_until
from tests.pipeline.conftest import Installation, start_installation
from tests.pipeline.snapshots import deployment_as_in_git, pod_uids


@pytest.fixture(scope="module")
def watching(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    """An installation whose watcher looks at completed namespaces every second."""
    workdir = tmp_path_factory.mktemp("aftercare")
    extra = {"KPROMOTE_COMPLETED_CHECK_INTERVAL": "1"}
    with start_installation(simulator, redis_url, workdir, extra_env=extra) as installation:
        yield installation


def _condition(installation: Installation, policy: str) -> dict[str, Any] | None:
    conditions = installation.status(policy).get("conditions") or []
    return next((c for c in conditions if c["type"] == "ControlledInMember"), None)


def _events(installation: Installation, policy: str) -> list[client.CoreV1Event]:
    events = client.CoreV1Api(installation.cp_api).list_event_for_all_namespaces().items
    return [
        e
        for e in events
        if e.involved_object.name == policy and e.reason in ("ControlledInMember", "NoMemberController")
    ]


def test_an_owner_put_back_in_the_member_after_completion_is_reported_until_it_is_gone(
    watching: Installation,
) -> None:
    seeded = seed_namespace(watching.member_api, "aftercare-1", full=False)
    apps = client.AppsV1Api(watching.member_api)
    as_in_git = deployment_as_in_git(watching.member_api, "aftercare-1")
    watching.apply("aftercare", includedNamespaces=["aftercare-1"])
    assert watching.wait_done("aftercare")["phase"] == "Completed"
    wait_until(lambda: watching.status("aftercare").get("conditions"), what="the run's conditions")
    assert _condition(watching, "aftercare") is None, "nothing to say while the member has no controller"

    apps.create_namespaced_deployment("aftercare-1", as_in_git)  # the GitOps tool syncs the namespace

    controlled = wait_until(
        lambda: (c := _condition(watching, "aftercare")) and c["status"] == "True" and c,
        timeout=30,
        what="the watcher to report the member's controller",
    )
    for pod in seeded.pods:
        assert f"aftercare-1/{pod} by ReplicaSet" in controlled["message"], controlled
    assert "--cascade=orphan" in controlled["message"]
    wait_until(
        lambda: [e.type for e in _events(watching, "aftercare")] == ["Warning"], what="a Warning Event"
    )
    assert pod_uids(watching.member_api, "aftercare-1") == seeded.pods, "reported, nothing deleted"

    # Mended as the message says: the owners go, their pods stay.
    orphan = client.V1DeleteOptions(propagation_policy="Orphan")
    apps.delete_namespaced_deployment(as_in_git["metadata"]["name"], "aftercare-1", body=orphan)
    for replica_set in apps.list_namespaced_replica_set("aftercare-1").items:
        apps.delete_namespaced_replica_set(replica_set.metadata.name, "aftercare-1", body=orphan)

    wait_until(
        lambda: (c := _condition(watching, "aftercare")) and c["status"] == "False",
        timeout=30,
        what="the watcher to see the member's controller gone",
    )
    wait_until(
        lambda: sorted(e.type for e in _events(watching, "aftercare")) == ["Normal", "Warning"],
        what="a Normal Event saying so (kopf posts Events in the background)",
    )
    assert pod_uids(watching.member_api, "aftercare-1") == seeded.pods
