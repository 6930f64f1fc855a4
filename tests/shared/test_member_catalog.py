"""The backup's MemberCatalog: one cluster-wide list per process and run, not one per namespace, and never
a list older than the run (what existed when the run started is its scope)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kubesim import SimulatedCluster
from kubesim.testing import SimAdmin
from shared.kube import Kube
from shared.steps.backup import MemberCatalog


@pytest.fixture
def member(cluster: SimulatedCluster) -> Iterator[Kube]:
    with Kube.from_kubeconfig(cluster.kubeconfig(), name=f"catalog-{time.monotonic_ns()}") as kube:
        yield kube


def _lists(admin: SimAdmin) -> int:
    return sum(
        1
        for entry in admin.requests()
        if entry["verb"] == "list" and entry["resource"] == "clusterrolebindings"
    )


def test_namespaces_of_one_run_share_the_list_of_bindings(member: Kube, admin: SimAdmin) -> None:
    started = time.time()
    admin.clear_requests()
    first = MemberCatalog(member, since=started).cluster_role_bindings()
    assert MemberCatalog(member, since=started).cluster_role_bindings() is first
    assert _lists(admin) == 1


def test_a_run_that_started_after_the_list_lists_again(member: Kube, admin: SimAdmin) -> None:
    MemberCatalog(member, since=time.time()).cluster_role_bindings()
    bindings = member.discovery.resolve("clusterrolebindings")
    member.create(
        bindings,
        {
            "metadata": {"name": "made-after-the-list"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "shop"}],
        },
    )
    admin.clear_requests()
    later = MemberCatalog(member, since=time.time()).cluster_role_bindings()
    assert "made-after-the-list" in {binding["metadata"]["name"] for binding in later}
    assert _lists(admin) == 1
    assert MemberCatalog(member).cluster_role_bindings() is not later, "without a run, always a fresh list"
