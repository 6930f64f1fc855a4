"""The Deployment controller: owns ReplicaSets, finds "the new one" by template, rolls out changes.

What promote depends on (docs/control-plane-traps.md, sections adoption, template changes, missing
pods, Deployment before its ReplicaSets):

* Restored ReplicaSets are adopted, and the one whose template equals the Deployment's ignoring the
  `pod-template-hash` label (Go's `EqualIgnoreHash`) becomes the new ReplicaSet: nothing is created,
  nothing is scaled, a 0-replica history ReplicaSet stays at 0 and the revision annotation is kept.
* Without restored ReplicaSets the controller creates `<deployment>-<hash>`, a deterministic name, so it
  adopts the restored pods; but it says so with a `ScalingReplicaSet` event and the history is lost.
* A changed template (a toleration added) creates a new ReplicaSet and surges it by maxSurge while
  the old one keeps its replicas, because maxUnavailable rounds down to 0.

The logic follows pkg/controller/deployment (`syncDeployment`, `rolloutRolling`, `rolloutRecreate`,
`getNewReplicaSet`, `reconcileNewReplicaSet`, `reconcileOldReplicaSets`, `cleanupDeployment`,
`syncRolloutStatus`). Scaling events (proportional scaling of several active ReplicaSets), pausing
beyond "do nothing but report status", rollbacks and progress deadlines are not emulated.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from kubesim.controllers.base import Controller
from kubesim.controllers.hashing import pod_template_hash
from kubesim.controllers.workloads import (
    Key,
    claim,
    desired_replicas,
    key_of,
    omit_empty,
    owner_keys,
    selector_of,
)
from kubesim.objects import (
    Obj,
    annotations_of,
    clone,
    controller_ref,
    is_terminating,
    labels_of,
    meta,
    name_of,
    namespace_of,
    now_rfc3339,
    owner_reference,
    uid_of,
)
from kubesim.store import Store, WatchEvent

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
"""Deployment annotations Go's `skipCopyAnnotation` keeps off its ReplicaSets."""
_DEFAULT_FENCEPOST = "25%"


# ------------------------------------------------------------------ pure helpers
def status_count(obj: Mapping[str, Any], field_name: str) -> int:
    return int((obj.get("status") or {}).get(field_name) or 0)


