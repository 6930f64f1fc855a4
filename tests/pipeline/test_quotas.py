"""A control plane whose platform gives every new namespace a ResourceQuota (a policy engine's generate
rule): the rebuild creates into a namespace whose quota promote did not bring. A quota whose status its
controller has not yet written refuses every pod ("status unknown"), which passes by itself; a quota too
small for the namespace refuses for good, and the namespace is rolled back saying which quota."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin
from tests.pipeline.conftest import Installation
from tests.pipeline.snapshots import diff, pod_uids, snapshot


def _quota(pods: str) -> tuple[str, str, dict[str, Any]]:
    return "", "resourcequotas", {"metadata": {"name": "platform-default"}, "spec": {"hard": {"pods": pods}}}


@pytest.fixture
def provisioned(installation: Installation) -> Iterator[Installation]:
    """The control plane's new namespaces get the quota each test sets; none once it is done."""
    yield installation
    installation.control_plane.provision_namespaces([])


def test_a_quota_whose_status_is_not_yet_known_is_waited_out(provisioned: Installation) -> None:
    seeded = seed_namespace(provisioned.member_api, "quota-late-1", full=False)
    provisioned.control_plane.provision_namespaces([_quota("10")])
    control_plane = SimAdmin(provisioned.control_plane.url)
    control_plane.set_informer_lag(1.0)  # the quota controller writes the new quota's status 1 s late
    try:
        provisioned.apply("quota-late", includedNamespaces=["quota-late-1"])
        status = provisioned.wait_done("quota-late")
    finally:
        control_plane.set_informer_lag(0)

    assert status["phase"] == "Completed", status["namespaces"][0]["message"]
    refused = [
        r
        for r in control_plane.requests()
        if (r["verb"], r["resource"], r["namespace"], r["code"]) == ("create", "pods", "quota-late-1", 403)
    ]
    assert refused, "the rebuild met the quota before its status was known, and tried again"
    assert pod_uids(provisioned.member_api, "quota-late-1") == seeded.pods


def test_a_quota_too_small_for_the_namespace_rolls_it_back_naming_the_quota(
    provisioned: Installation,
) -> None:
    seeded = seed_namespace(provisioned.member_api, "quota-small-1", full=False)
    before = snapshot(provisioned.member_api, "quota-small-1")
    provisioned.control_plane.provision_namespaces([_quota("1")])

    provisioned.apply("quota-small", includedNamespaces=["quota-small-1"])
    status = provisioned.wait_done("quota-small", phases=("Failed", "PartiallyFailed", "FailedRollback"))

    [namespace] = status["namespaces"]
    assert namespace["phase"] == "RolledBack", namespace["message"]
    assert "exceeded quota: platform-default" in namespace["message"], namespace["message"]
    assert diff(before, snapshot(provisioned.member_api, "quota-small-1")) == []
    assert pod_uids(provisioned.member_api, "quota-small-1") == seeded.pods
    assert provisioned.link.member_deletions == []
    names = {n.metadata.name for n in client.CoreV1Api(provisioned.cp_api).list_namespace().items}
    assert "quota-small-1" not in names or _terminating(provisioned, "quota-small-1")


def _terminating(installation: Installation, namespace: str) -> bool:
    return bool(client.CoreV1Api(installation.cp_api).read_namespace(namespace).metadata.deletion_timestamp)


def test_a_quota_scoped_to_other_pods_does_not_stand_in_the_way(provisioned: Installation) -> None:
    """A platform's quota that keeps a namespace's pods out of a priority class (`pods: 0` for the
    critical classes) covers only pods of that class: the namespace's other pods are rebuilt under it."""
    seeded = seed_namespace(provisioned.member_api, "quota-scoped-1", full=False)
    critical_only = {
        "metadata": {"name": "no-critical-pods"},
        "spec": {
            "hard": {"pods": "0"},
            "scopeSelector": {
                "matchExpressions": [
                    {"scopeName": "PriorityClass", "operator": "In", "values": ["system-cluster-critical"]}
                ]
            },
        },
    }
    provisioned.control_plane.provision_namespaces([("", "resourcequotas", critical_only)])

    provisioned.apply("quota-scoped", includedNamespaces=["quota-scoped-1"])
    status = provisioned.wait_done("quota-scoped")

    assert status["phase"] == "Completed", status["namespaces"][0]["message"]
    assert pod_uids(provisioned.member_api, "quota-scoped-1") == seeded.pods
    rebuilt = client.CoreV1Api(provisioned.cp_api).list_namespaced_pod("quota-scoped-1").items
    assert {pod.metadata.name for pod in rebuilt} == set(seeded.pods)
