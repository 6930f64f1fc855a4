"""The PromotePolicy models against the user's document and against the CRD the API server enforces.

The agreement test is the point of this file: the CRD and the models are written by hand, and a
field present in one but not the other means either the API server prunes what we write or we
reject what users send.
"""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from shared.models import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    NamespacePhase,
    NamespaceStatus,
    PolicyPhase,
    PromotePolicy,
    PromotePolicySpec,
    PromotePolicyStatus,
)
from shared.models.policy import spec_problems

REPO = Path(__file__).resolve().parents[2]
POLICY_CRD = REPO / "shared" / "crds" / "promotepolicies.kosmos.io.yaml"
DEPLOYED_POLICY_CRD = REPO / "deploy" / "crds" / "promotepolicies.kosmos.io.yaml"

# The two examples of the user's document (application-migration), re-indented: the document
# lost the indentation under `metadata`.
SEED_PROMOTE = """
apiVersion: kosmos.io/v1alpha1
kind: PromotePolicy
metadata:
  name: promote-policy-sample
spec:
  includedNamespaces:
    - namespace1
    - namespace2
  excludedNamespaceScopedResources:
    - events
    - events.events.k8s.io
    - endpoints
    - endpointslices.discovery.k8s.io
  clusterName: member-cluster1
"""
SEED_ROLLBACK = """
apiVersion: kosmos.io/v1alpha1
kind: PromotePolicy
metadata:
  name: promote-policy-sample
spec:
  rollback: "true"
  includedNamespaces:
    - namespace1
    - namespace2
  excludedNamespaceScopedResources:
    - events
    - events.events.k8s.io
    - endpoints
    - endpointslices.discovery.k8s.io
  clusterName: member-cluster1
"""
SEED_EXCLUDED_RESOURCES = ["events", "events.events.k8s.io", "endpoints", "endpointslices.discovery.k8s.io"]


def _load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return yaml.safe_load(f)


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version


def _minimal_spec(**extra: Any) -> dict[str, Any]:
    return {"clusterName": "member-cluster1", **extra}


# --- the user's document -------------------------------------------------------------------------


def test_seed_promote_example_parses() -> None:
    policy = PromotePolicy.from_api(yaml.safe_load(SEED_PROMOTE))

    assert policy.metadata["name"] == "promote-policy-sample"
    assert policy.spec.cluster_name == "member-cluster1"
    assert policy.spec.included_namespaces == ["namespace1", "namespace2"]
    assert policy.spec.excluded_namespace_scoped_resources == SEED_EXCLUDED_RESOURCES
    assert policy.spec.excluded_namespaces == []
    assert policy.spec.included_namespace_scoped_resources == []
    assert not policy.spec.rollback_requested
    assert policy.status is None


def test_seed_rollback_example_parses() -> None:
    policy = PromotePolicy.from_api(yaml.safe_load(SEED_ROLLBACK))

    assert policy.spec.rollback == "true"
    assert policy.spec.rollback_requested
    assert policy.spec.included_namespaces == ["namespace1", "namespace2"]
    assert policy.spec.excluded_namespace_scoped_resources == SEED_EXCLUDED_RESOURCES


def test_round_trip_keeps_the_users_object() -> None:
    raw = yaml.safe_load(SEED_ROLLBACK)
    dumped = PromotePolicy.from_api(raw).to_api()

    assert dumped["spec"] == {
        **raw["spec"],
        "excludedNamespaces": [],
        "includedNamespaceScopedResources": [],
        "allowWildcardRoles": False,
    }
    assert dumped["metadata"] == raw["metadata"]
    assert "status" not in dumped


# --- rollback ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "requested"),
    [
        ("true", True),
        (None, False),
        ("false", False),
        ("True", False),
        ("TRUE", False),
        ("yes", False),
        ("", False),
    ],
)
def test_only_the_exact_string_true_requests_rollback(value: str | None, requested: bool) -> None:
    assert PromotePolicySpec.model_validate(_minimal_spec(rollback=value)).rollback_requested is requested


