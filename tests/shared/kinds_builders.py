"""Small builders of member objects as the API server serves them (Velero's `pkg/builder` in spirit).

Each returns a fresh dict with the member's bookkeeping (uid, resourceVersion, managedFields, status…)
so tests see exactly what a backup holds; keyword arguments change the few fields a case is about.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from kubesim.admission import DEFAULT_TOLERATIONS
from shared.items import Obj

NAMESPACE = "app"


def owner(kind: str, name: str, uid: str | None = None, *, controller: bool = True) -> Obj:
    api_version = {"Job": "batch/v1", "CronJob": "batch/v1", "Widget": "example.com/v1"}.get(kind, "apps/v1")
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid or f"uid-{kind.lower()}-{name}",
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def served(
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None = NAMESPACE,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owners: list[Obj] | None = None,
    extra_metadata: Obj | None = None,
    **body: Any,
) -> Obj:
    """Any object with the metadata a member API server adds; `body` holds its top-level fields."""
    metadata: Obj = {
        "name": name,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{namespace}/{name}")),
        "resourceVersion": "4711",
        "generation": 3,
        "creationTimestamp": "2024-03-11T10:49:07Z",
        "selfLink": f"/fake/{kind}/{name}",
        "managedFields": [
            {"manager": "kubectl-create", "operation": "Update", "fieldsV1": {"f:metadata": {}}}
        ],
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    if owners:
        metadata["ownerReferences"] = owners
    metadata.update(extra_metadata or {})
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **copy.deepcopy(body)}


def pod_spec(tolerations: list[Obj] | None = None, **extra: Any) -> Obj:
    spec: Obj = {
        "containers": [
            {
                "name": "web",
                "image": "nginx:1.25",
                "env": [{"name": "GREETING", "value": "a<b&c>d é ü \u2028 end"}],
                "volumeMounts": [
                    {
                        "name": "kube-api-access-x7k2p",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "readOnly": True,
                    }
                ],
            }
        ],
        "volumes": [
            {
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "defaultMode": 420,
                    "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}],
                },
            }
        ],
        "serviceAccountName": "app-sa",
        "priority": 0,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        **extra,
    }
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return spec


def template(**spec: Any) -> Obj:
    """A pod template as served: note `creationTimestamp: null`, which Go writes and we must keep."""
    return {
        "metadata": {"creationTimestamp": None, "labels": {"app": "web", "pod-template-hash": "5c5fb89585"}},
        "spec": pod_spec(tolerations=None, **spec),
    }


def pod(
    name: str = "web-5c5fb89585-abcde",
    *,
    phase: str = "Running",
    owners: list[Obj] | None = None,
    tolerations: list[Obj] | None = DEFAULT_TOLERATIONS,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    """A running pod of ReplicaSet web-5c5fb89585 unless told otherwise."""
    return served(
        "v1",
        "Pod",
        name,
        labels=labels if labels is not None else {"app": "web", "pod-template-hash": "5c5fb89585"},
        annotations=annotations,
        owners=owners if owners is not None else [owner("ReplicaSet", "web-5c5fb89585")],
        extra_metadata={"generateName": name.rsplit("-", 1)[0] + "-"},
        spec=pod_spec(tolerations=tolerations, nodeName="member-node-1", **spec),
        status={"phase": phase, "podIP": "10.244.1.7"},
    )


def deployment(name: str = "web") -> Obj:
    return served(
        "apps/v1",
        "Deployment",
        name,
        annotations={"deployment.kubernetes.io/revision": "2"},
        spec={"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
        status={"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "observedGeneration": 3},
    )


def replicaset(name: str = "web-5c5fb89585", *, owners: list[Obj] | None = None) -> Obj:
    return served(
        "apps/v1",
        "ReplicaSet",
        name,
        annotations={
            "deployment.kubernetes.io/revision": "2",
            "deployment.kubernetes.io/desired-replicas": "2",
        },
        owners=owners if owners is not None else [owner("Deployment", "web")],
        spec={
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5c5fb89585"}},
            "template": template(),
        },
        status={"replicas": 2},
    )


def statefulset(name: str = "db", *, collision_count: int = 0, owners: list[Obj] | None = None) -> Obj:
    return served(
        "apps/v1",
        "StatefulSet",
        name,
        owners=owners,
        spec={
            "replicas": 2,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": template(),
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
            ],
        },
        status={
            "observedGeneration": 3,
            "replicas": 2,
            "updatedReplicas": 2,
            "currentRevision": f"{name}-6dbf99c47",
            "updateRevision": f"{name}-6dbf99c47",
            "collisionCount": collision_count,
        },
    )


def daemonset(name: str = "agent") -> Obj:
    return served("apps/v1", "DaemonSet", name, spec={"template": template()}, status={})


def controller_revision(name: str = "db-6dbf99c47", *, owner_kind: str = "StatefulSet") -> Obj:
    return served(
        "apps/v1",
        "ControllerRevision",
        name,
        owners=[owner(owner_kind, "db")],
        data={"spec": {"template": template()}},
        revision=2,
    )


def job(name: str = "migrate", *, status: Obj | None = None, owners: list[Obj] | None = None) -> Obj:
    return served(
        "batch/v1",
        "Job",
        name,
        owners=owners,
        spec={"template": template()},
        status=status if status is not None else {"active": 1},
    )


def cronjob(name: str = "nightly") -> Obj:
    return served(
        "batch/v1",
        "CronJob",
        name,
        spec={"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template()}}},
        status={"lastScheduleTime": "2024-03-11T03:00:00Z"},
    )


def service(
    name: str = "web",
    *,
    type_: str = "ClusterIP",
    cluster_ip: str = "10.0.0.5",
    ports: list[Obj] | None = None,
    applied_spec: Obj | None = None,
    owners: list[Obj] | None = None,
    managed_spec: Obj | None = None,
    **spec: Any,
) -> Obj:
    """`applied_spec` becomes the spec of a `kubectl apply` last-applied-configuration annotation;
    `managed_spec` the `f:spec` of a managedFields entry (server-side apply)."""
    annotations = None
    if applied_spec is not None:
        applied = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": applied_spec}
        annotations = {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied)}
    obj = served(
        "v1",
        "Service",
        name,
        annotations=annotations,
        owners=owners,
        spec={
            "type": type_,
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "selector": {"app": "web"},
            "ports": ports if ports is not None else [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
            **spec,
        },
        status={"loadBalancer": {}},
    )
    if managed_spec is not None:
        obj["metadata"]["managedFields"].append(
            {"manager": "flux", "operation": "Apply", "fieldsV1": {"f:spec": managed_spec}}
        )
    return obj


BINDING_ANNOTATIONS = {
    "pv.kubernetes.io/bind-completed": "yes",
    "pv.kubernetes.io/bound-by-controller": "yes",
    "volume.beta.kubernetes.io/storage-provisioner": "rancher.io/local-path",
    "volume.kubernetes.io/storage-provisioner": "rancher.io/local-path",
    "volume.kubernetes.io/selected-node": "member-node-1",
}


def pvc(
    name: str = "data-db-0", *, phase: str = "Bound", volume: str = "pv-0", storage_class: str = "local"
) -> Obj:
    return served(
        "v1",
        "PersistentVolumeClaim",
        name,
        annotations={**BINDING_ANNOTATIONS, "team": "db"},
        owners=[owner("StatefulSet", "db", controller=False)],
        extra_metadata={"finalizers": ["kubernetes.io/pvc-protection"]},
        spec={"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class, "volumeName": volume},
        status={"phase": phase},
    )


def pv(name: str = "pv-0", *, policy: str = "Delete", claim: str = "data-db-0") -> Obj:
    return served(
        "v1",
        "PersistentVolume",
        name,
        None,
        annotations={
            "pv.kubernetes.io/bound-by-controller": "yes",
            "pv.kubernetes.io/provisioned-by": "local",
        },
        extra_metadata={"finalizers": ["kubernetes.io/pv-protection"]},
        spec={
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": policy,
            "storageClassName": "local",
            "hostPath": {"path": "/nonexistent/pv-0"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": NAMESPACE,
                "name": claim,
                "uid": "uid-member-claim",
                "resourceVersion": "812",
            },
        },
        status={"phase": "Bound"},
    )


def service_account(name: str = "app-sa") -> Obj:
    return served(
        "v1",
        "ServiceAccount",
        name,
        secrets=[{"name": f"{name}-token-lj825"}, {"name": "registry-pull"}],
        imagePullSecrets=[{"name": "registry-pull"}],
    )


def configmap(name: str = "cfg", *, owners: list[Obj] | None = None) -> Obj:
    return served("v1", "ConfigMap", name, owners=owners, data={"key": "value"})


def secret(name: str = "sec", *, type_: str = "Opaque") -> Obj:
    return served("v1", "Secret", name, type=type_, data={"password": "c2VjcmV0"})


def role(kind: str = "Role", name: str = "reader") -> Obj:
    return served("rbac.authorization.k8s.io/v1", kind, name, rules=[{"apiGroups": [""], "verbs": ["get"]}])


def cluster_role(name: str = "reader", *, labels: dict[str, str] | None = None) -> Obj:
    return served(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        name,
        None,
        labels=labels,
        rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    )


def cluster_role_binding(name: str, role_name: str, *subjects: tuple[str, str, str]) -> Obj:
    """`subjects` as (kind, namespace, name)."""
    return served(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        name,
        None,
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        subjects=[{"kind": kind, "namespace": namespace, "name": sa} for kind, namespace, sa in subjects],
    )


def widget(name: str = "w1") -> Obj:
    return served("example.com/v1", "Widget", name, spec={"size": 3}, status={"ready": True})
