"""The size limits of a real control plane: etcd stores no object over 1.5 MiB (a custom resource is
stored as its JSON), and kube-apiserver reads no write body over 3 MiB
(docs/control-plane-traps.md#object-size)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.testing import crd_body, wait_until

GROUP = "big.example.com"
NAMESPACE = "notes"


@pytest.fixture
def custom(api: client.ApiClient) -> Iterator[client.CustomObjectsApi]:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd_body(GROUP, "notes", "Note"))
    objects = client.CustomObjectsApi(api)
    wait_until(lambda: any(r.name == "notes" for r in objects.get_api_resources(GROUP, "v1").resources))
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
    yield objects


def _note(name: str, text: str) -> dict[str, object]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Note", "metadata": {"name": name}, "spec": {"text": text}}


def _refused(call: Callable[[], object]) -> ApiException:
    with pytest.raises(ApiException) as refused:
        call()
    return refused.value


def test_a_custom_resource_over_etcds_limit_is_refused_and_one_under_it_stored(
    custom: client.CustomObjectsApi,
) -> None:
    stored = custom.create_namespaced_custom_object(
        GROUP, "v1", NAMESPACE, "notes", _note("fits", "x" * 1_500_000)
    )
    assert len(stored["spec"]["text"]) == 1_500_000

    refused = _refused(
        lambda: custom.create_namespaced_custom_object(
            GROUP, "v1", NAMESPACE, "notes", _note("too-big", "x" * 1_600_000)
        )
    )

    assert (refused.status, json.loads(refused.body)["message"]) == (500, "etcdserver: request is too large")
    with pytest.raises(ApiException, match="Not Found"):
        custom.get_namespaced_custom_object(GROUP, "v1", NAMESPACE, "notes", "too-big")


def test_a_status_write_that_would_grow_an_object_past_the_limit_leaves_it_as_it_was(
    custom: client.CustomObjectsApi,
) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1", NAMESPACE, "notes", _note("grows", "x" * 1_000_000))
    grown = {"status": {"log": "y" * 600_000}}

    refused = _refused(
        lambda: custom.patch_namespaced_custom_object_status(GROUP, "v1", NAMESPACE, "notes", "grows", grown)
    )

    assert refused.status == 500
    assert "status" not in custom.get_namespaced_custom_object(GROUP, "v1", NAMESPACE, "notes", "grows")


def test_a_write_body_over_three_mib_is_refused_before_it_is_read_as_an_object(
    custom: client.CustomObjectsApi,
) -> None:
    refused = _refused(
        lambda: custom.create_namespaced_custom_object(
            GROUP, "v1", NAMESPACE, "notes", _note("huge", "x" * (3 * 1024 * 1024))
        )
    )

    assert (refused.status, json.loads(refused.body)["message"]) == (
        413,
        "Request entity too large: limit is 3145728",
    )
