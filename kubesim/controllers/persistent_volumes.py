"""The PersistentVolume binder of kube-controller-manager (pkg/controller/volume/persistentvolume).

Only statically provisioned volumes exist here (there is no provisioner), which is what a promote restores:
its PV and PVC are copies. The outcome of such a restore depends on the order of creation and on the PVC's
`pv.kubernetes.io/bind-completed` annotation exactly as `syncClaim` / `syncVolume` decide it
(docs/control-plane-traps.md#pv-binding): a restored bound claim whose volume is missing or bound to another
uid is Lost, with a Warning event that stays in the namespace. Reclaim is where data is lost
(docs/control-plane-traps.md#pv-reclaim): a Released volume with policy Delete is deleted here as a CSI driver
would delete the disk.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from decimal import Decimal
from typing import Any, NamedTuple, TypeGuard

from kubernetes.utils import parse_quantity

from kubesim.controllers.base import Controller
from kubesim.objects import (
    Obj,
    annotations_of,
    clone,
    is_terminating,
    labels_of,
    name_of,
    namespace_of,
    uid_of,
)
from kubesim.resources import ResourceType
from kubesim.selectors import LabelSelector
from kubesim.store import Store, WatchEvent

BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"


class Key(NamedTuple):
    kind: str
    """CLAIM or VOLUME."""
    namespace: str
    name: str


CLAIM = "claim"
VOLUME = "volume"


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _phase(obj: Obj) -> str:
    return (obj.get("status") or {}).get("phase", "")


def _storage_class(obj: Obj) -> str:
    """GetPersistentVolume(Claim)Class: the beta annotation wins over spec.storageClassName."""
    return annotations_of(obj).get(BETA_STORAGE_CLASS) or _spec(obj).get("storageClassName") or ""


def _capacity(volume: Obj) -> Decimal:
    return parse_quantity((_spec(volume).get("capacity") or {}).get("storage", "0"))


def _request(claim: Obj) -> Decimal:
    return parse_quantity(((_spec(claim).get("resources") or {}).get("requests") or {}).get("storage", "0"))


def _volume_mode(obj: Obj) -> str:
    return _spec(obj).get("volumeMode") or "Filesystem"


def _access_modes_fit(volume: Obj, claim: Obj) -> bool:
    return set(_spec(claim).get("accessModes") or []) <= set(_spec(volume).get("accessModes") or [])


def _names(ref: dict[str, Any] | None, claim: Obj) -> TypeGuard[dict[str, Any]]:
    """Whether a claimRef names `claim` by namespace and name, whatever its uid (a TypeGuard: when it
    does, the caller may read the reference's other fields)."""
    if not ref:
        return False
    return (ref.get("namespace"), ref.get("name")) == (namespace_of(claim), name_of(claim))


def _is_bound_to(volume: Obj, claim: Obj) -> bool:
    """IsVolumeBoundToClaim: the claimRef names this claim, with no uid or with the claim's own."""
    ref = _spec(volume).get("claimRef")
    return _names(ref, claim) and ref.get("uid") in (None, "", uid_of(claim))


def _mismatch(volume: Obj, claim: Obj) -> str | None:
    """checkVolumeSatisfyClaim: why a volume requested by name cannot serve the claim, or None."""
    if is_terminating(volume):
        return f'the volume is marked for deletion "{name_of(volume)}"'
    if _capacity(volume) < _request(claim):
        return "requested PV is too small"
    if _storage_class(volume) != _storage_class(claim):
        return "storageClassName does not match"
    if _volume_mode(volume) != _volume_mode(claim):
        return "incompatible volumeMode"
    if not _access_modes_fit(volume, claim):
        return "incompatible accessMode"
    return None


class PersistentVolumeController(Controller):
    """Binds claims to volumes, marks claims Lost, and releases and reclaims volumes of deleted claims."""

    name = "persistentvolume-controller"
    watches = ("persistentvolumes", "persistentvolumeclaims")

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._reported: set[tuple[str, str]] = set()
        """(uid, reason) of the Pending-claim events already recorded: the real recorder aggregates them."""

    @property
    def volumes(self) -> ResourceType:
        return self.type("", "persistentvolumes")

    @property
    def claims(self) -> ResourceType:
        return self.type("", "persistentvolumeclaims")

    # ---------------------------------------------------------------------------------------- keys
    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        """A volume change concerns its claim and every claim still waiting; a claim change its volumes.

        The real controller also resyncs everything every 15 s; reacting to each change instead makes
        the simulator converge at once where a real cluster takes 0.1-8 s.
        """
        obj = event.obj
        if event.rt.plural == "persistentvolumes":
            waiting = [
                Key(CLAIM, namespace_of(claim), name_of(claim))
                for claim in self.store.iter(self.claims)
                if _phase(claim) != "Bound" or _spec(claim).get("volumeName") == name_of(obj)
            ]
            ref = _spec(obj).get("claimRef") or {}
            own = [Key(CLAIM, ref.get("namespace", ""), ref.get("name", ""))] if ref.get("name") else []
            return [Key(VOLUME, "", name_of(obj)), *own, *waiting]
        referring = [
            Key(VOLUME, "", name_of(volume))
            for volume in self.store.iter(self.volumes)
            if _names(_spec(volume).get("claimRef"), obj)
        ]
        named = [Key(VOLUME, "", _spec(obj)["volumeName"])] if _spec(obj).get("volumeName") else []
        return [Key(CLAIM, namespace_of(obj), name_of(obj)), *named, *referring]

    def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, Key)
        if key.kind == CLAIM:
            claim = self.store.get(self.claims, key.namespace, key.name)
            if claim is not None:
                self._sync_claim(claim)
        else:
            volume = self.store.get(self.volumes, "", key.name)
            if volume is not None:
                self._sync_volume(volume)
        return None

    # -------------------------------------------------------------------------------------- claims
    def _sync_claim(self, claim: Obj) -> None:
        if BIND_COMPLETED in annotations_of(claim):
            self._sync_bound_claim(claim)
        else:
            self._sync_unbound_claim(claim)

    def _sync_bound_claim(self, claim: Obj) -> None:
        """A claim that was bound, possibly in another cluster: its volume must still point back at it."""
        volume_name = _spec(claim).get("volumeName")
        if not volume_name:
            message = "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
            self._claim_lost(claim, None, "ClaimLost", message)
            return
        volume = self.store.get(self.volumes, "", volume_name)
        if volume is None:
            message = "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
            self._claim_lost(claim, None, "ClaimLost", message)
            return
        ref = _spec(volume).get("claimRef")
        if not ref or ref.get("uid") == uid_of(claim):
            self._bind(volume, claim)
            return
        message = "Two claims are bound to the same volume, this one is bound incorrectly"
        self._claim_lost(claim, volume, "ClaimMisbound", message)

    def _sync_unbound_claim(self, claim: Obj) -> None:
        volume_name = _spec(claim).get("volumeName")
        if not volume_name:
            self._find_volume_for(claim)
            return
        volume = self.store.get(self.volumes, "", volume_name)
        if volume is None:
            self._claim_status(claim, "Pending", None)
            return
        if not _spec(volume).get("claimRef"):
            problem = _mismatch(volume, claim)
            if problem is None:
                self._bind(volume, claim)
                return
            message = f'Cannot bind to requested volume "{volume_name}": {problem}'
            self._report(claim, "Warning", "VolumeMismatch", message)
        elif _is_bound_to(volume, claim):
            self._bind(volume, claim)
            return
        else:
            message = f'volume "{volume_name}" already bound to a different claim.'
            self._report(claim, "Warning", "FailedBinding", message)
        self._claim_status(claim, "Pending", None)

    def _find_volume_for(self, claim: Obj) -> None:
        volume = self._best_match(claim)
        if volume is not None:
            self._bind(volume, claim)
            return
        if self._delays_binding(claim):
            message = "waiting for first consumer to be created before binding"
            self._report(claim, "Normal", "WaitForFirstConsumer", message)
        elif not _storage_class(claim):
            message = "no persistent volumes available for this claim and no storage class is set"
            self._report(claim, "Normal", "FailedBinding", message)
        self._claim_status(claim, "Pending", None)

    def _best_match(self, claim: Obj) -> Obj | None:
        """findMatchingVolume: a volume pre-bound to the claim, else the smallest Available one that fits."""
        candidates = [
            volume
            for volume in self.store.iter(self.volumes)
            if not is_terminating(volume)
            and _volume_mode(volume) == _volume_mode(claim)
            and _access_modes_fit(volume, claim)
        ]
        prebound = [volume for volume in candidates if _is_bound_to(volume, claim)]
        if prebound:
            return prebound[0]
        if self._delays_binding(claim):
            return None
        selector = LabelSelector.from_api(_spec(claim).get("selector") or {})
        fitting = [
            volume
            for volume in candidates
            if _phase(volume) == "Available"
            and not _spec(volume).get("claimRef")
            and selector.matches(labels_of(volume))
            and _storage_class(volume) == _storage_class(claim)
            and _capacity(volume) >= _request(claim)
        ]
        return min(fitting, key=_capacity, default=None)

    def _delays_binding(self, claim: Obj) -> bool:
        class_name = _storage_class(claim)
        if not class_name:
            return False
        storage_class = self.store.get(self.type("storage.k8s.io", "storageclasses"), "", class_name)
        return (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"

    # ------------------------------------------------------------------------------------- volumes
    def _sync_volume(self, volume: Obj) -> None:
        ref = _spec(volume).get("claimRef")
        if not ref or not ref.get("uid"):
            self._volume_phase(volume, "Available")
            return
        claim = self.store.get(self.claims, ref.get("namespace", ""), ref.get("name", ""))
        if claim is None or uid_of(claim) != ref.get("uid"):
            self._release(volume)
            return
        claimed = _spec(claim).get("volumeName")
        if not claimed:
            return
        if claimed == name_of(volume):
            self._volume_phase(volume, "Bound")
        elif PROVISIONED_BY in annotations_of(volume) and self._policy(volume) == "Delete":
            self._release(volume)
        else:
            self._unbind(volume)

    @staticmethod
    def _policy(volume: Obj) -> str:
        return _spec(volume).get("persistentVolumeReclaimPolicy") or "Retain"

    def _release(self, volume: Obj) -> None:
        """The claim is gone: Released, then the reclaim policy runs (the data-loss path:
        docs/control-plane-traps.md#pv-reclaim)."""
        if _phase(volume) not in ("Released", "Failed"):
            volume = self._volume_phase(volume, "Released")
        policy = self._policy(volume)
        if policy == "Delete":
            self._delete_volume(volume)
        elif policy == "Recycle":
            self._volume_failed(volume, "VolumeFailedRecycle", "No recycler plugin found for the volume!")
        elif policy != "Retain":
            message = "Volume has unrecognized PersistentVolumeReclaimPolicy"
            self._volume_failed(volume, "VolumeUnknownReclaimPolicy", message)

    def _delete_volume(self, volume: Obj) -> None:
        ref = _spec(volume).get("claimRef") or {}
        claim = f"{ref.get('namespace')}/{ref.get('name')}"
        message = f"Deleted by reclaim policy Delete after its claim {claim} was deleted: its data is gone"
        self.store.delete(self.volumes, "", name_of(volume), precondition_uid=uid_of(volume))
        self.record_event(volume, "Warning", "VolumeDeleted", message)

    def _volume_failed(self, volume: Obj, reason: str, message: str) -> None:
        if _phase(volume) != "Failed":
            volume = self._volume_phase(volume, "Failed", message)
            self.record_event(volume, "Warning", reason, message)

    def _unbind(self, volume: Obj) -> None:
        """unbindVolume: forget a claim that is bound elsewhere; a user's pre-binding keeps its name."""
        updated = clone(volume)
        if BOUND_BY_CONTROLLER in annotations_of(volume):
            del updated["spec"]["claimRef"]
            annotations = updated["metadata"]["annotations"]
            del annotations[BOUND_BY_CONTROLLER]
            if not annotations:
                del updated["metadata"]["annotations"]
        else:
            updated["spec"]["claimRef"].pop("uid", None)
        self._volume_phase(self.store.update(self.volumes, updated), "Available")

    # ------------------------------------------------------------------------------------- binding
    def _bind(self, volume: Obj, claim: Obj) -> None:
        """bind(): claimRef on the volume, volume Bound, volumeName and annotations on the claim, claim Bound.

        Each step is a separate write, as in pv_controller.go, and each is skipped when already done.
        """
        volume = self._volume_phase(self._bind_volume(volume, claim), "Bound")
        claim = self._bind_claim(claim, volume)
        self._claim_status(claim, "Bound", volume)

    def _bind_volume(self, volume: Obj, claim: Obj) -> Obj:
        updated = clone(volume)
        if not _is_bound_to(volume, claim):
            updated["metadata"]["annotations"] = {BOUND_BY_CONTROLLER: "yes", **annotations_of(volume)}
        ref = _spec(volume).get("claimRef")
        if not _names(ref, claim) or ref.get("uid") != uid_of(claim):
            updated["spec"]["claimRef"] = {
                "kind": "PersistentVolumeClaim",
                "namespace": namespace_of(claim),
                "name": name_of(claim),
                "uid": uid_of(claim),
                "apiVersion": "v1",
                "resourceVersion": claim["metadata"]["resourceVersion"],
            }
        return volume if updated == volume else self.store.update(self.volumes, updated)

    def _bind_claim(self, claim: Obj, volume: Obj) -> Obj:
        updated = clone(claim)
        annotations = {BIND_COMPLETED: "yes"}
        if _spec(claim).get("volumeName") != name_of(volume):
            updated["spec"]["volumeName"] = name_of(volume)
            annotations[BOUND_BY_CONTROLLER] = "yes"
        updated["metadata"]["annotations"] = {**annotations, **annotations_of(claim)}
        return claim if updated == claim else self.store.update(self.claims, updated)

    # -------------------------------------------------------------------------------------- status
    def _claim_lost(self, claim: Obj, volume: Obj | None, reason: str, message: str) -> None:
        """updateClaimStatusWithEvent: the Warning is recorded once, on the transition to Lost."""
        if _phase(claim) == "Lost":
            return
        claim = self._claim_status(claim, "Lost", volume)
        self.record_event(claim, "Warning", reason, message)

    def _claim_status(self, claim: Obj, phase: str, volume: Obj | None) -> Obj:
        """updateClaimStatus: access modes follow the volume; capacity is copied when the phase changes."""
        status = dict(claim.get("status") or {}, phase=phase)
        if volume is None:
            status.pop("accessModes", None)
            status.pop("capacity", None)
        else:
            status["accessModes"] = _spec(volume).get("accessModes")
            if _phase(claim) != phase:
                status["capacity"] = _spec(volume).get("capacity")
        return self.store.write_status(self.claims, claim, status)

    def _volume_phase(self, volume: Obj, phase: str, message: str = "") -> Obj:
        if _phase(volume) == phase:
            return volume
        status: dict[str, Any] = {"phase": phase}
        if message:
            status["message"] = message
        return self.store.write_status(self.volumes, volume, status)

    def _report(self, claim: Obj, event_type: str, reason: str, message: str) -> None:
        if (uid_of(claim), reason) not in self._reported:
            self._reported.add((uid_of(claim), reason))
            self.record_event(claim, event_type, reason, message)
