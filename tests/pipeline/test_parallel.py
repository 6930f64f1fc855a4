"""Namespaces are promoted in parallel, within one policy and across policies.

Parallelism is proven from the control plane's request log, not from wall time: the creates that rebuild
different namespaces overlap in time, so no namespace's rebuild waited for another's to finish."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from kubesim.seed import SeededNamespace, seed_namespace
from kubesim.testing import SimAdmin
from tests.pipeline.conftest import Installation

Span = tuple[float, float]
"""Start times of the first and of the last create request in a namespace."""


def _seed(installation: Installation, namespaces: list[str]) -> list[SeededNamespace]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda ns: seed_namespace(installation.member_api, ns, full=False), namespaces))


def _last_seq(admin: SimAdmin) -> int:
    return max((entry["seq"] for entry in admin.requests()), default=0)


def _create_spans(log: Iterable[dict[str, Any]], namespaces: list[str]) -> dict[str, Span]:
    starts: dict[str, list[float]] = {}
    for entry in log:
        if entry["verb"] == "create" and entry["namespace"] in namespaces:
            starts.setdefault(entry["namespace"], []).append(entry["start"])
    return {ns: (min(times), max(times)) for ns, times in starts.items()}


def _most_at_once(spans: dict[str, Span]) -> int:
    """The largest number of namespaces between their first and their last create at one instant."""
    return max(sum(1 for first, last in spans.values() if first <= t < last) for t, _ in spans.values())


def _assert_completed(status: dict[str, Any], namespaces: list[str]) -> None:
    assert status["phase"] == "Completed", status
    assert {ns["name"]: ns["phase"] for ns in status["namespaces"]} == dict.fromkeys(namespaces, "Completed")


def _assert_pods_kept(installation: Installation, seeded: list[SeededNamespace]) -> None:
    member_core = client.CoreV1Api(installation.member_api)
    cp_core = client.CoreV1Api(installation.cp_api)
    for namespace in seeded:
        assert len(namespace.pods) == 2, namespace
        pods = member_core.list_namespaced_pod(namespace.namespace).items
        assert {p.metadata.name: p.metadata.uid for p in pods} == namespace.pods
        assert all(p.metadata.deletion_timestamp is None for p in pods)
        rebuilt = cp_core.list_namespaced_pod(namespace.namespace).items
        assert {p.metadata.name for p in rebuilt} == set(namespace.pods)


def test_twenty_namespaces_of_one_policy_are_promoted_in_parallel(installation: Installation) -> None:
    namespaces = [f"par-{i:02d}" for i in range(20)]
    seeded = _seed(installation, namespaces)
    admin = SimAdmin(installation.control_plane.url)
    mark = _last_seq(admin)

    installation.apply("parallel-twenty", includedNamespaces=namespaces)
    status = installation.wait_done("parallel-twenty", timeout=90)

    _assert_completed(status, namespaces)
    _assert_pods_kept(installation, seeded)
    spans = _create_spans(admin.requests(mark), namespaces)
    assert set(spans) == set(namespaces)
    assert _most_at_once(spans) >= 5, spans


def test_two_policies_applied_at_once_run_in_parallel(installation: Installation) -> None:
    policies = {
        "parallel-left": [f"par-left-{i}" for i in range(4)],
        "parallel-right": [f"par-right-{i}" for i in range(4)],
    }
    seeded = _seed(installation, [ns for namespaces in policies.values() for ns in namespaces])
    admin = SimAdmin(installation.control_plane.url)
    mark = _last_seq(admin)

    for name, namespaces in policies.items():
        installation.apply(name, includedNamespaces=namespaces)
    statuses = {name: installation.wait_done(name, timeout=90) for name in policies}

    for name, namespaces in policies.items():
        _assert_completed(statuses[name], namespaces)
    _assert_pods_kept(installation, seeded)
    log = admin.requests(mark)
    runs: list[Span] = []
    for namespaces in policies.values():
        spans = _create_spans(log, namespaces)
        assert set(spans) == set(namespaces)
        runs.append((min(first for first, _ in spans.values()), max(last for _, last in spans.values())))
    (left_first, left_last), (right_first, right_last) = runs
    assert left_first < right_last and right_first < left_last, runs
