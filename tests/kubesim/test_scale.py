"""The scale subresource (`kubectl scale`, the HorizontalPodAutoscaler) of Deployments, ReplicaSets and
StatefulSets: a Scale showing the parent's replicas and selector, whose writes change only its replicas."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.testing import wait_until


def _web(replicas: int) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    name = f"scale-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def test_scaling_a_deployment_changes_its_replicas_and_generation_and_the_controllers_follow(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    created = apps.create_namespaced_deployment(namespace, _web(2))

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=web")
    assert scale.metadata.uid == created.metadata.uid

    answer = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    assert answer.spec.replicas == 3
    scaled = apps.read_namespaced_deployment("web", namespace)
    assert (scaled.spec.replicas, scaled.metadata.generation) == (3, created.metadata.generation + 1)
    assert scaled.spec.template == created.spec.template, "only the replicas change"
    wait_until(lambda: len(core.list_namespaced_pod(namespace).items) == 3, what="a third pod")


def test_a_stale_or_negative_scale_is_refused(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, _web(1))
    stale = apps.read_namespaced_deployment_scale("web", namespace)
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})

    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment_scale("web", namespace, stale)
    assert conflict.value.status == 409

    with pytest.raises(ApiException) as invalid:
        apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": -1}})
    assert invalid.value.status == 422
    assert json.loads(invalid.value.body)["message"] == (
        'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0"
    )
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 2


def test_discovery_names_the_scale_subresources_of_apps(api: client.ApiClient) -> None:
    resources = {r.name: r for r in client.AppsV1Api(api).get_api_resources().resources}

    for name in ("deployments/scale", "replicasets/scale", "statefulsets/scale"):
        assert (resources[name].group, resources[name].version, resources[name].kind) == (
            "autoscaling",
            "v1",
            "Scale",
        )
    assert "daemonsets/scale" not in resources
