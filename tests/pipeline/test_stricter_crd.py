"""A control plane that already has a custom resource's CRD, with a stricter schema than the member's.

The rebuild finds the CRD there with different content: a conflict, reported and left untouched. The
custom resource itself is then refused with 422 by the control plane's schema (the member's object breaks
a `maximum` the member never had), so the namespace is compensated: rolled back, the member exactly as
it was, the pre-existing CRD as it was, and the namespace's message naming the refusal.

The seed's Widget CRD is shared by every namespace of the session's installation, so the stricter CRD is
for a kind of this test's own (`gadgets.strict.example.com`), added to a fully seeded namespace.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin, crd_body, wait_until
from tests.pipeline.conftest import Installation
from tests.pipeline.snapshots import diff, pod_uids, snapshot

NAMESPACE = "strict-crd"
POLICY = "strict-crd"
GROUP, PLURAL, KIND = "strict.example.com", "gadgets", "Gadget"
CRD_NAME = f"{PLURAL}.{GROUP}"
MAXIMUM = 5
SIZE = 12
"""The member's gadget: above the control plane's MAXIMUM, which the member's schemaless CRD allows."""


def _stricter_crd() -> dict[str, Any]:
    """The same CRD as the member's, with a schema: `spec.size` required and at most MAXIMUM."""
    crd = crd_body(GROUP, PLURAL, KIND)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {"size": {"type": "integer", "minimum": 1, "maximum": MAXIMUM}},
            }
        },
    }
    return crd


def _served(api: client.ApiClient) -> bool:
    try:
        resources = client.CustomObjectsApi(api).get_api_resources(GROUP, "v1").resources
    except client.ApiException:
        return False
    return any(r.name == PLURAL for r in resources)


def _custom_objects(api: client.ApiClient) -> dict[str, Any]:
    """The namespace's custom resources as a person would compare them: name, labels, annotations, spec."""
    custom = client.CustomObjectsApi(api)
    found = {}
    for group, plural in ((GROUP, PLURAL), ("example.com", "widgets")):
        for item in custom.list_namespaced_custom_object(group, "v1", NAMESPACE, plural)["items"]:
            metadata = item["metadata"]
            found[f"{plural}/{metadata['name']}"] = {
                "uid": metadata["uid"],
                "labels": metadata.get("labels") or {},
                "annotations": metadata.get("annotations") or {},
                "spec": item.get("spec"),
            }
    return found


def test_a_custom_resource_the_control_planes_stricter_crd_refuses_rolls_the_namespace_back(
    installation: Installation,
) -> None:
    member_crds = client.ApiextensionsV1Api(installation.member_api)
    cp_crds = client.ApiextensionsV1Api(installation.cp_api)
    member_crds.create_custom_resource_definition(crd_body(GROUP, PLURAL, KIND))
    pre_existing = cp_crds.create_custom_resource_definition(_stricter_crd())
    wait_until(lambda: _served(installation.member_api), what=f"{CRD_NAME} served by the member")
    wait_until(lambda: _served(installation.cp_api), what=f"{CRD_NAME} served by the control plane")
    seeded = seed_namespace(installation.member_api, NAMESPACE)
    client.CustomObjectsApi(installation.member_api).create_namespaced_custom_object(
        GROUP,
        "v1",
        NAMESPACE,
        PLURAL,
        {"apiVersion": f"{GROUP}/v1", "kind": KIND, "metadata": {"name": "g1"}, "spec": {"size": SIZE}},
    )
    before = snapshot(installation.member_api, NAMESPACE)
    custom_before = _custom_objects(installation.member_api)
    assert set(custom_before) == {"gadgets/g1", "widgets/w1"}
    pods_before = pod_uids(installation.member_api, NAMESPACE)
    assert pods_before == seeded.pods

    admin = SimAdmin(installation.control_plane.url)
    admin.enforce_crd_schemas()
    try:
        installation.apply(POLICY, includedNamespaces=[NAMESPACE])
        status = installation.wait_done(POLICY)
    finally:
        admin.enforce_crd_schemas(False)

    assert status["phase"] == "Failed", status
    [namespace] = status["namespaces"]
    assert namespace["phase"] == "RolledBack", namespace
    message = namespace["message"]
    assert f'{KIND}.{GROUP} "g1" is invalid' in message, message
    assert f"spec.size in body should be less than or equal to {MAXIMUM}" in message, message
    skipped = {(s["resource"], s["name"]): s["reason"] for s in namespace["skipped"]}
    assert "(conflict)" in skipped[("customresourcedefinitions.apiextensions.k8s.io", CRD_NAME)]
    # Every create of the gadget the control plane saw was refused by its schema, none by a fault.
    creates = [
        (r["code"], r["fault"])
        for r in admin.requests()
        if (r["verb"], r["group"], r["resource"], r["namespace"]) == ("create", GROUP, PLURAL, NAMESPACE)
    ]
    assert creates and all(entry == (422, None) for entry in creates), creates
    assert (
        client.CustomObjectsApi(installation.cp_api).list_cluster_custom_object(GROUP, "v1", PLURAL)["items"]
        == []
    )

    # The member exactly as it was: every object, no pod deleted or re-created, the custom resources too.
    assert diff(before, snapshot(installation.member_api, NAMESPACE)) == []
    assert pod_uids(installation.member_api, NAMESPACE) == pods_before
    assert _custom_objects(installation.member_api) == custom_before
    assert installation.link.member_deletions == []

    # The control plane's CRD was there first: neither deleted nor changed, its schema as strict as before.
    crd = cp_crds.read_custom_resource_definition(CRD_NAME)
    assert crd.metadata.uid == pre_existing.metadata.uid
    assert crd.metadata.annotations == pre_existing.metadata.annotations
    assert crd.metadata.labels == pre_existing.metadata.labels
    schema = installation.cp_api.sanitize_for_serialization(crd.spec.versions[0].schema)
    assert schema == _stricter_crd()["spec"]["versions"][0]["schema"]
    cp_core = client.CoreV1Api(installation.cp_api)
    wait_until(
        lambda: NAMESPACE not in {n.metadata.name for n in cp_core.list_namespace().items},
        what="the control-plane namespace to be gone",
    )
