"""ClusterRole aggregation: an aggregated ClusterRole's rules are those of the ClusterRoles it selects.

`admin`, `edit` and `view` are built this way in a real cluster, and operators extend them by labelling
their own ClusterRoles `rbac.authorization.k8s.io/aggregate-to-<role>: "true"`; a promoted RoleBinding
to such a role grants whatever the selected roles grant at that moment. pkg/controller/clusterroleaggregation:
the rules of every ClusterRole matching any `aggregationRule.clusterRoleSelectors`, in name order,
without duplicates, written into the aggregated role.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from kubesim.controllers.base import Controller
from kubesim.objects import clone, labels_of, name_of
from kubesim.selectors import LabelSelector, SelectorError
from kubesim.store import Store, WatchEvent


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation-controller"
    watches = ("clusterroles.rbac.authorization.k8s.io",)

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.cluster_roles = self.type("rbac.authorization.k8s.io", "clusterroles")

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        """Any ClusterRole change may change what an aggregated one selects."""
        return [name_of(role) for role in self.store.iter(self.cluster_roles) if role.get("aggregationRule")]

    def reconcile(self, key: Hashable) -> float | None:
        role = self.store.get(self.cluster_roles, "", str(key))
        if role is None or not role.get("aggregationRule"):
            return None
        selectors = []
        for selector in role["aggregationRule"].get("clusterRoleSelectors") or []:
            try:
                selectors.append(LabelSelector.from_api(selector))
            except SelectorError:
                return None
        rules: list[Any] = []
        for other in self.store.iter(self.cluster_roles):
            if name_of(other) == name_of(role) or not any(s.matches(labels_of(other)) for s in selectors):
                continue
            rules += [rule for rule in other.get("rules") or [] if rule not in rules]
        if rules != (role.get("rules") or []):
            updated = clone(role)
            updated["rules"] = rules
            self.store.update(self.cluster_roles, updated)
        return None
