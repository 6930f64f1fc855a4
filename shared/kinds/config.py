"""ConfigMaps, Secrets, and Events.

ConfigMaps and Secrets are marked `kosmos-io/cluster-owners` in both clusters
(docs/control-plane-traps.md#kosmos-markers): in the control plane the annotation makes Kosmos treat them as
the masters of the member copies, which is also why the rollback must take it off before deleting them
(docs/control-plane-traps.md#kosmos-twin-deletion). The ones each cluster makes for itself are not moved.
"""

from __future__ import annotations

from shared.items import Obj
from shared.kinds.bases import ClusterOwnedRule
from shared.kinds.registry import (
    CREATED_BY_CONTROL_PLANE,
    MANAGED_BY_CLUSTER,
    PROMOTE,
    RULES,
    Decision,
    KindRule,
    Move,
)

ROOT_CA = "kube-root-ca.crt"
TOKEN_SECRET = "kubernetes.io/service-account-token"


@RULES.register
class ConfigMapRule(ClusterOwnedRule):
    group_resources = ("configmaps",)

    def decide(self, obj: Obj) -> Decision:
        """`kube-root-ca.crt` is published into every namespace by each cluster, with its own CA."""
        if obj["metadata"]["name"] == ROOT_CA:
            return Decision(Move.SKIP, CREATED_BY_CONTROL_PLANE)
        return PROMOTE


@RULES.register
class SecretRule(ClusterOwnedRule):
    group_resources = ("secrets",)

    def decide(self, obj: Obj) -> Decision:
        """A token Secret names a member ServiceAccount UID; the control plane's token controller issues its
        own and may delete a copy, which Kosmos would pass on to the member twin
        (docs/control-plane-traps.md#token-secrets)."""
        if obj.get("type") == TOKEN_SECRET:
            return Decision(Move.SKIP, "issued by the cluster's token controller")
        return PROMOTE


@RULES.register
class EventRule(KindRule):
    """A record of what happened in the member; never restorable (Velero's nonRestorableResources)."""

    group_resources = ("events", "events.events.k8s.io")

    def decide(self, obj: Obj) -> Decision:
        return Decision(Move.SKIP, MANAGED_BY_CLUSTER)
