"""Realistic applications for a simulated member cluster, created the way a user would: over the API.

One namespace holds every kind a promote must handle (the scenario of the promote issue): a Deployment
with a rollout history, ClusterIP and headless Services, ConfigMap, Secret, a ServiceAccount bound by a
ClusterRoleBinding, Role/RoleBinding, a PVC bound to a PV with reclaim policy Delete, a StatefulSet with
volumeClaimTemplates and a PriorityClass, a custom resource, a CronJob, a DaemonSet and a finished Job.
Controllers create the pods; the seed plays the scheduler (each pending pod bound through `pods/binding`
to one of the member's Nodes, which exist as Node objects) and the kubelet (`mark_pod_running`, and a
Terminating pod on a node removed once its containers would have stopped) until everything is Ready.
Bodies are written as the YAML a user applies and validated into the typed client's models, as the
client itself does with a dict.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.controllers.daemonsets import target_node
from kubesim.testing import MERGE_PATCH, bind_pod, crd_body, mark_pod_running, required, wait_until

WIDGET_CRD = crd_body("example.com", "widgets", "Widget", short_names=["wd"])
PRIORITY_CLASS = "app-critical"
STORAGE_CLASS = "manual"
NODES = ("worker-1", "worker-2")
"""The member's schedulable nodes; the seed's pods are spread over them."""


@dataclass
class SeededNamespace:
    namespace: str
    pods: dict[str, str] = field(default_factory=dict)
    """Pod name -> UID once everything is running: what must still be there after a promote."""


def _create(call: Any, *args: Any) -> None:
    """Create, tolerating AlreadyExists: shared cluster-scoped objects are seeded once per cluster."""
    try:
        call(*args)
    except ApiException as error:
        if error.status != 409:
            raise


def node_body(name: str, index: int) -> dict[str, Any]:
    """A worker Node as a kubeadm cluster registers it: well-known labels, a pod CIDR."""
    return {
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": f"zone-{'abc'[index % 3]}",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": f"10.244.{index + 1}.0/24", "podCIDRs": [f"10.244.{index + 1}.0/24"]},
    }


def node_status(name: str, index: int) -> dict[str, Any]:
    """What the kubelet reports for a healthy node."""
    now = "2026-01-01T00:00:00Z"
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ]
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        for kind, reason, message in pressure
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    )
    resources = {"cpu": "4", "memory": "16331244Ki", "pods": "110", "ephemeral-storage": "101430960Ki"}
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": f"172.18.0.{index + 2}"},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64",
            "bootID": f"00000000-0000-0000-0000-00000000000{index}",
            "containerRuntimeVersion": "containerd://1.7.13",
            "kernelVersion": "6.1.0-18-amd64",
            "kubeProxyVersion": "v1.30.0",
            "kubeletVersion": "v1.30.0",
            "machineID": f"{index:032x}",
            "operatingSystem": "linux",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "systemUUID": f"00000000-0000-0000-0000-{index:012x}",
        },
    }


def seed_nodes(core: client.CoreV1Api) -> None:
    for index, name in enumerate(NODES):
        try:
            core.create_node(client.V1Node.model_validate(node_body(name, index)))
        except ApiException as error:
            if error.status != 409:
                raise
            continue
        core.patch_node_status(name, {"status": node_status(name, index)}, _content_type=MERGE_PATCH)


def seed_cluster_scoped(api: client.ApiClient) -> None:
    """The member's Nodes (NODES: the DaemonSet controller runs a pod of every seeded DaemonSet on each),
    and the CRD, PriorityClass and StorageClass every seeded namespace uses."""
    seed_nodes(client.CoreV1Api(api))
    _create(client.ApiextensionsV1Api(api).create_custom_resource_definition, WIDGET_CRD)
    _create(
        client.SchedulingV1Api(api).create_priority_class,
        {"metadata": {"name": PRIORITY_CLASS}, "value": 100000, "description": "seeded"},
    )
    _create(
        client.StorageV1Api(api).create_storage_class,
        {
            "metadata": {"name": STORAGE_CLASS},
            "provisioner": "kubernetes.io/no-provisioner",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        },
    )
    wait_until(lambda: _served(api, "example.com", "v1", "widgets"), what="the Widget CRD to be served")


def _served(api: client.ApiClient, group: str, version: str, plural: str) -> bool:
    try:
        resources = client.CustomObjectsApi(api).get_api_resources(group, version)
    except ApiException:
        return False
    return any(r.name == plural for r in resources.resources)


def _pod_template(labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": spec.pop("image", "nginx:1.25"),
        "ports": [{"containerPort": 8080}],
        "env": spec.pop("env", [{"name": "MODE", "value": "blue"}]),
        "volumeMounts": spec.pop("mounts", []),
    }
    return {"metadata": {"labels": labels}, "spec": {"containers": [container], **spec}}


def _pv(name: str, claim_namespace: str, claim_name: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Delete",
        "storageClassName": STORAGE_CLASS,
        "hostPath": {"path": f"/nonexistent/{name}"},
    }
    if claim_name:
        spec["claimRef"] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": claim_namespace,
            "name": claim_name,
        }
    return {"metadata": {"name": name}, "spec": spec}


def seed_namespace(api: client.ApiClient, namespace: str, *, full: bool = True) -> SeededNamespace:
    """Create one application namespace and play kubelet until all its workloads are Ready.

    `full=False` seeds only a Deployment, a Service, a ConfigMap and a Secret (for scale tests). A full
    namespace's finished Job has the pod its controller made (a generated name, the tracking finalizer
    removed on completion), and its DaemonSet a pod on every Node (seed_cluster_scoped creates them).
    """
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace(
        client.V1Namespace.model_validate(
            {
                "metadata": {
                    "name": namespace,
                    "labels": {"team": "shop"},
                    "annotations": {"owner": "platform@example.com"},
                }
            }
        )
    )
    wait_until(
        lambda: _exists(core.read_namespaced_service_account, "default", namespace),
        what=f"the default ServiceAccount of {namespace}",
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap.model_validate(
            {"metadata": {"name": "web-config"}, "data": {"app.properties": "color=blue\n"}}
        ),
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret.model_validate(
            {
                "metadata": {"name": "web-secret"},
                "type": "Opaque",
                "data": {"password": base64.b64encode(b"s3cr3t-" + namespace.encode()).decode()},
            }
        ),
    )
    core.create_namespaced_service(
        namespace,
        client.V1Service.model_validate(
            {
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            }
        ),
    )
    web_volumes = [{"name": "config", "configMap": {"name": "web-config"}}]
    web_mounts = [{"name": "config", "mountPath": "/etc/web"}]
    if full:
        _seed_identity(api, namespace)
        core.create_namespaced_service(
            namespace,
            client.V1Service.model_validate(
                {
                    "metadata": {"name": "web-headless"},
                    "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]},
                }
            ),
        )
        _seed_storage(core, namespace)
        web_volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": "data"}})
        web_mounts.append({"name": "data", "mountPath": "/data"})
    template = _pod_template(
        {"app": "web"},
        volumes=web_volumes,
        mounts=web_mounts,
        serviceAccountName="web" if full else "default",
    )
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment.model_validate(
            {
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template},
            }
        ),
    )
    _run_until(core, namespace, lambda: _deployment_ready(apps, namespace, "web"))
    if full:
        _roll_out(apps, core, namespace)
        _seed_stateful(api, namespace)
        _seed_batch_and_custom(api, namespace)
    return SeededNamespace(namespace, _pod_uids(core, namespace))


def _pod_uids(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    uids = {}
    for pod in core.list_namespaced_pod(namespace).items:
        meta = required(pod.metadata, "pod metadata")
        uids[required(meta.name, "pod name")] = required(meta.uid, "pod uid")
    return uids


def _seed_identity(api: client.ApiClient, namespace: str) -> None:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount.model_validate({"metadata": {"name": "web"}})
    )
    _create(
        rbac.create_cluster_role,
        {
            "metadata": {"name": f"{namespace}-pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
    )
    _create(
        rbac.create_cluster_role_binding,
        {
            "metadata": {"name": f"{namespace}-web-pod-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{namespace}-pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": namespace}],
        },
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role.model_validate(
            {
                "metadata": {"name": "config-reader"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
            }
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding.model_validate(
            {
                "metadata": {"name": "web-config-reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "config-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": namespace}],
            }
        ),
    )


def _seed_storage(core: client.CoreV1Api, namespace: str) -> None:
    core.create_persistent_volume(
        client.V1PersistentVolume.model_validate(_pv(f"pv-{namespace}-data", namespace, None))
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim.model_validate(
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": STORAGE_CLASS,
                    "volumeName": f"pv-{namespace}-data",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ),
    )
    for ordinal in range(2):
        core.create_persistent_volume(
            client.V1PersistentVolume.model_validate(
                _pv(f"pv-{namespace}-db-{ordinal}", namespace, f"data-db-{ordinal}")
            )
        )

    def bound() -> bool:
        status = core.read_namespaced_persistent_volume_claim("data", namespace).status
        return status is not None and status.phase == "Bound"

    wait_until(bound, what=f"PVC {namespace}/data to bind")


def _roll_out(apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str) -> None:
    """A second revision, so the Deployment has a 0-replica history ReplicaSet as real ones do."""
    apps.patch_namespaced_deployment(
        "web",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "app", "env": [{"name": "MODE", "value": "green"}]}]}
                }
            }
        },
        _content_type="application/strategic-merge-patch+json",
    )

    def rolled_out() -> bool:
        sets = apps.list_namespaced_replica_set(namespace, label_selector="app=web").items
        return (
            len(sets) == 2
            and sorted(required(required(rs.spec, "spec").replicas, "spec.replicas") for rs in sets) == [0, 2]
            and _deployment_ready(apps, namespace, "web")
        )

    _run_until(core, namespace, rolled_out)


def _seed_stateful(api: client.ApiClient, namespace: str) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespaced_service(
        namespace,
        client.V1Service.model_validate(
            {
                "metadata": {"name": "db"},
                "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]},
            }
        ),
    )
    template = _pod_template(
        {"app": "db"},
        image="postgres:16",
        priorityClassName=PRIORITY_CLASS,
        mounts=[{"name": "data", "mountPath": "/var/lib/postgresql"}],
    )
    apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet.model_validate(
            {
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 2,
                    "serviceName": "db",
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": template,
                    "volumeClaimTemplates": [
                        {
                            "metadata": {"name": "data"},
                            "spec": {
                                "accessModes": ["ReadWriteOnce"],
                                "storageClassName": STORAGE_CLASS,
                                "resources": {"requests": {"storage": "1Gi"}},
                            },
                        }
                    ],
                },
            }
        ),
    )

    def ready() -> bool:
        status = apps.read_namespaced_stateful_set("db", namespace).status
        return status is not None and (status.ready_replicas or 0) == 2

    _run_until(core, namespace, ready)


def _seed_batch_and_custom(api: client.ApiClient, namespace: str) -> None:
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "example.com",
        "v1",
        namespace,
        "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}},
    )
    batch.create_namespaced_cron_job(
        namespace,
        client.V1CronJob.model_validate(
            {
                "metadata": {"name": "report"},
                "spec": {
                    "schedule": "*/30 * * * *",
                    "jobTemplate": {
                        "spec": {"template": _pod_template({"app": "report"}, restartPolicy="OnFailure")}
                    },
                },
            }
        ),
    )
    apps.create_namespaced_daemon_set(
        namespace,
        client.V1DaemonSet.model_validate(
            {
                "metadata": {"name": "node-agent"},
                "spec": {
                    "selector": {"matchLabels": {"app": "node-agent"}},
                    "template": _pod_template({"app": "node-agent"}),
                },
            }
        ),
    )
    batch.create_namespaced_job(
        namespace,
        client.V1Job.model_validate(
            {
                "metadata": {"name": "migrate-once"},
                "spec": {"template": _pod_template({"app": "migrate"}, restartPolicy="Never")},
            }
        ),
    )
    _run_until(core, namespace, lambda: _batch_done(api, namespace))


def _batch_done(api: client.ApiClient, namespace: str) -> bool:
    """The DaemonSet Ready on every node (once its controller has counted them), and the Job Complete once
    the kubelet reports its pod exited."""
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    for pod in core.list_namespaced_pod(namespace, label_selector="job-name=migrate-once").items:
        if required(pod.status, "pod status").phase == "Running":
            _report_exited(core, namespace, required(required(pod.metadata, "pod metadata").name, "pod name"))
    agent = apps.read_namespaced_daemon_set_status("node-agent", namespace).status
    job = batch.read_namespaced_job_status("migrate-once", namespace).status
    if agent is None or job is None:
        return False
    complete = any(c.type == "Complete" and c.status == "True" for c in job.conditions or [])
    desired = agent.desired_number_scheduled
    return complete and bool(desired) and agent.number_ready == desired


def _report_exited(core: client.CoreV1Api, namespace: str, name: str) -> None:
    """What the kubelet reports when a run-once container exits 0 (PodScheduled kept)."""
    pod = core.read_namespaced_pod(name, namespace)
    scheduled = [
        core.api_client.sanitize_for_serialization(c)
        for c in required(pod.status, "pod status").conditions or []
        if c.type == "PodScheduled"
    ]
    done = [
        {"type": kind, "status": "False", "reason": "PodCompleted"} for kind in ("Ready", "ContainersReady")
    ]
    core.patch_namespaced_pod_status(
        name,
        namespace,
        {
            "status": {
                "phase": "Succeeded",
                "conditions": scheduled + done,
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": 0,
                        "image": "nginx:1.25",
                        "imageID": "",
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    }
                ],
            }
        },
        _content_type=MERGE_PATCH,
    )


def _schedule(core: client.CoreV1Api, namespace: str, name: str, node: str) -> bool:
    """Bind `name` to `node`; False when it went away meanwhile (a controller deleted it)."""
    try:
        bind_pod(core, namespace, name, node)
    except ApiException as error:
        if error.status != 404:
            raise
        return False
    return True


def _delete_now(core: client.CoreV1Api, namespace: str, name: str) -> None:
    try:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise


def _exists(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _deployment_ready(apps: client.AppsV1Api, namespace: str, name: str) -> bool:
    deployment = apps.read_namespaced_deployment(name, namespace)
    status, wanted = deployment.status, required(deployment.spec, "Deployment spec").replicas
    return (
        status is not None
        and (status.ready_replicas or 0) == wanted
        and (status.updated_replicas or 0) == wanted
        and (status.replicas or 0) == wanted
    )


def _run_until(core: client.CoreV1Api, namespace: str, done: Any, timeout: float = 30.0) -> None:
    """Act as the scheduler and the kubelet until `done()` holds: bind every unbound pod to a node (in
    turn), report every pending pod Running and Ready, and remove a Terminating pod from its node
    (the kubelet's final delete with grace period 0, once its containers have stopped)."""

    def step() -> bool:
        for index, pod in enumerate(core.list_namespaced_pod(namespace).items):
            meta, spec = required(pod.metadata, "pod metadata"), required(pod.spec, "pod spec")
            name = required(meta.name, "pod name")
            if meta.deletion_timestamp:
                if spec.node_name:
                    _delete_now(core, namespace, name)
                continue
            node = target_node(core.api_client.sanitize_for_serialization(pod)) or NODES[index % len(NODES)]
            if not spec.node_name and not _schedule(core, namespace, name, node):
                continue
            if required(pod.status, "pod status").phase == "Pending":
                mark_pod_running(core, namespace, name)
        return bool(done())

    wait_until(step, timeout=timeout, interval=0.05, what=f"workloads in {namespace} to be Ready")
