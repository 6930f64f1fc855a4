"""What a simulated cluster's Kubernetes version changes: the bytes, and so the names, of the revisions
its StatefulSet controller makes of one template (kubernetes/kubernetes#134773)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubesim import SimulatedCluster, SimulatorThread
from kubesim.testing import api_client, wait_until
from kubesim.versions import minor_version, writes_null_template_timestamps


def _statefulset() -> dict[str, Any]:
    labels = {"app": "db"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 0,
            "serviceName": "db",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "db", "image": "postgres:17"}]},
            },
        },
    }


@pytest.fixture
def revision_of(simulator: SimulatorThread) -> Iterator[Any]:
    """The update revision a fresh cluster of a given version names for `_statefulset()`."""
    started: list[SimulatedCluster] = []

    def revision(git_version: str) -> str:
        sim = simulator.start_cluster(SimulatedCluster(f"v{len(started)}", git_version=git_version))
        started.append(sim)
        with api_client(sim.url) as api:
            assert client.VersionApi(api).get_code().git_version == git_version
            apps = client.AppsV1Api(api)
            apps.create_namespaced_stateful_set("default", _statefulset())
            return str(
                wait_until(
                    lambda: apps.read_namespaced_stateful_set("db", "default").status.update_revision,
                    what="the update revision",
                )
            )

    yield revision
    for sim in started:
        simulator.run(sim.stop())
        simulator.clusters.remove(sim)


def test_one_template_is_one_revision_name_within_a_version_and_another_across_1_34(
    revision_of: Any,
) -> None:
    older, same, newer = revision_of("v1.33.2"), revision_of("v1.30.0"), revision_of("v1.34.1-eks-d96d92f")

    assert older == same, "before 1.34 every version writes the same bytes"
    assert newer != older and newer.startswith("db-"), (older, newer)


@pytest.mark.parametrize(
    ("git_version", "minor", "nulls"),
    [("v1.33.9", (1, 33), True), ("v1.34.0", (1, 34), False), ("1.35.1-gke.100", (1, 35), False)],
)
def test_versions_are_read_as_kubernetes_writes_them(
    git_version: str, minor: tuple[int, int], nulls: bool
) -> None:
    assert minor_version(git_version) == minor
    assert writes_null_template_timestamps(git_version) is nulls
