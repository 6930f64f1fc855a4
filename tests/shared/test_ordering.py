"""Rebuild tiers and the other ordering/scope tables."""

from __future__ import annotations

import pytest

from shared.kinds import RULES, Move
from shared.ordering import DEFAULT_EXCLUDED, REBUILD_TIERS, rebuild_tiers, tier_step

CRDS = "customresourcedefinitions.apiextensions.k8s.io"


def names(tiers: list) -> list[tuple[str, list[str]]]:
    return [(tier.name, types) for tier, types in tiers]


def test_tiers_go_bottom_up_as_measured() -> None:
    assert [tier.name for tier in REBUILD_TIERS] == [
        "crds",
        "namespaces",
        "classes",
        "persistentvolumes",
        "persistentvolumeclaims",
        "rbac",
        "config",
        "pods",
        "replicasets",
        "controllers",
        "services",
        "rest",
    ]
    assert all(tier.reason for tier in REBUILD_TIERS)


def test_every_type_is_named_once_and_only_the_last_tier_is_open() -> None:
    named = [gr for tier in REBUILD_TIERS for gr in tier.group_resources]
    assert len(named) == len(set(named))
    assert [tier.name for tier in REBUILD_TIERS if not tier.group_resources] == ["rest"]


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param(
            ["services", "pods", "deployments.apps", "replicasets.apps", "namespaces", "configmaps"],
            [
                ("namespaces", ["namespaces"]),
                ("config", ["configmaps"]),
                ("pods", ["pods"]),
                ("replicasets", ["replicasets.apps"]),
                ("controllers", ["deployments.apps"]),
                ("services", ["services"]),
            ],
            id="only tiers with present types",
        ),
        pytest.param(
            ["persistentvolumeclaims", "persistentvolumes", "storageclasses.storage.k8s.io"],
            [
                ("classes", ["storageclasses.storage.k8s.io"]),
                ("persistentvolumes", ["persistentvolumes"]),
                ("persistentvolumeclaims", ["persistentvolumeclaims"]),
            ],
            id="PV before its claim",
        ),
        pytest.param(
            ["cronjobs.batch", "statefulsets.apps", "deployments.apps", "controllerrevisions.apps"],
            [
                ("replicasets", ["controllerrevisions.apps"]),
                ("controllers", ["deployments.apps", "statefulsets.apps", "cronjobs.batch"]),
            ],
            id="table order within a tier",
        ),
        pytest.param(
            ["widgets.example.com", "ingresses.networking.k8s.io", "pods", CRDS, "daemonsets.apps"],
            [
                ("crds", [CRDS]),
                ("pods", ["pods"]),
                ("rest", ["daemonsets.apps", "ingresses.networking.k8s.io", "widgets.example.com"]),
            ],
            id="unknown types last, sorted",
        ),
    ],
)
def test_rebuild_tiers(present: list[str], expected: list[tuple[str, list[str]]]) -> None:
    assert names(rebuild_tiers(present)) == expected


def test_rebuild_tiers_takes_any_iterable_once_per_type() -> None:
    counts = {"pods": 3, "services": 1}
    assert names(rebuild_tiers(counts)) == [("pods", ["pods"]), ("services", ["services"])]
    assert names(rebuild_tiers(["pods", "pods"])) == [("pods", ["pods"])]


def test_default_excluded_types_would_be_skipped_anyway() -> None:
    for group_resource in DEFAULT_EXCLUDED:
        assert RULES.for_(group_resource).decide({"metadata": {"name": "x"}}).move is Move.SKIP


def test_a_rebuild_step_says_which_tier_of_how_many() -> None:
    present = ["configmaps", "pods", "replicasets.apps", "deployments.apps", "namespaces"]
    tiers = rebuild_tiers(present)
    index = next(i for i, (tier, _) in enumerate(tiers, start=1) if tier.name == "pods")
    assert tier_step(present, "pods") == f"rebuild tier {index}/{len(tiers)} (pods): pods"
    assert tier_step([], "pods") == "rebuild pods"
