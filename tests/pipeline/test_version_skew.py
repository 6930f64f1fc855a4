"""A control plane upgraded past its member: Kubernetes 1.34 encodes a pod template's revision other than
1.33 did (kubernetes/kubernetes#134773), so a StatefulSet copied from a 1.33 member into a 1.34 control
plane gets a new revision name there, and its controller would roll every pod of the old one, through
Kosmos in the member too. The promote must find that out before it creates anything.

The installation is this module's own: its clusters play different versions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from kubesim import SimulatorThread
from kubesim.seed import seed_namespace
from tests.pipeline.conftest import Installation, start_installation
from tests.pipeline.snapshots import diff, pod_uids, snapshot

NAMESPACE = "skew-1"


@pytest.fixture(scope="module")
def skewed(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    with start_installation(
        simulator,
        redis_url,
        tmp_path_factory.mktemp("skew"),
        control_plane_version="v1.34.1",
        member_version="v1.33.5",
    ) as ready:
        yield ready


def test_a_statefulset_the_control_plane_would_give_another_revision_fails_the_namespace_untouched(
    skewed: Installation,
) -> None:
    seeded = seed_namespace(skewed.member_api, NAMESPACE)
    before = snapshot(skewed.member_api, NAMESPACE)

    skewed.apply("skew", includedNamespaces=[NAMESPACE])
    status = skewed.wait_done("skew", phases=("Failed", "PartiallyFailed", "FailedRollback"))

    [namespace] = status["namespaces"]
    message = namespace["message"]
    assert namespace["phase"] == "RolledBack", message
    assert "StatefulSet db" in message and "revision" in message, message
    assert "v1.33.5" in message and "v1.34.1" in message, message
    assert any("v1.33.5" in w and "v1.34.1" in w for w in status["precheckWarnings"]), status
    assert pod_uids(skewed.member_api, NAMESPACE) == seeded.pods
    assert diff(before, snapshot(skewed.member_api, NAMESPACE)) == []
    assert skewed.link.member_deletions == []
    assert not client.AppsV1Api(skewed.cp_api).list_stateful_set_for_all_namespaces().items
