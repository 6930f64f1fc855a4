"""Finding 7 of issue 11: neither a policy's input nor its status grows without bound.

A policy naming 2,000 missing namespaces used to get a status with 2,001 errors (168 KB); the precheck now
lists the first 50 and counts the rest, still refusing more than 1,000 namespaces. The CRD bounds what the
API server accepts in the first place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim import SimulatedCluster, SimulatorThread
from shared.kube import Kube
from shared.models import PromotePolicySpec
from shared.precheck import MAX_LISTED, capped, precheck
from shared.selection import MAX_NAMESPACES

REPO = Path(__file__).resolve().parents[2]
CRDS = [
    REPO / "shared" / "crds" / "promotepolicies.kosmos.io.yaml",
    REPO / "deploy" / "crds" / "promotepolicies.kosmos.io.yaml",
]


def test_capped_lists_the_first_fifty_and_counts_the_rest() -> None:
    lines = [f"problem {index}" for index in range(2001)]
    assert capped(lines) == [*lines[:50], "… and 1951 more"]
    assert capped(lines[:50]) == lines[:50]
    assert capped(lines[:51]) == [*lines[:50], "… and 1 more"]
    assert capped([]) == []


@pytest.fixture
def clusters(simulator: SimulatorThread, tmp_path: Path) -> Iterator[tuple[Kube, dict[str, str]]]:
    """A control plane and a member (no Kosmos link needed: the member is named by a local kubeconfig)."""
    control_plane = simulator.start_cluster(SimulatedCluster("control-plane"))
    member = simulator.start_cluster(SimulatedCluster("member1"))
    try:
        with Kube.from_kubeconfig(control_plane.write_kubeconfig(tmp_path / "cp.yaml")) as kube:
            yield kube, {"member1": str(member.write_kubeconfig(tmp_path / "member.yaml"))}
    finally:
        for sim in (control_plane, member):
            simulator.run(sim.stop())
            simulator.clusters.remove(sim)


def test_a_policy_of_two_thousand_missing_namespaces_gets_fifty_errors_and_a_count(
    clusters: tuple[Kube, dict[str, str]],
) -> None:
    control_plane, members = clusters
    spec = PromotePolicySpec(
        cluster_name="member1", included_namespaces=[f"app-{i:04d}" for i in range(2000)]
    )

    result = precheck(control_plane, spec, [], members)

    assert not result.ok
    assert len(result.errors) == MAX_LISTED + 1
    assert result.error_count > 2000
    assert result.errors[-1] == f"… and {result.error_count - MAX_LISTED} more"
    refusal = [e for e in result.errors if f"more than the {MAX_NAMESPACES}" in e]
    assert refusal, "the 1,000-namespace refusal is among the listed problems"
    assert len(json.dumps(result.errors)) < 10_000, "the status stays small"


def _spec_schema(path: Path) -> dict[str, Any]:
    (version,) = yaml.safe_load(path.read_text())["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


@pytest.mark.parametrize("path", CRDS, ids=["shared", "deploy"])
def test_crd_bounds_the_namespace_lists_and_every_string_of_the_spec(path: Path) -> None:
    spec = _spec_schema(path)
    for name in ("includedNamespaces", "excludedNamespaces"):
        assert spec[name]["maxItems"] == MAX_NAMESPACES, name
        assert spec[name]["items"]["maxLength"] == 63, name
    for name, schema in spec.items():
        if schema["type"] == "array":
            assert schema.get("maxItems"), name
            schema = schema["items"]
        if schema["type"] == "string":
            assert schema.get("maxLength"), f"{name} has no maxLength"
