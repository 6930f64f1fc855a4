"""A control plane that already has a custom resource's CRD, with a stricter schema than the member's.

The rebuild finds the seed's Widget CRD there with different content: a conflict, reported and left
untouched. The member's widget is then refused with 422 by the control plane's schema (its `spec.size`
breaks a `maximum` the member never had), so the namespace is compensated: rolled back, the member
exactly as it was, the pre-existing CRD as it was, and the namespace's message naming the refusal.

The installation is this module's own: in the session's, the Widget CRD of the control plane belongs to
whichever promotes of other tests created it (and goes with the last one's rollback), so a stricter one
cannot be put there first.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubesim import SimulatorThread
from kubesim.seed import WIDGET_CRD, seed_namespace
from kubesim.testing import SimAdmin, wait_until
from tests.pipeline.conftest import Installation, start_installation
from tests.pipeline.snapshots import diff, pod_uids, snapshot

NAMESPACE = "strict-crd"
POLICY = "strict-crd"
GROUP, PLURAL, KIND = "example.com", "widgets", "Widget"
CRD_NAME = WIDGET_CRD["metadata"]["name"]
MAXIMUM = 2
"""The control plane's bound on `spec.size`, below the seeded widget's (the member's CRD has no schema)."""


@pytest.fixture(scope="module")
def strict(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    with start_installation(simulator, redis_url, tmp_path_factory.mktemp("strict-crd"), workers=1) as ready:
        yield ready


def _stricter_crd() -> dict[str, Any]:
    """The member's Widget CRD with a schema: `spec.size` required, an integer of at most MAXIMUM."""
    crd = copy.deepcopy(WIDGET_CRD)
    crd["spec"]["versions"][0]["schema"] = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {"size": {"type": "integer", "minimum": 1, "maximum": MAXIMUM}},
                }
            },
        }
    }
    return crd


def _served(api: client.ApiClient) -> bool:
    try:
        resources = client.CustomObjectsApi(api).get_api_resources(GROUP, "v1").resources
    except client.ApiException:
        return False
    return any(r.name == PLURAL for r in resources)


def _widgets(api: client.ApiClient) -> dict[str, Any]:
    """The namespace's widgets as a person would compare them (snapshot() covers built-in kinds only)."""
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, "v1", NAMESPACE, PLURAL)[
        "items"
    ]
    return {
        item["metadata"]["name"]: {
            "uid": item["metadata"]["uid"],
            "labels": item["metadata"].get("labels") or {},
            "annotations": item["metadata"].get("annotations") or {},
            "spec": item.get("spec"),
        }
        for item in items
    }


def test_a_custom_resource_the_control_planes_stricter_crd_refuses_rolls_the_namespace_back(
    strict: Installation,
) -> None:
    cp_crds = client.ApiextensionsV1Api(strict.cp_api)
    pre_existing = cp_crds.create_custom_resource_definition(_stricter_crd())
    wait_until(lambda: _served(strict.cp_api), what=f"{CRD_NAME} served by the control plane")
    seeded = seed_namespace(strict.member_api, NAMESPACE)
    before = snapshot(strict.member_api, NAMESPACE)
    widgets_before = _widgets(strict.member_api)
    sizes = {name: widget["spec"]["size"] for name, widget in widgets_before.items()}
    assert sizes and all(size > MAXIMUM for size in sizes.values()), sizes
    pods_before = pod_uids(strict.member_api, NAMESPACE)
    assert pods_before == seeded.pods

    admin = SimAdmin(strict.control_plane.url)
    strict.apply(POLICY, includedNamespaces=[NAMESPACE])
    status = strict.wait_done(POLICY)

    assert status["phase"] == "Failed", status
    [namespace] = status["namespaces"]
    assert namespace["phase"] == "RolledBack", namespace
    message = namespace["message"]
    [name] = sizes
    assert f'{KIND}.{GROUP} "{name}" is invalid' in message, message
    assert f"spec.size in body should be less than or equal to {MAXIMUM}" in message, message
    skipped = {(s["resource"], s["name"]): s["reason"] for s in namespace["skipped"]}
    assert "(conflict)" in skipped[("customresourcedefinitions.apiextensions.k8s.io", CRD_NAME)]
    # Every create of the widget the control plane saw was refused by its schema, none by a fault.
    creates = [
        (r["code"], r["fault"])
        for r in admin.requests()
        if (r["verb"], r["group"], r["resource"], r["namespace"]) == ("create", GROUP, PLURAL, NAMESPACE)
    ]
    assert creates and all(entry == (422, None) for entry in creates), creates
    assert (
        client.CustomObjectsApi(strict.cp_api).list_cluster_custom_object(GROUP, "v1", PLURAL)["items"] == []
    )

    # The member exactly as it was: every object, no pod deleted or re-created, the widget too.
    assert diff(before, snapshot(strict.member_api, NAMESPACE)) == []
    assert pod_uids(strict.member_api, NAMESPACE) == pods_before
    assert _widgets(strict.member_api) == widgets_before
    assert strict.link.member_deletions == []

    # The control plane's CRD was there first: neither deleted nor changed, its schema as strict as before.
    crd = cp_crds.read_custom_resource_definition(CRD_NAME)
    assert crd.metadata.uid == pre_existing.metadata.uid
    assert crd.metadata.annotations == pre_existing.metadata.annotations
    assert crd.metadata.labels == pre_existing.metadata.labels
    schema = strict.cp_api.sanitize_for_serialization(crd.spec.versions[0].schema)
    assert schema == _stricter_crd()["spec"]["versions"][0]["schema"]
    cp_core = client.CoreV1Api(strict.cp_api)
    wait_until(
        lambda: NAMESPACE not in {n.metadata.name for n in cp_core.list_namespace().items},
        what="the control-plane namespace to be gone",
    )