def revision_of(rs: Mapping[str, Any]) -> int:
    """The revision annotation as a number; absent or malformed counts as 0, as in Go's `Revision`."""
    try:
        return int(annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def equal_ignore_hash(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Pod templates equal once `pod-template-hash` is dropped; an emptied label map equals none."""

    def without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
        copy = clone(template)
        metadata = copy.setdefault("metadata", {})
        labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != HASH_LABEL}
        metadata.pop("labels", None)
        if labels:
            metadata["labels"] = labels
        if not metadata:
            copy.pop("metadata")
        return copy

    return without_hash(left) == without_hash(right)


def _scaled(value: int | str, total: int, round_up: bool) -> int:
    """`intstr.GetScaledValueFromIntOrPercent`: an int as is, "N%" of `total` rounded up or down."""
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        return int(value)
    product = int(value[:-1]) * total
    return -(-product // 100) if round_up else product // 100


def fenceposts(deployment: Mapping[str, Any]) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate Deployment, `ResolveFenceposts` and `MaxUnavailable`.

    maxSurge rounds up and maxUnavailable down; both 0 makes maxUnavailable 1. Recreate has neither.
    """
    strategy = deployment["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    replicas = desired_replicas(deployment)
    surge = _scaled(rolling.get("maxSurge", _DEFAULT_FENCEPOST), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", _DEFAULT_FENCEPOST), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, 0 if replicas == 0 else min(unavailable, replicas)


def _by_creation(rs: Mapping[str, Any]) -> tuple[str, str]:
    return meta(rs).get("creationTimestamp", ""), name_of(rs)


def find_new_replicaset(deployment: Obj, replicasets: list[Obj]) -> Obj | None:
    """`FindNewReplicaSet`: the oldest owned ReplicaSet whose template is the Deployment's."""
    template = deployment["spec"]["template"]
    for rs in sorted(replicasets, key=_by_creation):
        if equal_ignore_hash(rs["spec"].get("template") or {}, template):
            return rs
    return None


def new_replicaset_annotations(
    deployment: Obj, annotations: Mapping[str, str], revision: int
) -> dict[str, str]:
    """`SetNewReplicaSetAnnotations`: copy the Deployment's annotations, and raise the revision only when
    it is lower than the next one, so an adopted ReplicaSet keeps the revision it was restored with."""
    result = dict(annotations)
    result.update({k: v for k, v in annotations_of(deployment).items() if k not in _NOT_COPIED})
    old = annotations.get(REVISION)
    if not old or not old.isdigit():
        result[REVISION] = str(revision)
    elif int(old) < revision:
        history = [entry for entry in annotations.get(REVISION_HISTORY, "").split(",") if entry]
        result[REVISION_HISTORY] = ",".join([*history, old])
        result[REVISION] = str(revision)
    return result


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    now = now_rfc3339()
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def set_condition(conditions: list[dict[str, Any]], condition: dict[str, Any]) -> list[dict[str, Any]]:
    """`SetDeploymentCondition`: unchanged status and reason keep the old condition (and its times)."""
    current = next((c for c in conditions if c.get("type") == condition["type"]), None)
    if current is not None and (current.get("status"), current.get("reason")) == (
        condition["status"],
        condition["reason"],
    ):
        return conditions
    if current is not None and current.get("status") == condition["status"]:
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    return [*(c for c in conditions if c.get("type") != condition["type"]), condition]


@dataclass
class _Sync:
    """One reconcile of one Deployment: the ReplicaSets it owns, kept current as they are written,
    and the conditions the final status write will carry."""

    deployment: Obj
    owned: list[Obj]
    conditions: list[dict[str, Any]] = field(default_factory=list)
    new: Obj | None = None

    @property
    def old(self) -> list[Obj]:
        return [rs for rs in self.owned if self.new is None or uid_of(rs) != uid_of(self.new)]

    @property
    def replicas(self) -> int:
        return desired_replicas(self.deployment)

    def track(self, rs: Obj) -> Obj:
        self.owned = [rs if uid_of(item) == uid_of(rs) else item for item in self.owned]
        if self.new is not None and uid_of(self.new) == uid_of(rs):
            self.new = rs
        return rs


class DeploymentController(Controller):
    """Adopts matching ReplicaSets, keeps one "new" ReplicaSet per template, rolls out, reports status."""

    name = "deployment-controller"
    watches = ("deployments.apps", "replicasets.apps", "pods")
    live = ("deployments.apps",)

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.deployments = self.type("apps", "deployments")
        self.replicasets = self.type("apps", "replicasets")
        self.pods = self.type("", "pods")

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        if event.rt == self.deployments:
            return [key_of(event.obj)]
        if event.rt == self.replicasets:
            return owner_keys(self.store, event, self.deployments)
        return self._deployment_of_removed_pod(event.obj) if event.type == "DELETED" else []

    def _deployment_of_removed_pod(self, pod: Obj) -> list[Key]:
        """Recreate waits until old pods are gone, and a pod's removal changes no ReplicaSet status."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.replicasets.kind:
            return []
        rs = self.store.get(self.replicasets, namespace_of(pod), ref.get("name", ""))
        rs_ref = controller_ref(rs) if rs is not None else None
        if rs_ref is None or rs_ref.get("kind") != self.deployments.kind:
            return []
        return [(namespace_of(pod), rs_ref.get("name", ""))]

    def reconcile(self, key: Hashable) -> float | None:
        """A Deployment being deleted does nothing: the orphaning delete relies on it
        (docs/control-plane-traps.md#deleting-owner-is-inert)."""
        namespace, name = cast(Key, key)
        deployment = self.store.get(self.deployments, namespace, name)
        if deployment is None or is_terminating(deployment):
            return None
        selector = selector_of(deployment)
        if selector.is_empty():
            return None
        owned = claim(
            self.store,
            self.replicasets,
            deployment,
            self.store.list(self.replicasets, namespace),
            lambda rs: selector.matches(labels_of(rs)),
        )
        sync = _Sync(deployment, owned, list((deployment.get("status") or {}).get("conditions") or []))
        if deployment["spec"].get("paused"):
            self._new_replicaset(sync, create=False)
            self._finish(sync, cleanup=False)
        elif (deployment["spec"].get("strategy") or {}).get("type") == "Recreate":
            self._rollout_recreate(sync)
        else:
            self._rollout_rolling(sync)
        return None

    # ------------------------------------------------------------------ strategies
    def _rollout_rolling(self, sync: _Sync) -> None:
        if self._new_replicaset(sync, create=True) is None:
            return
        scaled = self._reconcile_new(sync) or self._reconcile_old(sync)
        self._finish(sync, cleanup=not scaled)

    def _rollout_recreate(self, sync: _Sync) -> None:
        """Old ReplicaSets to 0 and their pods gone before the new one is created or scaled up."""
        self._new_replicaset(sync, create=False)
        scaled_down = [self._scale(sync, rs, 0) for rs in sync.old if desired_replicas(rs) > 0]
        if any(scaled_down) or self._old_pods_running(sync):
            self._finish(sync, cleanup=False)
            return
        if sync.new is None and self._new_replicaset(sync, create=True) is None:
            return
        assert sync.new is not None
        self._scale(sync, sync.new, sync.replicas)
        self._finish(sync, cleanup=True)

    def _old_pods_running(self, sync: _Sync) -> bool:
        if sum(status_count(rs, "replicas") for rs in sync.old):
            return True
        old_uids = {uid_of(rs) for rs in sync.old}
        return any(
            (controller_ref(pod) or {}).get("uid") in old_uids
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            for pod in self.store.iter(self.pods, namespace_of(sync.deployment))
        )

    # ------------------------------------------------------------------ the new ReplicaSet
    def _new_replicaset(self, sync: _Sync, *, create: bool) -> Obj | None:
        """`getNewReplicaSet`: sync the existing one's annotations, or create it; None after a collision."""
        existing = find_new_replicaset(sync.deployment, sync.owned)
        next_revision = max((revision_of(rs) for rs in sync.owned if rs is not existing), default=0) + 1
        if existing is not None:
            sync.new = self._sync_new_annotations(sync, existing, next_revision)
            if not any(c.get("type") == "Progressing" for c in sync.conditions):
                sync.conditions = set_condition(
                    sync.conditions,
                    _condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        f'Found new replica set "{name_of(existing)}"',
                    ),
                )
        elif create:
            sync.new = self._create_new_replicaset(sync, next_revision)
        if sync.new is not None:
            self._set_deployment_revision(sync, annotations_of(sync.new).get(REVISION, ""))
        return sync.new

    def _sync_new_annotations(self, sync: _Sync, rs: Obj, next_revision: int) -> Obj:
        annotations = new_replicaset_annotations(sync.deployment, annotations_of(rs), next_revision)
        min_ready = sync.deployment["spec"].get("minReadySeconds", 0)
        if annotations == annotations_of(rs) and rs["spec"].get("minReadySeconds", 0) == min_ready:
            return rs
        updated = clone(rs)
        updated["metadata"]["annotations"] = annotations
        if rs["spec"].get("minReadySeconds", 0) != min_ready:
            updated["spec"]["minReadySeconds"] = min_ready
        return sync.track(self.store.update(self.replicasets, updated))

    def _create_new_replicaset(self, sync: _Sync, revision: int) -> Obj | None:
        """`<deployment>-<hash>` with the hash label on template and selector; a name taken by another
        template bumps `status.collisionCount`, whose write wakes this Deployment to retry."""
        deployment = sync.deployment
        collision_count = (deployment.get("status") or {}).get("collisionCount")
        template_hash = pod_template_hash(deployment["spec"]["template"], collision_count)
        name = f"{name_of(deployment)}-{template_hash}"
        if self.store.get(self.replicasets, namespace_of(deployment), name) is not None:
            status = {**(deployment.get("status") or {}), "collisionCount": (collision_count or 0) + 1}
            self.store.write_status(self.deployments, deployment, status)
            return None
        body = self._replicaset_body(sync, name, template_hash, revision)
        created = self.store.create(self.replicasets, body, namespace=namespace_of(deployment))
        sync.owned.append(created)
        replicas = desired_replicas(created)
        if replicas > 0:
            self._record_scaling(deployment, "up", name, replicas)
        sync.conditions = set_condition(
            sync.conditions,
            _condition("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{name}"'),
        )
        return created

    def _replicaset_body(self, sync: _Sync, name: str, template_hash: str, revision: int) -> Obj:
        deployment = sync.deployment
        template = clone(deployment["spec"]["template"])
        labels = {**(template.get("metadata") or {}).get("labels", {}), HASH_LABEL: template_hash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = clone(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
        surge, _ = fenceposts(deployment)
        annotations = new_replicaset_annotations(deployment, {}, revision) | {
            DESIRED_REPLICAS: str(sync.replicas),
            MAX_REPLICAS: str(sync.replicas + surge),
        }
        spec = {"replicas": self._new_replicas(sync, 0), "selector": selector, "template": template}
        if deployment["spec"].get("minReadySeconds"):
            spec["minReadySeconds"] = deployment["spec"]["minReadySeconds"]
        metadata = {
            "name": name,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(deployment)],
        }
        return {"metadata": metadata, "spec": spec}

    def _new_replicas(self, sync: _Sync, current: int) -> int:
        """`NewRSNewReplicas`: Recreate goes straight to the full count; RollingUpdate may add pods only
        up to replicas + maxSurge counted over every owned ReplicaSet."""
        if (sync.deployment["spec"].get("strategy") or {}).get("type") == "Recreate":
            return sync.replicas
        surge, _ = fenceposts(sync.deployment)
        total = sum(desired_replicas(rs) for rs in sync.old) + current
        room = sync.replicas + surge - total
        return current if room <= 0 else current + min(room, sync.replicas - current)

    def _set_deployment_revision(self, sync: _Sync, revision: str) -> None:
        """Written with the object, not its status: the real status strategy lets annotations through."""
        if not revision or annotations_of(sync.deployment).get(REVISION) == revision:
            return
        updated = clone(sync.deployment)
        updated["metadata"].setdefault("annotations", {})[REVISION] = revision
        sync.deployment = self.store.update(self.deployments, updated)

    # ------------------------------------------------------------------ scaling
    def _scale(self, sync: _Sync, rs: Obj, replicas: int) -> bool:
        """`scaleReplicaSetAndRecordEvent`: a size change with the replicas annotations and an event."""
        before = desired_replicas(rs)
        if before == replicas:
            return False
        surge, _ = fenceposts(sync.deployment)
        updated = clone(rs)
        updated["spec"]["replicas"] = replicas
        updated["metadata"]["annotations"] = {
            **annotations_of(rs),
            DESIRED_REPLICAS: str(sync.replicas),
            MAX_REPLICAS: str(sync.replicas + surge),
        }
        sync.track(self.store.update(self.replicasets, updated))
        self._record_scaling(sync.deployment, "up" if replicas > before else "down", name_of(rs), replicas)
        return True

    def _record_scaling(self, deployment: Obj, direction: str, rs_name: str, replicas: int) -> None:
        self.record_event(
            deployment,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {rs_name} to {replicas}",
        )

    def _reconcile_new(self, sync: _Sync) -> bool:
        assert sync.new is not None
        current = desired_replicas(sync.new)
        if current == sync.replicas:
            return False
        if current > sync.replicas:
            return self._scale(sync, sync.new, sync.replicas)
        return self._scale(sync, sync.new, self._new_replicas(sync, current))

    def _reconcile_old(self, sync: _Sync) -> bool:
        """`reconcileOldReplicaSets`: scale old ReplicaSets down while availability allows it."""
        assert sync.new is not None
        if not sum(desired_replicas(rs) for rs in sync.old):
            return False
        _, unavailable = fenceposts(sync.deployment)
        min_available = sync.replicas - unavailable
        new_unavailable = desired_replicas(sync.new) - status_count(sync.new, "availableReplicas")
        total = sum(desired_replicas(rs) for rs in sync.owned)
        max_scaled_down = total - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = self._cleanup_unhealthy(sync, max_scaled_down)
        return cleaned + self._scale_down_old(sync, min_available) > 0

    def _cleanup_unhealthy(self, sync: _Sync, budget: int) -> int:
        """Unavailable old replicas go first: removing them cannot lower availability."""
        done = 0
        for rs in sorted(sync.old, key=_by_creation):
            unhealthy = desired_replicas(rs) - status_count(rs, "availableReplicas")
            if done >= budget:
                break
            if unhealthy > 0:
                count = min(budget - done, unhealthy)
                self._scale(sync, rs, desired_replicas(rs) - count)
                done += count
        return done

    def _scale_down_old(self, sync: _Sync, min_available: int) -> int:
        """Available pods (over all ReplicaSets) beyond replicas - maxUnavailable may go, oldest RS first."""
        budget = sum(status_count(rs, "availableReplicas") for rs in sync.owned) - min_available
        done = 0
        for rs in sorted(sync.old, key=_by_creation):
            if done >= budget:
                break
            count = min(desired_replicas(rs), budget - done)
            if count > 0:
                self._scale(sync, rs, desired_replicas(rs) - count)
                done += count
        return done

    # ------------------------------------------------------------------ history and status
    def _cleanup_history(self, sync: _Sync) -> None:
        """Old ReplicaSets beyond revisionHistoryLimit, lowest revision first, only when fully scaled down."""
        limit = sync.deployment["spec"].get("revisionHistoryLimit")
        alive = [rs for rs in sync.old if not is_terminating(rs)]
        if limit is None or len(alive) <= limit:
            return
        for rs in sorted(alive, key=lambda rs: (revision_of(rs), *_by_creation(rs)))[: len(alive) - limit]:
            settled = meta(rs).get("generation", 0) <= status_count(rs, "observedGeneration")
            if desired_replicas(rs) == 0 and status_count(rs, "replicas") == 0 and settled:
                self.store.delete(self.replicasets, namespace_of(rs), name_of(rs))

    def _finish(self, sync: _Sync, *, cleanup: bool) -> None:
        """`syncRolloutStatus`, preceded by the history cleanup once the rollout is complete."""
        status = self._status(sync)
        if cleanup and self._complete(sync, status):
            self._cleanup_history(sync)
        self.store.write_status(self.deployments, sync.deployment, status)

    def _status(self, sync: _Sync) -> dict[str, Any]:
        deployment = sync.deployment
        previous = deployment.get("status") or {}
        available = sum(status_count(rs, "availableReplicas") for rs in sync.owned)
        status: dict[str, Any] = {
            "observedGeneration": meta(deployment).get("generation", 0),
            "replicas": sum(status_count(rs, "replicas") for rs in sync.owned),
            "updatedReplicas": status_count(sync.new, "replicas") if sync.new else 0,
            "readyReplicas": sum(status_count(rs, "readyReplicas") for rs in sync.owned),
            "availableReplicas": available,
            "unavailableReplicas": max(sum(desired_replicas(rs) for rs in sync.owned) - available, 0),
        }
        if previous.get("collisionCount") is not None:
            status["collisionCount"] = previous["collisionCount"]
        _, unavailable = fenceposts(deployment)
        if available >= sync.replicas - unavailable:
            availability = _condition(
                "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
            )
        else:
            availability = _condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        conditions = set_condition(sync.conditions, availability)
        status["conditions"] = self._progressing(sync, status, conditions)
        counts = (
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        )
        return omit_empty(status, *counts)

    def _complete(self, sync: _Sync, status: Mapping[str, Any]) -> bool:
        """`DeploymentComplete`: every replica updated and available, and the latest spec observed."""
        counts = (status.get(name) or 0 for name in ("updatedReplicas", "replicas", "availableReplicas"))
        observed = status.get("observedGeneration") or 0
        return all(count == sync.replicas for count in counts) and observed >= meta(sync.deployment).get(
            "generation", 0
        )

    def _progressing(
        self, sync: _Sync, status: Mapping[str, Any], conditions: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The Progressing condition: NewReplicaSetAvailable once complete, ReplicaSetUpdated on progress."""
        current = next((c for c in conditions if c.get("type") == "Progressing"), None)
        rs_name = name_of(sync.new) if sync.new else ""
        if (
            current
            and current.get("reason") == "NewReplicaSetAvailable"
            and (status["replicas"] == status["updatedReplicas"])
        ):
            return conditions
        if self._complete(sync, status):
            return set_condition(
                conditions,
                _condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                ),
            )
        if not self._made_progress(sync.deployment.get("status") or {}, status):
            return conditions
        progressing = _condition(
            "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
        )
        if current and current.get("status") == "True":
            progressing["lastTransitionTime"] = current.get(
                "lastTransitionTime", progressing["lastTransitionTime"]
            )
        return [*(c for c in conditions if c.get("type") != "Progressing"), progressing]

    @staticmethod
    def _made_progress(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """`DeploymentProgressing`: more updated, ready or available replicas, or fewer old ones."""

        def old_replicas(status: Mapping[str, Any]) -> int:
            return int(status.get("replicas") or 0) - int(status.get("updatedReplicas") or 0)

        return any(
            int(new.get(k) or 0) > int(old.get(k) or 0)
            for k in ("updatedReplicas", "readyReplicas", "availableReplicas")
        ) or old_replicas(new) < old_replicas(old)
