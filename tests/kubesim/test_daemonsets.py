"""The DaemonSet controller over HTTP: a pod per eligible Node, pinned by affinity, and its revision."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from kubesim.seed import node_body
from kubesim.testing import bind_pod, mark_pod_running, wait_until


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    name = f"ds-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_until(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        what=f"the default ServiceAccount of {name}",
    )
    return name


@pytest.fixture
def nodes(core: client.CoreV1Api) -> list[str]:
    """Three workers; the third is tainted NoSchedule for a dedicated team."""
    names = ["worker-1", "worker-2", "worker-3"]
    for index, name in enumerate(names):
        body = node_body(name, index)
        if name == "worker-3":
            body["spec"]["taints"] = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
        core.create_node(body)
    return names


def _daemonset(**pod_spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "fluent-bit:3.0"}], **pod_spec},
            },
        },
    }


def _pods(core: client.CoreV1Api, namespace: str) -> list[client.V1Pod]:
    return [
        pod
        for pod in core.list_namespaced_pod(namespace, label_selector="app=agent").items
        if pod.metadata.deletion_timestamp is None
    ]


def _pinned_node(pod: client.V1Pod) -> str:
    (term,) = (
        pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    )
    (field,) = term.match_fields
    assert (field.key, field.operator) == ("metadata.name", "In")
    (node,) = field.values
    return node


def test_one_pod_per_untainted_node_pinned_by_affinity_with_revision_and_labels(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, nodes: list[str]
) -> None:
    ds = apps.create_namespaced_daemon_set(namespace, _daemonset())
    pods = wait_until(lambda: len(_pods(core, namespace)) == 2 and _pods(core, namespace), what="two pods")

    assert sorted(_pinned_node(pod) for pod in pods) == ["worker-1", "worker-2"]
    (revision,) = apps.list_namespaced_controller_revision(namespace).items
    template_hash = revision.metadata.labels["controller-revision-hash"]
    assert revision.metadata.name == f"agent-{template_hash}"
    assert revision.revision == 1
    assert revision.metadata.owner_references[0].uid == ds.metadata.uid
    assert revision.data["spec"]["template"]["$patch"] == "replace"
    for pod in pods:
        assert pod.metadata.labels == {
            "app": "agent",
            "controller-revision-hash": template_hash,
            "pod-template-generation": "1",
        }
        assert pod.metadata.owner_references[0].kind == "DaemonSet"
        assert pod.spec.node_name is None, "the scheduler binds it, not the controller"
        tolerated = {(t.key, t.effect) for t in pod.spec.tolerations}
        assert ("node.kubernetes.io/not-ready", "NoExecute") in tolerated
        assert ("node.kubernetes.io/unschedulable", "NoSchedule") in tolerated
    daemonset = apps.read_namespaced_daemon_set(namespace=namespace, name="agent")
    assert daemonset.metadata.annotations["deprecated.daemonset.template.generation"] == "1"

    for pod in pods:
        bind_pod(core, namespace, pod.metadata.name, _pinned_node(pod))
        mark_pod_running(core, namespace, pod.metadata.name)
    status = wait_until(
        lambda: (
            (s := apps.read_namespaced_daemon_set_status("agent", namespace).status).number_ready == 2 and s
        ),
        what="both pods ready",
    )
    assert (status.desired_number_scheduled, status.current_number_scheduled, status.number_misscheduled) == (
        2,
        2,
        0,
    )
    assert (status.updated_number_scheduled, status.number_available, status.number_unavailable) == (
        2,
        2,
        None,
    )


def test_a_toleration_a_new_node_and_a_deleted_pod_are_followed(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, nodes: list[str]
) -> None:
    apps.create_namespaced_daemon_set(
        namespace,
        _daemonset(tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]),
    )
    pods = wait_until(lambda: len(_pods(core, namespace)) == 3 and _pods(core, namespace), what="three pods")
    assert sorted(_pinned_node(pod) for pod in pods) == nodes

    core.create_node(node_body("worker-4", 3))
    wait_until(lambda: len(_pods(core, namespace)) == 4, what="a pod for the new node")

    victim = next(pod for pod in _pods(core, namespace) if _pinned_node(pod) == "worker-1")
    core.delete_namespaced_pod(victim.metadata.name, namespace)
    replacement = wait_until(
        lambda: [
            p
            for p in _pods(core, namespace)
            if _pinned_node(p) == "worker-1" and p.metadata.uid != victim.metadata.uid
        ],
        what="a replacement on worker-1",
    )
    assert len(replacement) == 1

    core.delete_node("worker-4")
    wait_until(
        lambda: sorted(_pinned_node(p) for p in _pods(core, namespace)) == nodes, what="worker-4's pod gone"
    )


def test_a_template_change_rolls_pods_to_a_new_revision(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, nodes: list[str]
) -> None:
    apps.create_namespaced_daemon_set(namespace, _daemonset())
    for pod in wait_until(lambda: len(_pods(core, namespace)) == 2 and _pods(core, namespace)):
        mark_pod_running(core, namespace, pod.metadata.name)
    apps.patch_namespaced_daemon_set(
        "agent", namespace, {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
    )

    def rolled() -> list[client.V1Pod] | None:
        pods = _pods(core, namespace)
        for pod in pods:
            if pod.status.phase != "Running":
                mark_pod_running(core, namespace, pod.metadata.name)
        generations = {pod.metadata.labels["pod-template-generation"] for pod in pods}
        return pods if len(pods) == 2 and generations == {"2"} else None

    pods = wait_until(rolled, what="both pods on the new template")
    revisions = apps.list_namespaced_controller_revision(namespace).items
    assert sorted(r.revision for r in revisions) == [1, 2]
    newest = max(revisions, key=lambda r: r.revision)
    assert {pod.metadata.labels["controller-revision-hash"] for pod in pods} == {
        newest.metadata.labels["controller-revision-hash"]
    }
