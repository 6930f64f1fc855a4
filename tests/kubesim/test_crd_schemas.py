"""CRD structural schemas enforced on custom resources: pruning, defaults, 422s shaped as the real ones."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.testing import MERGE_PATCH, SimAdmin, crd_body, wait_until

GROUP = "stores.example.com"
SCHEMA = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["replicas"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
                "name": {"type": "string", "minLength": 1, "maxLength": 8},
                "tags": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "port": {"x-kubernetes-int-or-string": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


@dataclass
class Shops:
    """The Shop custom resources of one fresh namespace."""

    custom: client.CustomObjectsApi
    namespace: str

    def create(self, name: str, spec: dict[str, Any], **top: Any) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/v1", "kind": "Shop", "metadata": {"name": name}, "spec": spec, **top}
        return self.custom.create_namespaced_custom_object(GROUP, "v1", self.namespace, "shops", body)


@pytest.fixture
def shops(api: client.ApiClient) -> Shops:
    """Shops: namespaced, with a status subresource and the schema above."""
    crd = crd_body(GROUP, "shops", "Shop")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = SCHEMA
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)
    wait_until(
        lambda: any(r.name == "shops" for r in custom.get_api_resources(GROUP, "v1").resources),
        what="shops served",
    )
    namespace = f"crd-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    return Shops(custom, namespace)


def _refusal(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as exc:
        call()
    assert exc.value.status == 422
    return json.loads(exc.value.body)


def test_unknown_fields_are_pruned_defaults_applied_and_preserved_subtrees_kept(
    shops: Shops,
) -> None:
    created = shops.create(
        "main",
        {
            "replicas": 2,
            "colour": "red",
            "config": {"anything": {"goes": [1, 2]}},
            "port": "http",
            "labels": {"tier": "web"},
            "mode": None,
        },
        junk={"top": "level"},
    )

    assert "junk" not in created
    assert created["spec"] == {
        "replicas": 2,
        "config": {"anything": {"goes": [1, 2]}},
        "port": "http",
        "labels": {"tier": "web"},
        "mode": "safe",
    }
    stored = shops.custom.get_namespaced_custom_object(GROUP, "v1", shops.namespace, "shops", "main")
    assert stored["spec"] == created["spec"]


def test_a_wrong_type_is_refused_with_the_servers_status_body(shops: Shops) -> None:
    body = _refusal(lambda: shops.create("typed", {"replicas": "three"}))

    assert body["reason"] == "Invalid" and body["code"] == 422
    assert body["message"] == (
        'Shop.stores.example.com "typed" is invalid: spec.replicas: Invalid value: "three": '
        'spec.replicas in body must be of type integer: "string"'
    )
    assert body["details"] == {
        "name": "typed",
        "group": GROUP,
        "kind": "Shop",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": 'Invalid value: "three": spec.replicas in body must be of type integer: "string"',
                "field": "spec.replicas",
            }
        ],
    }


def test_required_enum_bounds_lengths_and_item_counts_are_all_reported(shops: Shops) -> None:
    body = _refusal(
        lambda: shops.create(
            "bad", {"mode": "turbo", "name": "much-too-long", "tags": ["a", "b", "c"], "port": 1.5}
        )
    )

    causes = {(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]}
    assert causes == {
        ("spec.replicas", "FieldValueRequired", "Required value"),
        (
            "spec.mode",
            "FieldValueNotSupported",
            'Unsupported value: "turbo": supported values: "fast", "safe"',
        ),
        ("spec.name", "FieldValueTooLong", "Too long: may not be longer than 8"),
        ("spec.tags", "FieldValueTooMany", "Too many: 3: must have at most 2 items"),
        (
            "spec.port",
            "FieldValueInvalid",
            'Invalid value: 1.5: spec.port in body must be of type integer-or-string: "number"',
        ),
    }
    assert body["message"].startswith('Shop.stores.example.com "bad" is invalid: [')

    below = _refusal(lambda: shops.create("low", {"replicas": 0, "name": "", "tags": []}))
    assert {c["message"] for c in below["details"]["causes"]} == {
        "Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        'Invalid value: "": spec.name in body should be at least 1 chars long',
        "Invalid value: []: spec.tags in body should have at least 1 items",
    }
    above = _refusal(lambda: shops.create("high", {"replicas": 11}))
    assert above["details"]["causes"][0]["message"] == (
        "Invalid value: 11: spec.replicas in body should be less than or equal to 10"
    )
    missing_spec = _refusal(
        lambda: shops.custom.create_namespaced_custom_object(
            GROUP,
            "v1",
            shops.namespace,
            "shops",
            {"apiVersion": f"{GROUP}/v1", "kind": "Shop", "metadata": {"name": "x"}},
        )
    )
    assert missing_spec["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec"}
    ]


def test_updates_and_status_writes_are_validated_and_pruned(shops: Shops) -> None:
    shops.create("main", {"replicas": 1})
    custom, namespace = shops.custom, shops.namespace

    refused = _refusal(
        lambda: custom.patch_namespaced_custom_object(
            GROUP, "v1", namespace, "shops", "main", {"spec": {"replicas": 99}}, _content_type=MERGE_PATCH
        )
    )
    assert refused["details"]["causes"][0]["field"] == "spec.replicas"

    status = custom.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, "shops", "main", {"status": {"ready": True, "extra": 1}}
    )
    assert status["status"] == {"ready": True}
    wrong = _refusal(
        lambda: custom.patch_namespaced_custom_object_status(
            GROUP, "v1", namespace, "shops", "main", {"status": {"ready": "yes"}}
        )
    )
    assert wrong["details"]["causes"][0]["field"] == "status.ready"


def test_a_schema_preserving_unknown_fields_keeps_everything(api: client.ApiClient) -> None:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        crd_body("free.example.com", "notes", "Note")
    )
    custom = client.CustomObjectsApi(api)
    wait_until(
        lambda: any(r.name == "notes" for r in custom.get_api_resources("free.example.com", "v1").resources)
    )
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "notes"}})
    body = {
        "apiVersion": "free.example.com/v1",
        "kind": "Note",
        "metadata": {"name": "n"},
        "spec": {"x": [1]},
        "y": 2,
    }

    created = custom.create_namespaced_custom_object("free.example.com", "v1", "notes", "notes", body)

    assert (created["spec"], created["y"]) == ({"x": [1]}, 2)


def test_enforcement_can_be_switched_off(api: client.ApiClient, admin: SimAdmin, shops: Shops) -> None:
    admin.enforce_crd_schemas(False)

    created = shops.create("lax", {"replicas": "three", "colour": "red"})

    assert created["spec"] == {"replicas": "three", "colour": "red"}


def test_unknown_fields_are_refused_under_strict_and_named_in_warnings_by_default(shops: Shops) -> None:
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Shop", "metadata": {"name": "typo"}, "spec": {"replica": 2}}
    with pytest.raises(ApiException) as exc:
        shops.custom.create_namespaced_custom_object(
            GROUP, "v1", shops.namespace, "shops", body, field_validation="Strict"
        )
    assert exc.value.status == 400
    assert json.loads(exc.value.body)["message"] == (
        'Shop in version "v1" cannot be handled as a Shop: '
        'strict decoding error: unknown field "spec.replica"'
    )

    api = shops.custom.api_client
    response = api.rest_client.pool_manager.request(
        "POST",
        f"{api.configuration.host}/apis/{GROUP}/v1/namespaces/{shops.namespace}/shops",
        body=json.dumps(body | {"spec": {"replicas": 1, "colour": "red"}}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": api.configuration.get_api_key_with_prefix("authorization"),
        },
    )
    assert response.status == 201
    assert response.headers.get("Warning") == '299 - "unknown field \\"spec.colour\\""'
    assert json.loads(response.data)["spec"] == {"replicas": 1, "mode": "safe"}
