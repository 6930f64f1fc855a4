"""kubectl against the simulator as against a real cluster: apply with validation, get with printer columns.

The Table format and the OpenAPI documents are what kubectl needs from the server for that; they are
also checked over HTTP with the official client, for the parts kubectl does not show.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubesim import SimulatedCluster
from kubesim.testing import SimAdmin, bind_pod, mark_pod_running, wait_until

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io"
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")


@pytest.fixture
def kubectl(cluster: SimulatedCluster, tmp_path: Path) -> Callable[..., str]:
    config = cluster.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str, stdin: str | None = None, fails: bool = False) -> str:
        """kubectl's stdout, or its stderr when it is expected to fail."""
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode != 0) == fails, done.stderr
        return done.stderr if fails else done.stdout

    return run


def _get(api: client.ApiClient, path: str, accept: str) -> dict[str, Any]:
    """A GET with the client's credentials and connection pool but a chosen Accept header."""
    configuration = api.configuration
    response = api.rest_client.pool_manager.request(
        "GET",
        configuration.host + path,
        headers={"Accept": accept, "Authorization": configuration.get_api_key_with_prefix("authorization")},
    )
    assert response.status == 200, response.data
    return json.loads(response.data)


def _rows(output: str) -> list[list[str]]:
    """kubectl's columns, split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.strip().splitlines()]


@needs_kubectl
def test_kubectl_apply_creates_then_updates_with_validation_on(
    kubectl: Callable[..., str], core: client.CoreV1Api
) -> None:
    namespace = f"ctl-{uuid.uuid4().hex[:8]}"
    manifest = f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {namespace}
data:
  color: blue
"""
    out = kubectl("apply", "-f", "-", stdin=manifest)
    assert f"namespace/{namespace} created" in out and "configmap/settings created" in out

    out = kubectl("apply", "-f", "-", stdin=manifest.replace("blue", "green"))
    assert "configmap/settings configured" in out
    settings = core.read_namespaced_config_map("settings", namespace)
    assert settings.data == {"color": "green"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in settings.metadata.annotations


@needs_kubectl
def test_kubectl_get_shows_a_crds_printer_columns(kubectl: Callable[..., str], api: client.ApiClient) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "promotions.demo.example.com"},
        "spec": {
            "group": "demo.example.com",
            "scope": "Cluster",
            "names": {"plural": "promotions", "singular": "promotion", "kind": "Promotion"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                    "additionalPrinterColumns": [
                        {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterName"},
                        {"name": "Done", "type": "integer", "jsonPath": ".status.done"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)
    wait_until(
        lambda: any(
            r.name == "promotions" for r in custom.get_api_resources("demo.example.com", "v1").resources
        )
    )
    kubectl(
        "apply",
        "-f",
        "-",
        stdin="apiVersion: demo.example.com/v1\nkind: Promotion\n"
        "metadata: {name: shop}\nspec: {clusterName: member1}\n",
    )
    custom.patch_cluster_custom_object_status(
        "demo.example.com", "v1", "promotions", "shop", {"status": {"done": 3}}
    )

    header, row = _rows(kubectl("get", "promotions"))
    assert header == ["NAME", "CLUSTER", "DONE", "AGE"]
    assert row[:3] == ["shop", "member1", "3"]


@needs_kubectl
def test_kubectl_get_pods_wide_prints_the_pod_columns(
    kubectl: Callable[..., str], core: client.CoreV1Api
) -> None:
    namespace = f"ctl-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    wait_until(lambda: core.list_namespaced_service_account(namespace).items, what="default ServiceAccount")
    core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
    )
    bind_pod(core, namespace, "web", "worker-1")
    mark_pod_running(core, namespace, "web")

    header, row = _rows(kubectl("get", "pods", "-n", namespace, "-o", "wide"))

    assert header == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert row[:4] == ["web", "1/1", "Running", "0"]
    assert row[5:] == ["10.244.0.10", "worker-1", "<none>", "<none>"]


def test_a_table_is_served_for_lists_and_single_objects(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "settings"}, "data": {"a": "1", "b": "2"}}
    )

    def get(path: str) -> dict[str, Any]:
        return _get(api, path, TABLE)

    listing = get("/api/v1/namespaces/default/configmaps")
    assert (listing["kind"], listing["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in listing["columnDefinitions"]] == ["Name", "Data", "Age"]
    rows = {row["cells"][0]: row for row in listing["rows"]}
    assert rows["settings"]["cells"][1] == 2
    assert rows["settings"]["object"]["kind"] == "PartialObjectMetadata"
    assert "resourceVersion" in listing["metadata"]

    single = get("/api/v1/namespaces/default/configmaps/settings")
    assert [row["cells"][0] for row in single["rows"]] == ["settings"]
    other = get("/apis/storage.k8s.io/v1/storageclasses")
    assert [c["name"] for c in other["columnDefinitions"]] == ["Name", "Created At"]


def test_openapi_documents_name_every_kind_and_the_field_validation_parameter(api: client.ApiClient) -> None:
    def get(path: str) -> dict[str, Any]:
        return _get(api, path, "application/json")

    index = get("/openapi/v3")["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1"} <= set(index)
    url = index["apis/apps/v1"]["serverRelativeURL"]
    document = get(url.split("?")[0])
    deployment = document["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }

    swagger = get("/openapi/v2")
    assert swagger["swagger"] == "2.0" and "io.k8s.api.core.v1.Pod" in swagger["definitions"]


@needs_kubectl
def test_kubectl_apply_of_a_misspelt_custom_resource_is_refused_by_the_schema(
    kubectl: Callable[..., str], api: client.ApiClient, admin: SimAdmin
) -> None:
    """kubectl validates strictly by default, which a CRD's structural schema enforces server-side."""
    spec_schema = {"type": "object", "properties": {"clusterName": {"type": "string"}}}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "moves.demo.example.com"},
        "spec": {
            "group": "demo.example.com",
            "scope": "Cluster",
            "names": {"plural": "moves", "singular": "move", "kind": "Move"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
                }
            ],
        },
    }
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)
    wait_until(
        lambda: any(r.name == "moves" for r in custom.get_api_resources("demo.example.com", "v1").resources)
    )

    error = kubectl(
        "apply",
        "-f",
        "-",
        stdin="apiVersion: demo.example.com/v1\nkind: Move\nmetadata: {name: m}\n"
        "spec: {clusterNmae: member1}\n",
        fails=True,
    )

    assert 'strict decoding error: unknown field "spec.clusterNmae"' in error
