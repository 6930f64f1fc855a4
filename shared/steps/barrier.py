"""Rebuild must not race the control plane's controllers: their informers lag.

kube-controller-manager sees pods through a watch that falls behind by hundreds of milliseconds under
load. A ReplicaSet created before its controller has seen the pods created just before it counts too few,
creates pods of its own, and deletes the surplus a moment later; with Kosmos such a pod can be scheduled
on the virtual node and started in the member. So before the owners of the rebuilt pods are created, a
barrier proves that the controllers' pod cache has caught up: a pod created after all of ours, bound to a
node that does not exist (nothing ever runs it, and Kosmos acts only on its virtual nodes), and a
ReplicaSet of zero replicas that selects only it. The ReplicaSet controller adopts that pod only once its
pod informer has delivered it, and an informer delivers in order, so every pod created before it is in
the cache the ReplicaSet and StatefulSet controllers share. Then both barrier objects are deleted.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from shared.items import Obj
from shared.kube import AlreadyExists, ApiResource, Kube

NAME = "kpromote-barrier"
"""One fixed name, so that the rebuild worker may delete exactly this pod and ReplicaSet (an RBAC rule with
`resourceNames`) and nothing else of the application's; a label of its own tells each barrier apart."""
LABEL = "promote.kosmos.io/barrier"
NODE = "promote.kosmos.io-barrier"
"""No such node exists: the barrier pod is bound to it, so no scheduler, kubelet or Kosmos acts on it."""
IMAGE = "registry.k8s.io/pause:3.10"


def _pod_spec() -> Obj:
    """Acceptable to a namespace that enforces the "restricted" Pod Security Standard."""
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65535,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "barrier",
                "image": IMAGE,
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }


def bodies(namespace: str, token: str) -> tuple[Obj, Obj]:
    """The barrier pod and its zero-replica ReplicaSet, which selects only the pod labelled `token`."""
    name = NAME
    labels = {LABEL: token}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {**_pod_spec(), "nodeName": NODE},
    }
    replica_set = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec()},
        },
    }
    return pod, replica_set


def _adopted(pod: Obj | None) -> bool:
    """Owned, deleted or being deleted by the ReplicaSet controller: in every case, it has seen the pod."""
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return True
    return any(ref.get("kind") == "ReplicaSet" for ref in pod["metadata"].get("ownerReferences") or [])


def await_pod_informers(control_plane: Kube, namespace: str, timeout: float) -> float:
    """Block until the control plane's controllers have seen every pod created so far in `namespace`;
    returns the seconds it took (the informer lag measured)."""
    pods = control_plane.discovery.resolve("pods")
    replica_sets = control_plane.discovery.resolve("replicasets.apps")
    pod, replica_set = bodies(namespace, secrets.token_hex(4))
    started = time.monotonic()
    # The ReplicaSet goes first when an interrupted earlier attempt left one: it must not adopt our pod.
    _create_anew(
        control_plane, pods, pod, namespace, before=lambda: _delete(control_plane, replica_sets, namespace)
    )
    name = NAME
    try:
        _create_anew(control_plane, replica_sets, replica_set, namespace)
        try:
            while not _adopted(control_plane.get(pods, namespace, name)):
                if time.monotonic() - started > timeout:
                    raise TimeoutError(
                        f"the control plane's ReplicaSet controller did not see a pod of {namespace} within "
                        f"{timeout:.0f}s: its informers lag that far behind, or it is not running. The "
                        f"pods' owners were not created, since they would start pods of their own"
                    )
                time.sleep(0.02)
            return time.monotonic() - started
        finally:
            _delete(control_plane, replica_sets, namespace)
    finally:
        _delete(control_plane, pods, namespace)


def _create_anew(
    control_plane: Kube,
    resource: ApiResource,
    body: Obj,
    namespace: str,
    before: Callable[[], None] | None = None,
) -> None:
    """Create a barrier object. One an interrupted earlier attempt left holds the name: it is deleted
    (after `before`) and the object created again. Deleting first every time cost two requests per
    namespace for the usual case of a free name."""
    try:
        control_plane.create(resource, body, namespace)
        return
    except AlreadyExists:
        if before is not None:
            before()
        _delete(control_plane, resource, namespace)
    control_plane.create(resource, body, namespace)


def _delete(control_plane: Kube, resource: ApiResource, namespace: str) -> None:
    """The barrier object of `resource`'s type, by its one name; a pod with grace period 0 (no kubelet
    will ever confirm its end)."""
    control_plane.delete(resource, namespace, NAME, grace_seconds=0 if resource.plural == "pods" else None)
