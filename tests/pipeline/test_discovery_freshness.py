"""A type that appears in the member after a worker cached its discovery is still promoted.

Workers keep each cluster's discovery between tasks. A CRD created in the member after the first promote
of the session must not be invisible to the next run: each run reloads the member's types once, unless
they were loaded after it started, so its custom resources are backed up and rebuilt like the rest."""

from __future__ import annotations

from kubernetes import client

from kubesim.seed import seed_namespace
from kubesim.testing import crd_body, wait_until
from tests.pipeline.conftest import Installation


def test_a_crd_created_after_an_earlier_promote_is_promoted_by_the_next_run(
    installation: Installation,
) -> None:
    seed_namespace(installation.member_api, "fresh-1", full=False)
    installation.apply("fresh-a", includedNamespaces=["fresh-1"])
    assert installation.wait_done("fresh-a")["phase"] == "Completed"  # every worker has cached the types

    client.ApiextensionsV1Api(installation.member_api).create_custom_resource_definition(
        crd_body("fresh.example.com", "gizmos", "Gizmo")
    )
    member = client.CustomObjectsApi(installation.member_api)

    def served() -> bool:
        try:
            member.list_namespaced_custom_object("fresh.example.com", "v1", "default", "gizmos")
        except client.ApiException:
            return False
        return True

    wait_until(served, what="the member to serve gizmos")
    seed_namespace(installation.member_api, "fresh-2", full=False)
    gizmo = {
        "apiVersion": "fresh.example.com/v1",
        "kind": "Gizmo",
        "metadata": {"name": "g1"},
        "spec": {"size": 3},
    }
    member.create_namespaced_custom_object("fresh.example.com", "v1", "fresh-2", "gizmos", gizmo)

    installation.apply("fresh-b", includedNamespaces=["fresh-2"])
    status = installation.wait_done("fresh-b")
    assert status["phase"] == "Completed", status
    control_plane = client.CustomObjectsApi(installation.cp_api)
    rebuilt = control_plane.list_namespaced_custom_object("fresh.example.com", "v1", "fresh-2", "gizmos")
    assert [g["metadata"]["name"] for g in rebuilt["items"]] == ["g1"]
    assert rebuilt["items"][0]["spec"] == {"size": 3}
