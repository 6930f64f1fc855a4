"""The rollback's delete of its control-plane namespace against a second actor: a redelivered rollback
beside this one may delete the namespace between this one's read and its delete, and kube-apiserver
answers the second DELETE of a terminating namespace with 409. That is done, not a failure; a 409 for a
namespace re-created under the same name (the uid precondition) is still one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubesim import SimulatedCluster
from kubesim.testing import wait_until
from shared.kube import Conflict, Kube
from shared.steps.rollback import _delete

NAMESPACES = "namespaces"


@pytest.fixture
def kube(cluster: SimulatedCluster) -> Iterator[Kube]:
    cluster.set_namespace_deletion_grace(60)  # it stays terminating for the whole test
    with Kube.from_kubeconfig(cluster.kubeconfig()) as kube_:
        yield kube_


def test_a_namespace_another_rollback_deleted_meanwhile_counts_as_deleted(kube: Kube) -> None:
    namespaces = kube.discovery.resolve(NAMESPACES)
    read = kube.create(namespaces, {"metadata": {"name": "shop"}})
    assert kube.delete(namespaces, "", "shop")  # the other rollback, after this one read the namespace

    assert _delete(kube, (NAMESPACES, namespaces, read)) == "namespaces shop"
    assert kube.get(namespaces, "", "shop")["metadata"]["deletionTimestamp"]


def test_a_namespace_re_created_under_the_same_name_is_not_deleted(
    kube: Kube, cluster: SimulatedCluster
) -> None:
    cluster.set_namespace_deletion_grace(0)
    namespaces = kube.discovery.resolve(NAMESPACES)
    read = kube.create(namespaces, {"metadata": {"name": "shop"}})
    kube.delete(namespaces, "", "shop")
    wait_until(lambda: kube.get(namespaces, "", "shop") is None, what="the first namespace to go")
    again = kube.create(namespaces, {"metadata": {"name": "shop"}})

    with pytest.raises(Conflict):
        _delete(kube, (NAMESPACES, namespaces, read))
    now = kube.get(namespaces, "", "shop")
    assert now["metadata"]["uid"] == again["metadata"]["uid"]
    assert not now["metadata"].get("deletionTimestamp")
