"""The pure parts of the StatefulSet revision check: revision names, the probe and its body."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubesim import SimulatedCluster
from shared.kinds import Context
from shared.kube import Kube
from shared.precheck import version_skew_warnings
from shared.steps.statefulset_revisions import (
    PROBE_LABEL,
    STATEFULSETS,
    probe_body,
    probe_name,
    probe_revision,
    revision_hash,
)
from tests.shared import kinds_builders as b

CTX = Context(cluster="member1", policy="p1", run="run-1")


def test_the_hash_is_read_off_the_owners_revision_name_only() -> None:
    assert revision_hash("db", "db-6dbf99c47") == "6dbf99c47"
    assert revision_hash("db", "dbx-6dbf99c47") == ""
    assert revision_hash("kpromote-probe-0a1b", "kpromote-probe-0a1b-7c9d") == "7c9d"


def test_a_probe_is_one_per_run_namespace_and_statefulset_and_a_valid_name() -> None:
    name = probe_name("run-1", "shop", "db")

    assert name == probe_name("run-1", "shop", "db")
    assert len({name, probe_name("run-2", "shop", "db"), probe_name("run-1", "shop", "cache")}) == 3
    assert name.startswith("kpromote-probe-") and len(name) <= 63


def test_the_probe_is_the_rebuilt_statefulset_renamed_with_no_replicas_and_its_template_untouched() -> None:
    statefulset = b.statefulset()
    before = copy.deepcopy(statefulset)

    body = probe_body(statefulset, "kpromote-probe-x", "kosmos-promote", CTX)

    assert statefulset == before, "the backed-up object is not changed"
    assert body["metadata"]["name"] == "kpromote-probe-x"
    assert body["metadata"]["namespace"] == "kosmos-promote"
    assert body["metadata"]["labels"] == {PROBE_LABEL: "true"}
    assert body["spec"]["replicas"] == 0
    assert body["spec"]["template"] == statefulset["spec"]["template"]
    assert body["spec"]["selector"] == statefulset["spec"]["selector"]


@pytest.mark.parametrize(
    ("member", "control_plane", "warned"),
    [
        ("v1.33.5", "v1.34.1", True),
        ("v1.34.0", "v1.34.3-eks-1", False),
        ("v1.30.0-kubesim", "v1.30.0-kubesim", False),
        ("unknown", "v1.34.1", False),
    ],
)
def test_the_precheck_warns_of_clusters_of_different_minor_versions(
    member: str, control_plane: str, warned: bool
) -> None:
    warnings = version_skew_warnings(member, control_plane)

    assert bool(warnings) is warned
    assert all(member in w and control_plane in w for w in warnings)


def test_two_workers_probing_at_once_get_one_answer_and_leave_no_probe(cluster: SimulatedCluster) -> None:
    """acks_late redelivery runs the backup step twice at once: the same probe name, AlreadyExists for one
    of them, and a probe one deletes while the other still reads it is made again."""
    statefulset = b.statefulset()
    statefulset["spec"]["selector"] = {"matchLabels": statefulset["spec"]["template"]["metadata"]["labels"]}
    body = probe_body(statefulset, probe_name("run-1", "shop", "db"), "default", CTX)
    with Kube.from_kubeconfig(cluster.kubeconfig()) as kube:
        resource = kube.discovery.require(STATEFULSETS)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: probe_revision(kube, resource, body, 10.0), range(2)))
        probes = kube.list(resource, "default", label_selector=f"{PROBE_LABEL}=true")

        assert answers[0] == answers[1] != ""
        assert [p["metadata"]["name"] for p in probes if not p["metadata"].get("deletionTimestamp")] == []
