"""The seed the pipeline tests and the demo use: pods bound by a scheduler, batch pods by controllers."""

from __future__ import annotations

from kubernetes import client

from kubesim.seed import NODES, seed_cluster_scoped, seed_namespace


def _scheduled(pod: client.V1Pod) -> bool:
    return any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions or [])


def test_with_nodes_and_batch_controllers_every_pod_is_bound_and_made_by_its_controller(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    seed_cluster_scoped(api, nodes=True)
    seeded = seed_namespace(api, "shop", batch_controllers=True)

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


def test_by_default_the_finished_job_pod_is_the_hand_written_one_and_no_node_exists(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    seed_cluster_scoped(api)
    seeded = seed_namespace(api, "shop")

    assert core.list_node().items == []
    job_pods = [name for name in seeded.pods if name.startswith("migrate-once")]
    assert job_pods == ["migrate-once-x7k2p"]
    assert not [name for name in seeded.pods if name.startswith("node-agent")]
    running = [pod for pod in core.list_namespaced_pod("shop").items if pod.status.phase == "Running"]
    assert running and all(pod.spec.node_name in NODES and _scheduled(pod) for pod in running)
