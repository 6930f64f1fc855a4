"""`pods/binding`, as the scheduler uses it, over HTTP with the official client.

kube-apiserver's BindingREST: a Binding sets `spec.nodeName` once, with a `PodScheduled=True`
condition and the Binding's annotations, in one write; binding again is a 409, as is binding a pod
being deleted; an update cannot do what a binding does.
"""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.testing import bind_pod, mark_pod_running, wait_until


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    name = f"bind-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})

    def has_default_account() -> bool:
        return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items)

    wait_until(has_default_account, what=f"the default ServiceAccount of {name}")
    return name


def _pod(core: client.CoreV1Api, namespace: str, name: str = "web") -> client.V1Pod:
    return core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
    )


def _binding(name: str, node: str, **metadata: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, **metadata},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


def _post_binding(core: client.CoreV1Api, namespace: str, name: str, body: dict[str, object]) -> object:
    return core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False)


def _error(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, object]:
    return json.loads(exc.value.body)


def test_binding_sets_node_name_scheduled_condition_and_annotations_in_one_write(
    core: client.CoreV1Api, namespace: str
) -> None:
    created = _pod(core, namespace)
    response = _post_binding(
        core, namespace, "web", _binding("web", "worker-1", annotations={"scheduler": "default"})
    )

    assert response.status == 201
    assert json.loads(response.data) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    pod = core.read_namespaced_pod("web", namespace)
    assert pod.spec.node_name == "worker-1"
    assert pod.metadata.annotations == {"scheduler": "default"}
    (scheduled,) = [c for c in pod.status.conditions if c.type == "PodScheduled"]
    assert scheduled.status == "True" and scheduled.last_transition_time is not None
    assert int(pod.metadata.resource_version) == int(created.metadata.resource_version) + 1


def test_a_bound_pod_cannot_be_bound_again(core: client.CoreV1Api, namespace: str) -> None:
    _pod(core, namespace)
    bind_pod(core, namespace, "web", "worker-1")

    with pytest.raises(ApiException) as exc:
        bind_pod(core, namespace, "web", "worker-2")

    assert exc.value.status == 409
    body = _error(exc)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on pods/binding "web": pod web is already assigned to node "worker-1"'
    )
    assert body["details"] == {"name": "web", "kind": "pods/binding"}
    assert core.read_namespaced_pod("web", namespace).spec.node_name == "worker-1"


def test_the_scheduled_condition_survives_the_kubelet_reporting_the_pod_running(
    core: client.CoreV1Api, namespace: str
) -> None:
    _pod(core, namespace)
    bind_pod(core, namespace, "web", "worker-1")
    mark_pod_running(core, namespace, "web")

    conditions = {c.type: c.status for c in core.read_namespaced_pod("web", namespace).status.conditions}
    assert conditions == {"PodScheduled": "True", "Ready": "True", "ContainersReady": "True"}


def test_binding_refuses_a_pod_being_deleted_a_missing_pod_and_a_binding_without_target(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "going", "finalizers": ["example.com/hold"]},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
        },
    )
    core.delete_namespaced_pod("going", namespace)
    with pytest.raises(ApiException) as going:
        bind_pod(core, namespace, "going", "worker-1")
    assert going.value.status == 409
    assert _error(going)["message"].endswith("pod going is being deleted, cannot be assigned to a host")

    with pytest.raises(ApiException) as missing:
        bind_pod(core, namespace, "absent", "worker-1")
    assert missing.value.status == 404
    assert _error(missing)["message"] == 'pods "absent" not found'

    _pod(core, namespace)
    with pytest.raises(ApiException) as no_target:
        _post_binding(core, namespace, "web", {"kind": "Binding", "metadata": {"name": "web"}, "target": {}})
    body = _error(no_target)
    assert no_target.value.status == 422
    assert body["message"] == 'Binding "web" is invalid: target.name: Required value'
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "target.name"}
    ]

    core.patch_namespaced_pod("going", namespace, {"metadata": {"finalizers": None}})


def test_binding_honours_a_resource_version_precondition(core: client.CoreV1Api, namespace: str) -> None:
    created = _pod(core, namespace)
    core.patch_namespaced_pod("web", namespace, {"metadata": {"labels": {"touched": "yes"}}})

    with pytest.raises(ApiException) as stale:
        _post_binding(
            core,
            namespace,
            "web",
            _binding("web", "worker-1", resourceVersion=created.metadata.resource_version),
        )

    assert stale.value.status == 409
    assert core.read_namespaced_pod("web", namespace).spec.node_name is None


def test_an_update_cannot_set_node_name_and_discovery_lists_the_binding_subresource(
    core: client.CoreV1Api, namespace: str
) -> None:
    _pod(core, namespace)
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_pod("web", namespace, {"spec": {"nodeName": "worker-1"}})
    assert exc.value.status == 422

    resources = {r.name: r for r in core.get_api_resources().resources}
    binding = resources["pods/binding"]
    assert (binding.kind, binding.verbs, binding.namespaced) == ("Binding", ["create"], True)
