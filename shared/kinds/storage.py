"""Volumes: PersistentVolumeClaims, PersistentVolumes, StorageClasses.

Both clusters end up with a PV for the same backing volume, so the one failure that loses data is a
reclaim: the member PVs are switched to Retain before anything is changed (`retain_patch`), and the
rollback sets the control-plane PV to Retain before deleting its claim
(docs/control-plane-traps.md#pv-reclaim). The binding in the control plane works best with the PV
created first, the claim's binding annotations removed and no claim UID on the PV
(docs/control-plane-traps.md#pv-binding).
"""

from __future__ import annotations

from shared.items import GroupResource, ItemRef, Obj
from shared.kinds.bases import ClusterOwnedRule
from shared.kinds.helpers import remove_markers
from shared.kinds.registry import RULES, Catalog, Context, KindRule
from shared.markers import CLUSTER_OWNERS

PERSISTENT_VOLUMES = GroupResource("persistentvolumes")
STORAGE_CLASSES = GroupResource("storageclasses.storage.k8s.io")
RETAIN = "Retain"

BINDING_ANNOTATIONS = (
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
)
"""Set on a claim by the member's PV controller and scheduler. Kept, they make the control plane think
the claim lost its volume (`ClaimLost`/`ClaimMisbound`, docs/control-plane-traps.md#pv-binding); Velero's
pvc_action removes the same ones."""


def _drop_binding_annotations(body: Obj) -> None:
    annotations = body["metadata"].get("annotations") or {}
    for key in BINDING_ANNOTATIONS:
        annotations.pop(key, None)
    if not annotations:
        body["metadata"].pop("annotations", None)


def retain_patch(pv: Obj) -> Obj | None:
    """Merge patch switching a PV to Retain before detach, None if it already is
    (docs/control-plane-traps.md#pv-reclaim)."""
    if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == RETAIN:
        return None
    return {"spec": {"persistentVolumeReclaimPolicy": RETAIN}}


def reclaim_restore_patch(original_policy: str) -> Obj:
    """Merge patch giving a member PV back its backed-up policy: the *last* rollback step
    (docs/control-plane-traps.md#kosmos-twin-deletion)."""
    return {"spec": {"persistentVolumeReclaimPolicy": original_policy}}


@RULES.register
class PersistentVolumeClaimRule(ClusterOwnedRule):
    group_resources = ("persistentvolumeclaims",)

    def related(self, obj: Obj, catalog: Catalog | None = None) -> list[ItemRef]:
        """The bound PV (only once bound, as Kosmos and Velero do) and the StorageClass."""
        spec = obj.get("spec") or {}
        refs = []
        if (obj.get("status") or {}).get("phase") == "Bound" and spec.get("volumeName"):
            refs.append(ItemRef(PERSISTENT_VOLUMES, "", spec["volumeName"]))
        if spec.get("storageClassName"):
            refs.append(ItemRef(STORAGE_CLASSES, "", spec["storageClassName"]))
        return refs

    def tailor(self, body: Obj, original: Obj, ctx: Context) -> None:
        """Binding annotations removed; `spec.volumeName` kept, so the claim binds to the same PV."""
        annotations = body["metadata"].get("annotations") or {}
        for key in BINDING_ANNOTATIONS:
            annotations.pop(key, None)
        super().tailor(body, original, ctx)

    def drop_allocated(self, body: Obj) -> None:
        """Each cluster's volume controllers write their own binding annotations."""
        _drop_binding_annotations(body)


@RULES.register
class PersistentVolumeRule(KindRule):
    """Not touched in the member beyond the Retain switch, which is a step of its own (`retain_patch`)."""

    group_resources = ("persistentvolumes",)

    def tailor(self, body: Obj, original: Obj, ctx: Context) -> None:
        """claimRef keeps namespace/name but loses the member claim's uid and resourceVersion: the control
        plane fills in its own claim's (docs/control-plane-traps.md#pv-binding). Unlike claims, the PV gets
        no `cluster-owners`: with it, deleting the control-plane PV would make Kosmos delete the member's."""
        claim = (body.get("spec") or {}).get("claimRef") or {}
        claim.pop("uid", None)
        claim.pop("resourceVersion", None)
        (body["metadata"].get("annotations") or {}).pop("pv.kubernetes.io/bound-by-controller", None)

    def drop_allocated(self, body: Obj) -> None:
        """claimRef.uid is the UID of the claim in whichever cluster bound it, and the binding annotations
        are each cluster's volume controllers' (docs/control-plane-traps.md#pv-binding)."""
        claim = (body.get("spec") or {}).get("claimRef") or {}
        for key in ("uid", "resourceVersion"):
            claim.pop(key, None)
        _drop_binding_annotations(body)

    def rollback_differences(self, backed_up: Obj, live: Obj) -> list[str]:
        """Its reclaim policy is back to the backed-up one, the rollback's last step."""
        policy = "persistentVolumeReclaimPolicy"
        if (backed_up.get("spec") or {}).get(policy) != (live.get("spec") or {}).get(policy):
            return ["reclaim policy differs"]
        return []

    def revert_rebuild(self, live: Obj, ctx: Context) -> Obj | None:
        """Retain before the rollback deletes the claim, or the control plane reclaims the shared volume
        (docs/control-plane-traps.md#pv-reclaim); and any `cluster-owners` Kosmos may have put on it,
        off."""
        patch = retain_patch(live) or {}
        markers = remove_markers(live, annotations=[CLUSTER_OWNERS])
        return {**patch, **(markers or {})} or None


@RULES.register
class StorageClassRule(KindRule):
    """Plain copy: claims in the control plane need their class to exist (Velero restores it early)."""

    group_resources = ("storageclasses.storage.k8s.io",)
