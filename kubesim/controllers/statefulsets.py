"""The StatefulSet controller: ordinal pods, claims from templates, and byte-compared revisions.

What promote depends on (docs/control-plane-traps.md, sections adoption, ControllerRevision bytes,
template changes, missing pods):

* ControllerRevisions are adopted by an update that re-encodes `data` the way Go does. A revision
  restored with other bytes (the Python client's `json.dumps` puts spaces after `:` and `,`) makes that
  update fail with "field is immutable"; the whole sync fails and is retried forever, so the StatefulSet
  adopts neither revisions nor pods and its status stays empty. Revisions restored with Go's bytes are
  adopted and reused, keeping their revision numbers.
* A revision is identified by its bytes: equal bytes reuse the stored revision; otherwise one is created
  as `<sts>-<hash>`, the same name in every cluster for the same template
  (docs/control-plane-traps.md#controllerrevision-bytes, "not restored at all").
* OrderedReady creates ordinal i only once 0..i-1 are Running and Ready; Parallel creates all at once.
* RollingUpdate deletes the highest-ordinal pod whose `controller-revision-hash` is not the update
  revision, one at a time and only while every pod is Ready: a modified template restarts pods.

The logic follows pkg/controller/statefulset (`sync`, `adoptOrphanRevisions`, `getStatefulSetRevisions`,
`updateStatefulSet`, `truncateHistory`). Not emulated: minReadySeconds, the PVC retention policy's
owner references, identity repair of adopted pods, and rolling back to an older revision by bumping its
revision number (the simulator's admission refuses revision changes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from kubesim.controllers.base import Controller
from kubesim.controllers.hashing import revision_hash
from kubesim.controllers.workloads import (
    Key,
    adopt,
    claim,
    desired_replicas,
    key_of,
    omit_empty,
    owner_keys,
    pod_from_template,
    selector_of,
)
from kubesim.errors import ApiError
from kubesim.objects import (
    Obj,
    annotations_of,
    controller_ref,
    go_json,
    is_pod_ready,
    is_terminating,
    labels_of,
    meta,
    name_of,
    namespace_of,
    owner_reference,
    uid_of,
)
from kubesim.selectors import LabelSelector
from kubesim.store import Store, WatchEvent
from kubesim.versions import writes_null_template_timestamps

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
HASH_LABEL = "controller.kubernetes.io/hash"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def ordinal_of(statefulset: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    """The pod's ordinal when it is named `<statefulset>-<ordinal>` (Go's `isMemberOf`), else None."""
    match = _ORDINAL.match(name_of(pod))
    if match is None or match.group(1) != name_of(statefulset):
        return None
    return int(match.group(2))


def revision_data(statefulset: Mapping[str, Any], git_version: str) -> bytes:
    """Go's `getPatch`: the template under `spec`, marked `$patch: replace`, as encoding/json writes it
    in the Kubernetes version `git_version` (kubesim/versions.py)."""
    template = dict(statefulset["spec"]["template"])
    if writes_null_template_timestamps(git_version):
        template["metadata"] = {"creationTimestamp": None, **(template.get("metadata") or {})}
    return go_json({"spec": {"template": {**template, "$patch": "replace"}}})


def is_healthy(pod: Mapping[str, Any]) -> bool:
    return is_pod_ready(pod) and not is_terminating(pod)


def pod_revision(pod: Mapping[str, Any]) -> str:
    return labels_of(pod).get(REVISION_LABEL, "")


def _revision_order(revision: Mapping[str, Any]) -> tuple[int, str, str]:
    return int(revision.get("revision") or 0), meta(revision).get("creationTimestamp", ""), name_of(revision)


@dataclass(frozen=True)
class _Revisions:
    current: Obj
    update: Obj
    collision_count: int


@dataclass
class _Pods:
    """Claimed pods by role: ordinals below `spec.replicas`, and condemned ones above (ascending)."""

    replicas: dict[int, Obj]
    condemned: list[Obj]

    @classmethod
    def split(cls, statefulset: Obj, pods: list[Obj]) -> _Pods:
        count = desired_replicas(statefulset)
        by_ordinal = {ordinal_of(statefulset, pod): pod for pod in pods}
        replicas = {
            ordinal: pod for ordinal, pod in by_ordinal.items() if ordinal is not None and ordinal < count
        }
        condemned = [by_ordinal[o] for o in sorted(o for o in by_ordinal if o is not None and o >= count)]
        return cls(replicas, condemned)


class StatefulSetController(Controller):
    """Adopts revisions then pods, keeps ordinals 0..replicas-1 with their claims, rolls one pod at a time."""

    name = "statefulset-controller"
    watches = ("statefulsets.apps", "pods", "controllerrevisions.apps")
    live = ("statefulsets.apps",)

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.statefulsets = self.type("apps", "statefulsets")
        self.revisions = self.type("apps", "controllerrevisions")
        self.pods = self.type("", "pods")
        self.claims = self.type("", "persistentvolumeclaims")

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        if event.rt == self.statefulsets:
            return [key_of(event.obj)]
        return owner_keys(self.store, event, self.statefulsets)

    def reconcile(self, key: Hashable) -> float | None:
        """Revisions are adopted before pods, so a revision that cannot be adopted leaves the pods alone.

        A StatefulSet being deleted does nothing, so an orphaning delete never replaces a pod.
        """
        namespace, name = cast(Key, key)
        statefulset = self.store.get(self.statefulsets, namespace, name)
        if statefulset is None or is_terminating(statefulset):
            return None
        selector = selector_of(statefulset)
        self._adopt_orphan_revisions(statefulset, selector)
        owned_revisions = sorted(self._owned_revisions(statefulset, selector), key=_revision_order)
        pods = claim(
            self.store,
            self.pods,
            statefulset,
            self.store.list(self.pods, namespace),
            lambda pod: selector.matches(labels_of(pod)) and ordinal_of(statefulset, pod) is not None,
        )
        revisions = self._revisions(statefulset, owned_revisions)
        self._sync_pods(statefulset, _Pods.split(statefulset, pods), revisions)
        self._write_status(statefulset, revisions)
        self._truncate_history(statefulset, owned_revisions, revisions)
        return None

    # ------------------------------------------------------------------ revisions
    def _adopt_orphan_revisions(self, statefulset: Obj, selector: LabelSelector) -> None:
        """The adoption update carries `data` re-encoded by Go; admission refuses it when the stored bytes
        differ, and the ApiError fails the whole sync
        (docs/control-plane-traps.md#controllerrevision-bytes)."""
        for revision in self.store.list(self.revisions, namespace_of(statefulset)):
            if controller_ref(revision) is None and selector.matches(labels_of(revision)):
                adopt(self.store, self.revisions, statefulset, revision)

    def _owned_revisions(self, statefulset: Obj, selector: LabelSelector) -> list[Obj]:
        return [
            revision
            for revision in self.store.iter(self.revisions, namespace_of(statefulset))
            if selector.matches(labels_of(revision))
            and (controller_ref(revision) or {}).get("uid") == uid_of(statefulset)
        ]

    def _revisions(self, statefulset: Obj, owned: list[Obj]) -> _Revisions:
        """`getStatefulSetRevisions`: reuse the latest revision with the same bytes, else create one."""
        status = statefulset.get("status") or {}
        collision_count = int(status.get("collisionCount") or 0)
        data = revision_data(statefulset, self.git_version)
        equal = [revision for revision in owned if self.store.raw_data.get(uid_of(revision)) == data]
        if equal:
            update = equal[-1]
        else:
            next_number = int(owned[-1].get("revision") or 0) + 1 if owned else 1
            update, collision_count = self._create_revision(statefulset, data, next_number, collision_count)
        current = next((r for r in owned if name_of(r) == status.get("currentRevision")), update)
        return _Revisions(current, update, collision_count)

    def _create_revision(
        self, statefulset: Obj, data: bytes, number: int, collision_count: int
    ) -> tuple[Obj, int]:
        """`CreateControllerRevision`: a name taken by other bytes bumps the collision count; one taken by
        the same bytes is that revision. The real helper reads the taken name through the API, not its
        informer, so the revision it created a moment ago is found even while its informer lags."""
        namespace = namespace_of(statefulset)
        while True:
            suffix = revision_hash(data, collision_count)
            name = f"{name_of(statefulset)[:223]}-{suffix}"
            existing = self.store.live_store.get(self.revisions, namespace, name)
            if existing is None:
                break
            if self.store.raw_data.get(uid_of(existing)) == data:
                return existing, collision_count
            collision_count += 1
        template_labels = (statefulset["spec"]["template"].get("metadata") or {}).get("labels") or {}
        metadata: dict[str, Any] = {
            "name": name,
            "labels": {**template_labels, HASH_LABEL: suffix},
            "ownerReferences": [owner_reference(statefulset)],
        }
        if annotations_of(statefulset):
            metadata["annotations"] = dict(annotations_of(statefulset))
        body = {"metadata": metadata, "data": json.loads(data), "revision": number}
        return self.store.create(self.revisions, body, namespace=namespace, raw_data=data), collision_count

    def _truncate_history(self, statefulset: Obj, owned: list[Obj], revisions: _Revisions) -> None:
        """Revisions neither current, update nor worn by a pod, beyond revisionHistoryLimit, oldest first."""
        live = {name_of(revisions.current), name_of(revisions.update)}
        live |= {pod_revision(pod) for pod in self._owned_pods(statefulset)}
        history = [revision for revision in owned if name_of(revision) not in live]
        limit = int(statefulset["spec"].get("revisionHistoryLimit", 10))
        for revision in history[: max(len(history) - limit, 0)]:
            self.store.delete(self.revisions, namespace_of(revision), name_of(revision))

    # ------------------------------------------------------------------ pods
    def _sync_pods(self, statefulset: Obj, pods: _Pods, revisions: _Revisions) -> None:
        """`updateStatefulSet`: create or wait, then scale down, then roll; each step may stop the sync."""
        monotonic = statefulset["spec"].get("podManagementPolicy", "OrderedReady") != "Parallel"
        if self._ensure_replicas(statefulset, pods, revisions, monotonic) and self._scale_down(
            statefulset, pods, monotonic
        ):
            self._roll(statefulset, pods, revisions)

    def _ensure_replicas(self, statefulset: Obj, pods: _Pods, revisions: _Revisions, monotonic: bool) -> bool:
        """Failed pods are deleted (and re-created on a later sync); OrderedReady stops at the first pod it
        creates, and at the first pod that is terminating or not Running and Ready."""
        for ordinal in range(desired_replicas(statefulset)):
            pod = pods.replicas.get(ordinal)
            if pod is not None and (pod.get("status") or {}).get("phase") == "Failed":
                self._delete_pod(statefulset, pod)
                return False
            if pod is None:
                pods.replicas[ordinal] = self._create_pod(statefulset, ordinal, revisions)
                if monotonic:
                    return False
            elif monotonic and not is_healthy(pod):
                return False
        return True

    def _scale_down(self, statefulset: Obj, pods: _Pods, monotonic: bool) -> bool:
        """Highest ordinal first; OrderedReady deletes one at a time, and an unhealthy condemned pod only
        when it is the first unhealthy one."""
        first_unhealthy = next((pod for pod in pods.condemned if not is_healthy(pod)), None)
        for pod in reversed(pods.condemned):
            if is_terminating(pod):
                if monotonic:
                    return False
                continue
            if monotonic and not is_pod_ready(pod) and pod is not first_unhealthy:
                return False
            self._delete_pod(statefulset, pod)
            if monotonic:
                return False
        return True

    def _roll(self, statefulset: Obj, pods: _Pods, revisions: _Revisions) -> None:
        """RollingUpdate: delete the highest outdated pod at or above the partition, waiting on unhealthy
        ones; it is re-created from the update revision on a later sync. OnDelete does nothing."""
        strategy = statefulset["spec"].get("updateStrategy") or {}
        if strategy.get("type") == "OnDelete":
            return
        for ordinal in range(desired_replicas(statefulset) - 1, self._partition(statefulset) - 1, -1):
            pod = pods.replicas.get(ordinal)
            if pod is None:
                return
            if pod_revision(pod) != name_of(revisions.update) and not is_terminating(pod):
                self._delete_pod(statefulset, pod)
                return
            if not is_healthy(pod):
                return

    @staticmethod
    def _partition(statefulset: Obj) -> int:
        strategy = statefulset["spec"].get("updateStrategy") or {}
        return int((strategy.get("rollingUpdate") or {}).get("partition") or 0)

    def _create_pod(self, statefulset: Obj, ordinal: int, revisions: _Revisions) -> Obj:
        """Ordinals below the partition come from the current revision, the rest from the update one."""
        revision = revisions.current if ordinal < self._partition(statefulset) else revisions.update
        pod_name = f"{name_of(statefulset)}-{ordinal}"
        body = pod_from_template(statefulset, self._template(statefulset, revision, revisions))
        body["metadata"]["name"] = pod_name
        body["metadata"]["labels"] = {
            **body["metadata"].get("labels", {}),
            REVISION_LABEL: name_of(revision),
            POD_NAME_LABEL: pod_name,
            POD_INDEX_LABEL: str(ordinal),
        }
        spec = body["spec"]
        spec["hostname"] = pod_name
        if statefulset["spec"].get("serviceName"):
            spec["subdomain"] = statefulset["spec"]["serviceName"]
        claim_volumes = self._create_claims(statefulset, ordinal, pod_name)
        spec["volumes"] = claim_volumes + [
            volume
            for volume in spec.get("volumes") or []
            if volume.get("name") not in {v["name"] for v in claim_volumes}
        ]
        try:
            pod = self.store.create(self.pods, body, namespace=namespace_of(statefulset))
        except ApiError as error:
            self._record(
                statefulset,
                "Warning",
                "FailedCreate",
                f"create Pod {pod_name}",
                f"failed error: {error.message}",
            )
            raise
        self._record(statefulset, "Normal", "SuccessfulCreate", f"create Pod {pod_name}", "successful")
        return pod

    def _template(self, statefulset: Obj, revision: Obj, revisions: _Revisions) -> Mapping[str, Any]:
        """The update revision is the StatefulSet's own template; an older one is read back from its data."""
        if revision is revisions.update:
            return statefulset["spec"]["template"]
        template = dict(json.loads(self.store.raw_data[uid_of(revision)])["spec"]["template"])
        template.pop("$patch", None)
        return template

    def _create_claims(self, statefulset: Obj, ordinal: int, pod_name: str) -> list[dict[str, Any]]:
        """PersistentVolumeClaims `<template>-<sts>-<ordinal>` from volumeClaimTemplates, created when
        missing with the selector's labels, and the pod volumes that mount them."""
        namespace = namespace_of(statefulset)
        match_labels = (statefulset["spec"].get("selector") or {}).get("matchLabels") or {}
        volumes = []
        for template in statefulset["spec"].get("volumeClaimTemplates") or []:
            template_name = name_of(template)
            claim_name = f"{template_name}-{name_of(statefulset)}-{ordinal}"
            volumes.append({"name": template_name, "persistentVolumeClaim": {"claimName": claim_name}})
            if self.store.get(self.claims, namespace, claim_name) is not None:
                continue
            labels = {**labels_of(template), **match_labels}
            body = {**template, "metadata": {**meta(template), "name": claim_name, "labels": labels}}
            self.store.create(self.claims, body, namespace=namespace)
            self._record(
                statefulset,
                "Normal",
                "SuccessfulCreate",
                f"create Claim {claim_name} Pod {pod_name}",
                "success",
            )
        return volumes

    def _delete_pod(self, statefulset: Obj, pod: Obj) -> None:
        self.store.delete(self.pods, namespace_of(pod), name_of(pod))
        self._record(statefulset, "Normal", "SuccessfulDelete", f"delete Pod {name_of(pod)}", "successful")

    def _record(self, statefulset: Obj, kind: str, reason: str, action: str, outcome: str) -> None:
        """Messages as `recordPodEvent`/`recordClaimEvent` word them."""
        self.record_event(
            statefulset, kind, reason, f"{action} in StatefulSet {name_of(statefulset)} {outcome}"
        )

    # ------------------------------------------------------------------ status
    def _owned_pods(self, statefulset: Obj) -> list[Obj]:
        return [
            pod
            for pod in self.store.iter(self.pods, namespace_of(statefulset))
            if (controller_ref(pod) or {}).get("uid") == uid_of(statefulset)
            and ordinal_of(statefulset, pod) is not None
        ]

    def _write_status(self, statefulset: Obj, revisions: _Revisions) -> None:
        """Counts over the owned pods; a RollingUpdate whose pods are all updated and Ready completes, making
        the update revision current (`completeRollingUpdate`). collisionCount is always present."""
        pods = self._owned_pods(statefulset)
        current, update = name_of(revisions.current), name_of(revisions.update)
        live = [pod for pod in pods if not is_terminating(pod)]
        status: dict[str, Any] = {
            "observedGeneration": meta(statefulset).get("generation", 0),
            "replicas": len(pods),
            "readyReplicas": sum(1 for pod in pods if is_pod_ready(pod)),
            "currentReplicas": sum(1 for pod in live if pod_revision(pod) == current),
            "updatedReplicas": sum(1 for pod in live if pod_revision(pod) == update),
            "currentRevision": current,
            "updateRevision": update,
            "collisionCount": revisions.collision_count,
        }
        status["availableReplicas"] = status["readyReplicas"]
        rolling = (statefulset["spec"].get("updateStrategy") or {}).get(
            "type", "RollingUpdate"
        ) == "RollingUpdate"
        if rolling and status["updatedReplicas"] == status["replicas"] == status["readyReplicas"]:
            status["currentRevision"], status["currentReplicas"] = update, status["updatedReplicas"]
        status = omit_empty(
            status, "observedGeneration", "readyReplicas", "currentReplicas", "updatedReplicas"
        )
        self.store.write_status(self.statefulsets, statefulset, status)
