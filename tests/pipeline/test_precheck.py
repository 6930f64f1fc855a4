"""Precheck through the whole installation: a policy that cannot be promoted gets every problem, each in
its own words, in `status.precheckErrors`, and nothing else happens. "Nothing" is checked on the wire:
the simulators' request logs over the whole precheck show no write to the member at all, and none to the
control plane but the policy's own status and kopf's events; and no backup directory is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubesim.testing import SimAdmin
from tests.pipeline.conftest import Installation

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
CONTROL_PLANE_WRITES_ALLOWED = {"promotepolicies", "events"}
"""The watcher writes the policy's status; kopf posts events about it. Nothing else may change."""


def _last_seq(admin: SimAdmin) -> int:
    return max((entry["seq"] for entry in admin.requests()), default=0)


def _writes(log: list[dict[str, Any]], allowed: set[str]) -> list[dict[str, Any]]:
    return [entry for entry in log if entry["verb"] in WRITE_VERBS and entry["resource"] not in allowed]


def fail_precheck(installation: Installation, name: str, **spec: Any) -> list[str]:
    """Apply a policy, expect FailedPrecheck, prove both clusters untouched and no backup; return the
    errors."""
    control_plane = SimAdmin(installation.control_plane.url)
    member = SimAdmin(installation.member.url)
    control_plane_mark, member_mark = _last_seq(control_plane), _last_seq(member)

    installation.apply(name, **spec)
    status = installation.wait_done(name, timeout=30)

    control_plane_log, member_log = control_plane.requests(control_plane_mark), member.requests(member_mark)

    assert status["phase"] == "FailedPrecheck", status
    assert any(
        (entry["verb"], entry["resource"], entry["subresource"], entry["name"])
        == ("patch", "promotepolicies", "status", name)
        for entry in control_plane_log
    ), "the logs must cover the whole precheck, up to the status write"
    assert _writes(member_log, allowed=set()) == []
    assert _writes(control_plane_log, allowed=CONTROL_PLANE_WRITES_ALLOWED) == []
    assert not (Path(installation.env["KPROMOTE_BACKUP_DIR"]) / name).exists()
    assert "namespaces" not in status and "runId" not in status, status
    return status["precheckErrors"]


def _create_namespace(api: client.ApiClient, name: str) -> None:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})


def test_a_namespace_already_in_the_control_plane_fails_precheck(installation: Installation) -> None:
    _create_namespace(installation.member_api, "pre-taken")
    _create_namespace(installation.cp_api, "pre-taken")

    errors = fail_precheck(installation, "pre-taken", includedNamespaces=["pre-taken"])

    assert errors == [
        'namespace "pre-taken" already exists in the control plane; promote moves a namespace that '
        "only the member has"
    ]


def test_a_namespace_missing_in_the_member_fails_precheck(installation: Installation) -> None:
    errors = fail_precheck(installation, "pre-missing", includedNamespaces=["pre-nowhere"])

    assert errors == ['namespace "pre-nowhere" does not exist in the member cluster']


def test_excluded_namespaces_outside_the_included_ones_fail_precheck(installation: Installation) -> None:
    _create_namespace(installation.member_api, "pre-subset")

    errors = fail_precheck(
        installation, "pre-subset", includedNamespaces=["pre-subset"], excludedNamespaces=["pre-other"]
    )

    assert errors == ['excludedNamespaces: "pre-other" is not in includedNamespaces']


def test_a_protected_namespace_fails_precheck(installation: Installation) -> None:
    errors = fail_precheck(installation, "pre-protected", includedNamespaces=["kube-system"])

    assert errors == ['namespace "kube-system" is protected and cannot be promoted']


def test_excluding_every_resource_type_fails_precheck(installation: Installation) -> None:
    _create_namespace(installation.member_api, "pre-exclude-all")

    errors = fail_precheck(
        installation,
        "pre-exclude-all",
        includedNamespaces=["pre-exclude-all"],
        excludedNamespaceScopedResources=["*"],
    )

    assert errors == [
        'excludedNamespaceScopedResources: "*" would exclude everything; list the types to leave out'
    ]


@pytest.mark.parametrize(
    ("field", "typo", "suggestion"),
    [
        ("includedNamespaceScopedResources", "deploymnets", "deployments"),
        ("excludedNamespaceScopedResources", "configmasp", "configmaps"),
    ],
)
def test_an_unknown_resource_type_fails_precheck_with_a_suggestion(
    installation: Installation, field: str, typo: str, suggestion: str
) -> None:
    name = f"pre-unknown-{field.lower()[:8]}"
    _create_namespace(installation.member_api, name)

    errors = fail_precheck(installation, name, includedNamespaces=[name], **{field: [typo]})

    assert len(errors) == 1, errors
    assert errors[0].startswith(f'{field}: unknown resource type "{typo}"'), errors
    assert f'did you mean "{suggestion}' in errors[0], errors


def test_empty_included_namespaces_fail_precheck(installation: Installation) -> None:
    errors = fail_precheck(installation, "pre-empty", includedNamespaces=[])

    assert errors == ['includedNamespaces is empty: list the namespaces to promote (or ["*"] for all)']


def test_an_unknown_cluster_fails_precheck_with_both_problems(installation: Installation) -> None:
    errors = fail_precheck(installation, "pre-cluster", clusterName="member9", includedNamespaces=["shop"])

    assert len(errors) == 2, errors
    assert errors[0].startswith('virtual node "kosmos-member9" not found in the control plane'), errors
    assert errors[1].startswith('cannot reach member cluster "member9": Kosmos cluster "member9" not found')


def test_every_problem_of_a_policy_is_listed_at_once(installation: Installation) -> None:
    _create_namespace(installation.member_api, "pre-many-taken")
    _create_namespace(installation.cp_api, "pre-many-taken")

    errors = fail_precheck(
        installation,
        "pre-many",
        includedNamespaces=["pre-many-taken", "pre-many-nowhere", "kube-system"],
        excludedNamespaces=["pre-many-other"],
        includedNamespaceScopedResources=["deploymnets", "configmaps"],
        excludedNamespaceScopedResources=["*"],
    )

    expected = [
        'excludedNamespaces: "pre-many-other" is not in includedNamespaces',
        'namespace "kube-system" is protected and cannot be promoted',
        'namespace "pre-many-nowhere" does not exist in the member cluster',
        'namespace "pre-many-taken" already exists in the control plane',
        'excludedNamespaceScopedResources: "*" would exclude everything',
        'includedNamespaceScopedResources: unknown resource type "deploymnets"',
    ]
    assert len(errors) == len(expected), errors
    for message in expected:
        assert any(error.startswith(message) for error in errors), (message, errors)


def test_a_typo_in_the_spec_fails_precheck_naming_the_field(installation: Installation) -> None:
    _create_namespace(installation.member_api, "pre-typo")

    errors = fail_precheck(installation, "pre-typo", includeNamespaces=["pre-typo"])

    assert len(errors) == 1, errors
    assert errors == ['spec.includeNamespaces: unknown field (did you mean "includedNamespaces"?)'], errors