def test_rollback_must_be_a_string_as_in_kosmos() -> None:
    """`rollback: true` unquoted is a YAML boolean; the API server would reject it, so must we."""
    with pytest.raises(ValidationError) as excinfo:
        PromotePolicySpec.model_validate(_minimal_spec(rollback=True))
    assert excinfo.value.errors()[0]["loc"] == ("rollback",)


# --- validation errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typo", ["includeNamespaces", "clustername", "excludedNamespacedResources", "rollBack"]
)
def test_unknown_spec_field_is_an_error_naming_it(typo: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        PromotePolicySpec.model_validate(_minimal_spec(**{typo: ["x"]}))
    (error,) = excinfo.value.errors()
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == (typo,)


@pytest.mark.parametrize(
    "spec", [{}, {"includedNamespaces": ["a"]}, {"clusterName": None}, {"clusterName": ""}]
)
def test_missing_or_empty_cluster_name_is_an_error_naming_it(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        PromotePolicy.from_api({"metadata": {"name": "p"}, "spec": spec})
    assert [error["loc"] for error in excinfo.value.errors()] == [("spec", "clusterName")]


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        PromotePolicy.from_api(
            {"apiVersion": "kosmos.io/v1alpha1", "kind": "Cluster", "spec": _minimal_spec()}
        )
    assert [error["loc"] for error in excinfo.value.errors()] == [("kind",)]


def test_null_lists_read_as_empty() -> None:
    fields = [
        "includedNamespaces",
        "excludedNamespaces",
        "includedNamespaceScopedResources",
        "excludedNamespaceScopedResources",
    ]
    dumped = PromotePolicySpec.model_validate(_minimal_spec(**dict.fromkeys(fields))).model_dump(
        by_alias=True
    )
    assert {field: dumped[field] for field in fields} == {field: [] for field in fields}


def test_python_names_are_accepted_too() -> None:
    spec = PromotePolicySpec(cluster_name="c", included_namespaces=["a"])
    assert spec.model_dump(by_alias=True, exclude_none=True)["includedNamespaces"] == ["a"]


# --- status --------------------------------------------------------------------------------------


def test_status_times_are_rfc3339_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    status = PromotePolicyStatus(
        phase=PolicyPhase.RUNNING,
        start_time=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=plus_two),
        completion_time=datetime(2024, 5, 1, 11, 30, 0),
        namespaces=[NamespaceStatus(name="ns1", phase=NamespacePhase.BACKING_UP, step="backup")],
    )
    policy = PromotePolicy(metadata={"name": "p"}, spec=PromotePolicySpec(cluster_name="c"), status=status)

    dumped = policy.to_api()["status"]
    assert dumped["startTime"] == "2024-05-01T10:00:00Z"
    assert dumped["completionTime"] == "2024-05-01T11:30:00Z", "naive times are UTC, not local time"
    assert dumped["namespaces"][0] == {
        "name": "ns1",
        "phase": "BackingUp",
        "step": "backup",
        "counts": {"backedUp": 0, "detached": 0, "rebuilt": 0, "skipped": 0},
        "skipped": [],
    }
    reread = PromotePolicy.from_api(policy.to_api()).status
    assert reread is not None
    assert reread.start_time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_status_from_a_newer_writer_is_still_readable() -> None:
    status = PromotePolicyStatus.model_validate({"phase": "Completed", "fieldFromTheFuture": 1})
    assert status.phase is PolicyPhase.COMPLETED


# --- the CRD -------------------------------------------------------------------------------------


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Strip what pydantic adds around a type: `$ref` into `$defs`, and `anyOf` with null for an
    optional field (absent and null are the same to the API server, which prunes nulls)."""
    if "$ref" in node:
        return _resolve(defs[node["$ref"].removeprefix("#/$defs/")], defs)
    if "anyOf" in node:
        (branch,) = [branch for branch in node["anyOf"] if branch.get("type") != "null"]
        return _resolve(branch, defs)
    return node


def _assert_agree(crd: dict[str, Any], model: dict[str, Any], defs: dict[str, Any], path: str) -> None:
    model = _resolve(model, defs)
    assert "type" in crd, f"{path}: a structural CRD schema needs a type at every level"
    if crd.get("x-kubernetes-preserve-unknown-fields"):
        # Only the spec keeps unknown fields, so that the API server does not prune a typo before the
        # watcher's model, which forbids unknown fields, can name it.
        assert path == "spec" and model.get("additionalProperties") is False, f"{path}: must be fully typed"
    for key in ("type", "format", "minLength", "minimum"):
        assert crd.get(key) == model.get(key), (
            f"{path}: {key} is {crd.get(key)!r} in the CRD, {model.get(key)!r} in the model"
        )
    assert sorted(crd.get("enum", [])) == sorted(model.get("enum", [])), f"{path}: enum values differ"
    if crd["type"] == "object":
        crd_properties, model_properties = crd.get("properties", {}), model.get("properties", {})
        assert set(crd_properties) == set(model_properties), f"{path}: properties differ"
        assert set(crd.get("required", [])) == set(model.get("required", [])), f"{path}: required differs"
        for name, crd_property in crd_properties.items():
            _assert_agree(crd_property, model_properties[name], defs, f"{path}.{name}")
    if crd["type"] == "array":
        _assert_agree(crd["items"], model["items"], defs, f"{path}[]")


def test_crd_schema_and_models_agree_at_every_level() -> None:
    crd_schema = _version(_load(POLICY_CRD))["schema"]["openAPIV3Schema"]
    model_schema = PromotePolicy.model_json_schema(by_alias=True)
    defs = model_schema.get("$defs", {})

    assert set(crd_schema["properties"]) == set(model_schema["properties"])
    for part in ("spec", "status"):
        _assert_agree(crd_schema["properties"][part], model_schema["properties"][part], defs, part)


def test_comparer_notices_a_field_missing_from_the_crd() -> None:
    crd_spec = _version(_load(POLICY_CRD))["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del crd_spec["properties"]["rollback"]
    model_schema = PromotePolicySpec.model_json_schema(by_alias=True)
    with pytest.raises(AssertionError, match="properties differ"):
        _assert_agree(crd_spec, model_schema, model_schema.get("$defs", {}), "spec")


def test_deployed_crd_is_the_shared_one() -> None:
    assert DEPLOYED_POLICY_CRD.read_bytes() == POLICY_CRD.read_bytes()


def test_crd_names_match_the_model() -> None:
    crd = _load(POLICY_CRD)
    assert crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["names"] == {
        "kind": KIND,
        "listKind": f"{KIND}List",
        "plural": PLURAL,
        "singular": "promotepolicy",
        "shortNames": ["pp"],
    }
    assert _version(crd)["name"] == VERSION
    assert (
        PromotePolicy(spec=PromotePolicySpec(cluster_name="c")).to_api()["apiVersion"] == f"{GROUP}/{VERSION}"
    )
    assert PromotePolicy(spec=PromotePolicySpec(cluster_name="c")).to_api()["kind"] == KIND


def test_crd_is_cluster_scoped_with_status_subresource_and_printer_columns() -> None:
    crd = _load(POLICY_CRD)
    version = _version(crd)

    assert crd["spec"]["scope"] == "Cluster"
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert [(c["name"], c["jsonPath"], c["type"]) for c in version["additionalPrinterColumns"]] == [
        ("Cluster", ".spec.clusterName", "string"),
        ("Phase", ".status.phase", "string"),
        ("Done", ".status.namespacesDone", "integer"),
        ("Total", ".status.namespacesTotal", "integer"),
        ("Age", ".metadata.creationTimestamp", "date"),
    ]


def test_spec_problems_name_each_field_and_suggest_the_misspelt_one() -> None:
    with pytest.raises(ValidationError) as caught:
        PromotePolicySpec.model_validate({"clusterName": "", "includeNamespaces": ["a"], "rollbak": "true"})
    problems = spec_problems(caught.value)
    assert 'spec.includeNamespaces: unknown field (did you mean "includedNamespaces"?)' in problems
    assert 'spec.rollbak: unknown field (did you mean "rollback"?)' in problems
    assert any(p.startswith("spec.clusterName: ") for p in problems)
    assert len(problems) == 3
