"""The two detach behaviours several kind families share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from shared.items import Obj
from shared.kinds.helpers import (
    mark,
    remove_markers,
    restore_metadata,
    set_metadata,
    stays_with_its_controller,
)
from shared.kinds.registry import (
    NO_OWNERS,
    PROMOTE,
    Context,
    Decision,
    DetachKind,
    DetachStep,
    KindRule,
)
from shared.markers import CLUSTER_OWNERS


class OwnerRule(KindRule):
    """A workload owner. Detach deletes it with Orphan propagation: the garbage collector releases its
    dependents in 0.04-0.07 s and no pod is touched; while it carries a deletionTimestamp its controller does
    nothing (docs/control-plane-traps.md#orphan-deletion). The rollback re-creates it from the backup, so
    there is no revert patch. Its rebuild is the generic strip only: its pod template must stay
    byte-identical, any change is a rollout in the control plane
    (docs/control-plane-traps.md#template-changes)."""

    def decide(self, obj: Obj) -> Decision:
        """An owner that is itself controlled by another kind (an operator's custom resource) stays: that
        controller, still running in the member, would re-create what detach deletes. Owner kinds are not
        promoted yet (see `shared.kinds.custom`); the original deleted them
        (docs/design.md#original-kosmos-promote)."""
        return stays_with_its_controller(obj, self.promoted_with) or PROMOTE

    def detach(self, obj: Obj, ctx: Context) -> DetachStep:
        return DetachStep(DetachKind.ORPHAN_DELETE, reason="owner removed, dependents orphaned and kept")

    def rollback_differences(self, backed_up: Obj, live: Obj) -> list[str]:
        """Re-created from the backup, so its spec must be the backed-up one exactly."""
        return ["spec differs from the backup"] if backed_up.get("spec") != live.get("spec") else []


class MarkedCopyRule(KindRule):
    """A kind detach marks in the member with one Kosmos annotation, removing its ownerReferences (an owner
    deleted by detach would otherwise take it along); the rebuilt copy carries the same annotation unless
    `annotate_in_control_plane` is off, and the rollback takes it off the control-plane object *before*
    deleting it, or Kosmos deletes the member twin (docs/control-plane-traps.md#kosmos-twin-deletion)."""

    marker: ClassVar[str]
    marked_why: ClassVar[str]
    annotate_in_control_plane: ClassVar[bool] = True

    def marker_value(self, ctx: Context) -> str:
        return "true"

    def detach(self, obj: Obj, ctx: Context) -> DetachStep:
        return mark(
            obj,
            self.marked_why,
            annotations={self.marker: self.marker_value(ctx)},
            drop_owner_references=True,
        )

    def revert_detach(
        self, backed_up: Obj, live: Obj, ctx: Context, owner_uids: Mapping[str, str] = NO_OWNERS
    ) -> Obj | None:
        return restore_metadata(backed_up, live, owner_uids, owner_references=True)

    def tailor(self, body: Obj, original: Obj, ctx: Context) -> None:
        if self.annotate_in_control_plane:
            set_metadata(body, "annotations", self.marker, self.marker_value(ctx))

    def revert_rebuild(self, live: Obj, ctx: Context) -> Obj | None:
        return remove_markers(live, annotations=[self.marker])

    def unmark_patch(self) -> Obj | None:
        return {"metadata": {"annotations": {self.marker: None}}}


class ClusterOwnedRule(MarkedCopyRule):
    """A kind Kosmos tracks with `kosmos-io/cluster-owners` (docs/control-plane-traps.md#kosmos-markers).

    In the member the annotation makes the object look like a Kosmos-made copy. In the control plane the
    annotation is what makes Kosmos act on ConfigMaps, Secrets and PVCs; rules for kinds Kosmos does not
    act on there set `annotate_in_control_plane = False`.
    """

    marker = CLUSTER_OWNERS
    marked_why = "marked as a Kosmos copy, ownerReferences removed"

    def marker_value(self, ctx: Context) -> str:
        return ctx.cluster
