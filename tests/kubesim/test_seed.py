"""The seed the pipeline tests and the demo use: pods bound by a scheduler, batch pods by controllers."""

from __future__ import annotations

from kubernetes import client

from kubesim.seed import NODES, seed_cluster_scoped, seed_namespace


def _scheduled(pod: client.V1Pod) -> bool:
    return any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions or [])


def test_every_pod_is_bound_to_a_member_node_and_made_by_its_controller(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    seed_cluster_scoped(api)
    seeded = seed_namespace(api, "shop")

    assert sorted(node.metadata.name for node in core.list_node().items) == sorted(NODES)
    pods = core.list_namespaced_pod("shop").items
    assert set(seeded.pods) == {pod.metadata.name for pod in pods}
    assert all(pod.spec.node_name in NODES and _scheduled(pod) for pod in pods)
    owners = {pod.metadata.name: pod.metadata.owner_references[0].kind for pod in pods}
    agents = [pod for pod in pods if owners[pod.metadata.name] == "DaemonSet"]
    assert sorted(pod.spec.node_name for pod in agents) == sorted(NODES)
    assert all(pod.status.phase == "Running" for pod in agents)
    (job_pod,) = [pod for pod in pods if owners[pod.metadata.name] == "Job"]
    assert job_pod.metadata.generate_name == "migrate-once-" and job_pod.status.phase == "Succeeded"
    assert job_pod.metadata.finalizers is None, "the Job controller counted it and released it"
    job = client.BatchV1Api(api).read_namespaced_job_status("migrate-once", "shop")
    assert job.status.succeeded == 1 and [c.type for c in job.status.conditions] == ["Complete"]
