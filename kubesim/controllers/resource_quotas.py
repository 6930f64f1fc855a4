"""The ResourceQuota controller: each quota's `status.hard` and `status.used` (kubesim/quota.py has the
admission plugin that enforces them)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from decimal import Decimal
from typing import Any, cast

from kubesim.controllers.base import Controller
from kubesim.objects import name_of, namespace_of
from kubesim.quota import consumable, namespace_usage, shown
from kubesim.store import Store, WatchEvent


class ResourceQuotaController(Controller):
    """Writes each quota's `status.hard` (its spec) and `status.used`. It sees quotas through the
    informers' delay line, so a new quota's status appears as late as the informer lag says: until then
    the admission plugin refuses what the quota covers ("status unknown")."""

    name = "resourcequota-controller"
    watches = ("*",)
    live = ()

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.quotas = self.type("", "resourcequotas")

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        namespace = namespace_of(event.obj)
        if not namespace:
            return []
        if event.rt == self.quotas:
            return [(namespace, name_of(event.obj))]
        return [(namespace, name_of(quota)) for quota in self.store.list(self.quotas, namespace)]

    def reconcile(self, key: Hashable) -> float | None:
        namespace, name = cast(tuple[str, str], key)
        quota = self.store.get(self.quotas, namespace, name)
        if quota is None:
            return None
        hard: Mapping[str, Any] = (quota.get("spec") or {}).get("hard") or {}
        used = dict.fromkeys(hard, Decimal(0))
        for rt in self.store.registry:
            if rt.namespaced and consumable(rt) & set(hard):
                for resource, amount in namespace_usage(self.store, rt, quota, hard).items():
                    used[resource] += amount
        status = {"hard": dict(hard), "used": {resource: shown(amount) for resource, amount in used.items()}}
        if quota.get("status") != status:
            self.store.write_status(self.quotas, quota, status)
        return None
