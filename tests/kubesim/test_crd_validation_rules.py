"""CEL validation rules of CRD schemas (`x-kubernetes-validations`), run by the simulated apiserver as a
real one runs them: transition rules on updates only, ratcheting of unchanged values, the rule's message,
messageExpression, fieldPath and reason in a 422 shaped as the real one."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.testing import MERGE_PATCH, SimAdmin, crd_body, wait_until

GROUP = "rules.example.com"
SPEC_RULES = [
    {"rule": "self.minReplicas <= self.replicas", "message": "replicas may not be below minReplicas"},
    {"rule": "self.size == oldSelf.size", "message": "size is immutable", "fieldPath": ".size"},
    {
        "rule": "!has(self.paused) || !self.paused || self.replicas == 0",
        "messageExpression": "'a paused gadget runs no replicas, not ' + string(self.replicas)",
        "reason": "FieldValueForbidden",
    },
]
SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": SPEC_RULES,
            "properties": {
                "replicas": {"type": "integer"},
                "minReplicas": {"type": "integer", "default": 0},
                "size": {"type": "string"},
                "paused": {"type": "boolean"},
                "name": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "self == self.lowerAscii()"}],
                },
                "owner": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "self.startsWith('team-')"}],
                },
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


@dataclass
class Gadgets:
    custom: client.CustomObjectsApi
    namespace: str

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec}
        return self.custom.create_namespaced_custom_object(GROUP, "v1", self.namespace, "gadgets", body)

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, "v1", self.namespace, "gadgets", name, {"spec": spec}, _content_type=MERGE_PATCH
        )


def _crd(schema: dict[str, Any]) -> dict[str, Any]:
    crd = crd_body(GROUP, "gadgets", "Gadget")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = schema
    return crd


@pytest.fixture
def gadgets(api: client.ApiClient) -> Gadgets:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(_crd(SCHEMA))
    custom = client.CustomObjectsApi(api)
    wait_until(
        lambda: any(r.name == "gadgets" for r in custom.get_api_resources(GROUP, "v1").resources),
        what="gadgets served",
    )
    namespace = f"cel-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    return Gadgets(custom, namespace)


def _refusal(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as exc:
        call()
    assert exc.value.status == 422
    return json.loads(exc.value.body)


def test_a_broken_rule_refuses_the_object_with_its_message_at_its_node(gadgets: Gadgets) -> None:
    body = _refusal(lambda: gadgets.create("low", {"replicas": 1, "minReplicas": 2, "size": "s"}))

    assert body["message"] == (
        'Gadget.rules.example.com "low" is invalid: spec: Invalid value: "object": '
        "replicas may not be below minReplicas"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "object": replicas may not be below minReplicas',
            "field": "spec",
        }
    ]
    with pytest.raises(ApiException) as gone:
        gadgets.custom.get_namespaced_custom_object(GROUP, "v1", gadgets.namespace, "gadgets", "low")
    assert gone.value.status == 404


def test_a_transition_rule_lets_the_create_through_and_refuses_the_change_at_its_field_path(
    gadgets: Gadgets,
) -> None:
    gadgets.create("g1", {"replicas": 1, "size": "small"})

    body = _refusal(lambda: gadgets.patch("g1", {"size": "large"}))
    assert body["message"] == (
        'Gadget.rules.example.com "g1" is invalid: spec.size: Invalid value: "object": size is immutable'
    )
    assert gadgets.patch("g1", {"replicas": 3})["spec"] == {"replicas": 3, "minReplicas": 0, "size": "small"}


def test_message_expression_and_reason_word_the_error(gadgets: Gadgets) -> None:
    body = _refusal(lambda: gadgets.create("p", {"replicas": 2, "size": "s", "paused": True}))

    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: a paused gadget runs no replicas, not 2",
            "field": "spec",
        }
    ]


def test_a_rule_without_message_names_itself_and_scalars_show_their_value(gadgets: Gadgets) -> None:
    body = _refusal(lambda: gadgets.create("o", {"replicas": 0, "size": "s", "owner": "ops"}))

    assert body["message"] == (
        'Gadget.rules.example.com "o" is invalid: spec.owner: Invalid value: "ops": '
        "failed rule: self.startsWith('team-')"
    )


def test_every_broken_rule_is_listed(gadgets: Gadgets) -> None:
    body = _refusal(
        lambda: gadgets.create("two", {"replicas": 1, "minReplicas": 5, "size": "s", "owner": "x"})
    )

    assert [c["field"] for c in body["details"]["causes"]] == ["spec", "spec.owner"]


def test_an_unchanged_value_is_not_judged_again_by_a_rule_added_later(api: client.ApiClient) -> None:
    """Validation ratcheting: an object stored before a rule existed may still be updated elsewhere,
    while the value the rule judges is left as it was."""
    open_schema = json.loads(json.dumps(SCHEMA))
    open_schema["properties"]["spec"]["properties"]["owner"].pop("x-kubernetes-validations")
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(_crd(open_schema))
    custom = client.CustomObjectsApi(api)
    wait_until(
        lambda: any(r.name == "gadgets" for r in custom.get_api_resources(GROUP, "v1").resources),
        what="gadgets served",
    )
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "ratchet"}})
    gadgets = Gadgets(custom, "ratchet")
    gadgets.create("old", {"replicas": 1, "size": "s", "owner": "ops"})

    stored = extensions.read_custom_resource_definition(f"gadgets.{GROUP}")
    crd = _crd(SCHEMA)
    crd["metadata"]["resourceVersion"] = stored.metadata.resource_version
    extensions.replace_custom_resource_definition(f"gadgets.{GROUP}", crd)

    assert gadgets.patch("old", {"replicas": 4})["spec"]["owner"] == "ops"
    body = _refusal(lambda: gadgets.patch("old", {"owner": "dev"}))
    assert body["details"]["causes"][0]["field"] == "spec.owner"


def test_rules_are_not_run_on_an_object_the_schema_already_refused(gadgets: Gadgets) -> None:
    body = _refusal(lambda: gadgets.create("typed", {"replicas": "many", "size": "s"}))

    fields = [c["field"] for c in body["details"]["causes"]]
    assert fields == ["spec.replicas", "<nil>"], body
    assert "some validation rules were not checked" in body["details"]["causes"][1]["message"]


def test_a_rule_calling_a_kubernetes_library_function_is_not_evaluated_and_logged(
    gadgets: Gadgets, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kubesim.cel_rules"):
        created = gadgets.create("lower", {"replicas": 0, "size": "s", "name": "MixedCase"})

    assert created["spec"]["name"] == "MixedCase"
    assert any("lowerAscii" in record.getMessage() for record in caplog.records)


def test_a_server_older_than_1_25_runs_no_rules(gadgets: Gadgets, admin: SimAdmin) -> None:
    admin.enforce_crd_schemas(validation_rules=False)

    created = gadgets.create("any", {"replicas": 1, "minReplicas": 3, "size": "s"})
    assert created["spec"]["minReplicas"] == 3, "the schema still applies defaults and types"
    assert gadgets.patch("any", {"size": "l"})["spec"]["size"] == "l"


def test_a_rule_that_does_not_parse_refuses_its_crd(api: client.ApiClient) -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.a >"}]}

    body = _refusal(lambda: client.ApiextensionsV1Api(api).create_custom_resource_definition(_crd(schema)))

    cause = body["details"]["causes"][0]
    assert cause["field"] == "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule"
    assert 'Invalid value: "self.a >": compilation failed' in cause["message"]
