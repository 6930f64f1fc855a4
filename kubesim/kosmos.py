"""Kosmos clustertree between a simulated control plane and one simulated member ("ALL" leaf mode).

Only the behaviour that decides whether a promote or a rollback keeps pods and data alive is emulated
(docs/control-plane-traps.md#kosmos-pods, #kosmos-twin-deletion, #kosmos-markers and
docs/ordering.md#rollback-order):

* a member pod labelled `kosmos-io/pod=true` has its status copied to the control-plane pod of the
  same namespace/name, and gets the control-plane pod's labels and annotations (plus the marker);
* deleting a control-plane pod bound to the virtual node deletes its member twin while the twin
  still carries `kosmos-io/pod=true`;
* deleting a control-plane ConfigMap, Secret, PVC or PV annotated `kosmos-io/cluster-owners` (naming
  this cluster) deletes its member twin.

It also provides what the control plane of a Kosmos installation holds for the member: the Cluster
CRD and object (with the member's kubeconfig, base64-encoded like a Go []byte), and the virtual node.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from importlib import resources

import yaml

from kubesim.cluster import SimulatedCluster
from kubesim.errors import ApiError
from kubesim.objects import Obj, annotations_of, clone, is_terminating, labels_of, meta
from kubesim.store import WatchEvent

log = logging.getLogger(__name__)

POD_MARKER = "kosmos-io/pod"
OWNERS_ANNOTATION = "kosmos-io/cluster-owners"
NODE_LABEL = "kosmos.io/node"
OWNED_KINDS = frozenset({"configmaps", "secrets", "persistentvolumeclaims", "persistentvolumes"})


def virtual_node_name(cluster_name: str) -> str:
    return f"kosmos-{cluster_name}"


def cluster_crd() -> Obj:
    return yaml.safe_load(resources.files("kubesim").joinpath("crds/clusters.kosmos.io.yaml").read_text())


class KosmosLink:
    def __init__(self, control_plane: SimulatedCluster, member: SimulatedCluster, cluster_name: str) -> None:
        self.control_plane = control_plane
        self.member = member
        self.cluster_name = cluster_name
        self.node_name = virtual_node_name(cluster_name)
        self._queue: asyncio.Queue[tuple[str, WatchEvent]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.member_deletions: list[tuple[str, str, str]] = []
        """(resource, namespace, name) of each member object this link deleted: what tests expect empty."""

    async def start(self) -> None:
        await self.register_member()
        self.control_plane.store.subscribe(lambda e: self._queue.put_nowait(("control-plane", e)))
        self.member.store.subscribe(lambda e: self._queue.put_nowait(("member", e)))
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kosmos-{self.cluster_name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def register_member(self) -> None:
        """The Cluster object and the virtual node, as a Kosmos installation has them."""
        store = self.control_plane.store
        crds = store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        if store.get(crds, "", "clusters.kosmos.io") is None:
            store.create(crds, cluster_crd())
        while store.registry.lookup("kosmos.io", "v1alpha1", "clusters") is None:
            await asyncio.sleep(0.005)
        kubeconfig = yaml.safe_dump(self.member.kubeconfig(), sort_keys=False).encode()
        cluster = {
            "apiVersion": "kosmos.io/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": self.cluster_name},
            "spec": {
                "kubeconfig": base64.b64encode(kubeconfig).decode(),
                "clusterTreeOptions": {"enable": True, "leafModels": None},
            },
        }
        clusters = store.type("kosmos.io", "v1alpha1", "clusters")
        if store.get(clusters, "", self.cluster_name) is None:
            store.create(clusters, cluster)
        nodes = store.type("", "v1", "nodes")
        if store.get(nodes, "", self.node_name) is None:
            store.create(
                nodes,
                {
                    "metadata": {
                        "name": self.node_name,
                        "labels": {
                            NODE_LABEL: "true",
                            "kubernetes.io/hostname": self.node_name,
                            "type": "virtual-kubelet",
                        },
                        "annotations": {"kosmos-io/owned-by-cluster": self.cluster_name},
                    },
                    "spec": {"taints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}]},
                },
            )
            node = store.get(nodes, "", self.node_name)
            assert node is not None
            store.write_status(nodes, node, {"conditions": [{"type": "Ready", "status": "True"}]})

    async def _run(self) -> None:
        while True:
            side, event = await self._queue.get()
            try:
                if side == "member":
                    self._on_member_event(event)
                else:
                    self._on_control_plane_event(event)
            except ApiError as error:
                log.debug("kosmos link: %s", error.message)
            finally:
                self._queue.task_done()

    async def drained(self) -> None:
        """Return once every event seen so far has been handled (for tests asserting a non-event)."""
        await self._queue.join()

    # --------------------------------------------------------------- member side
    def _on_member_event(self, event: WatchEvent) -> None:
        if event.rt.plural != "pods" or event.type == "DELETED":
            return
        if labels_of(event.obj).get(POD_MARKER) == "true":
            self._copy_status(event.obj)

    def _copy_status(self, member_pod: Obj) -> None:
        store = self.control_plane.store
        pods = store.type("", "v1", "pods")
        twin = store.get(pods, meta(member_pod).get("namespace", ""), meta(member_pod)["name"])
        if twin is None or (twin.get("spec") or {}).get("nodeName") != self.node_name:
            return
        status = member_pod.get("status") or {}
        if twin.get("status") != status:
            store.write_status(pods, twin, clone(status))

    # -------------------------------------------------------- control-plane side
    def _on_control_plane_event(self, event: WatchEvent) -> None:
        plural = event.rt.plural
        if plural == "pods":
            self._on_control_plane_pod(event)
        elif plural in OWNED_KINDS and (event.type == "DELETED" or is_terminating(event.obj)):
            owners = annotations_of(event.obj).get(OWNERS_ANNOTATION, "")
            if self.cluster_name in [o.strip() for o in owners.split(",")]:
                self._delete_member_twin(plural, event.obj)

    def _on_control_plane_pod(self, event: WatchEvent) -> None:
        pod = event.obj
        if (pod.get("spec") or {}).get("nodeName") != self.node_name:
            return
        store = self.member.store
        pods = store.type("", "v1", "pods")
        twin = store.get(pods, meta(pod).get("namespace", ""), meta(pod)["name"])
        if twin is None or labels_of(twin).get(POD_MARKER) != "true":
            return
        if event.type == "DELETED" or is_terminating(pod):
            self._delete_member_twin("pods", pod)
            return
        self._copy_status(twin)
        self._sync_metadata(pod, twin)

    def _sync_metadata(self, control_plane_pod: Obj, member_pod: Obj) -> None:
        """Kosmos replaces the member pod's labels with the control plane's (keeping its marker)."""
        labels = dict(labels_of(control_plane_pod)) | {POD_MARKER: "true"}
        annotations = dict(annotations_of(member_pod)) | dict(annotations_of(control_plane_pod))
        if labels == dict(labels_of(member_pod)) and annotations == dict(annotations_of(member_pod)):
            return
        updated = clone(member_pod)
        updated["metadata"]["labels"] = labels
        updated["metadata"]["annotations"] = annotations
        self.member.store.update(self.member.store.type("", "v1", "pods"), updated)

    def _delete_member_twin(self, plural: str, obj: Obj) -> None:
        store = self.member.store
        rt = store.type("", "v1", plural)
        namespace, name = meta(obj).get("namespace", ""), meta(obj)["name"]
        twin = store.get(rt, namespace, name)
        if twin is None or is_terminating(twin):
            return
        self.member_deletions.append((plural, namespace, name))
        store.delete(rt, namespace, name)
