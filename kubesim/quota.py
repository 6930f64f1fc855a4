"""ResourceQuota: the admission plugin that refuses what a namespace's quotas do not allow, and the
controller that writes each quota's status.

A control plane's namespaces may get quotas promote does not bring: platforms generate a default
ResourceQuota in every new namespace (Kyverno, Capsule). The rebuild then meets what kube-apiserver does:
a create that would exceed a quota is refused with 403 `exceeded quota: …`; a pod without the requests or
limits a quota tracks with `failed quota: …: must specify …`; and while the quota controller has not yet
written a new quota's `status.hard` (it runs behind the informers), every create the quota covers is
refused with 403 `status unknown for quota: …`, which goes away by itself.

Tracked: `pods`, `count/<resource>[.<group>]` and the legacy counts (`configmaps`, `secrets`,
`services`, `persistentvolumeclaims`, `replicationcontrollers`, `resourcequotas`), and for pods
`requests.cpu`/`cpu`, `requests.memory`/`memory`, `limits.cpu`, `limits.memory` over their containers.
Usage is counted from the store at each create; pods that finished do not count. Not emulated: scopes and
scope selectors, storage and service-type resources, init containers in compute usage, updates (a pod's
resources cannot change anyway), and quantities are printed in base units (`500m`, `134217728`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from kubesim import errors
from kubesim.informers import StoreView
from kubesim.objects import Obj, name_of, namespace_of
from kubesim.resources import ResourceType
from kubesim.store import AdmissionRequest, Store

LEGACY_COUNTS = frozenset(
    {
        "configmaps",
        "secrets",
        "services",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "resourcequotas",
    }
)
COMPUTE = {
    "requests.cpu": ("requests", "cpu"),
    "cpu": ("requests", "cpu"),
    "requests.memory": ("requests", "memory"),
    "memory": ("requests", "memory"),
    "limits.cpu": ("limits", "cpu"),
    "limits.memory": ("limits", "memory"),
}
_SUFFIXES = {
    "m": Decimal("0.001"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def quantity(value: Any) -> Decimal:
    """A resource.Quantity (`500m`, `128Mi`, `2`, `1e3`) as a number of base units."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""]


def shown(amount: Decimal) -> str:
    if amount == amount.to_integral_value():
        return str(int(amount))
    return f"{int(amount * 1000)}m"


def count_names(rt: ResourceType) -> list[str]:
    """The quota resource names one object of `rt` counts against."""
    names = [f"count/{rt.plural}" if not rt.group else f"count/{rt.plural}.{rt.group}"]
    if not rt.group and rt.plural in LEGACY_COUNTS:
        names.append(rt.plural)
    if _is_pods(rt):
        names.append("pods")
    return names


def consumable(rt: ResourceType) -> set[str]:
    """Every quota resource name an object of `rt` can count against."""
    names = set(count_names(rt))
    return names | set(COMPUTE) if _is_pods(rt) else names


def _is_pods(rt: ResourceType) -> bool:
    return rt.plural == "pods" and not rt.group


def _containers(pod: Obj) -> list[Obj]:
    return (pod.get("spec") or {}).get("containers") or []


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def usage(rt: ResourceType, obj: Obj) -> dict[str, Decimal]:
    """What `obj` consumes of every resource a quota could track."""
    if _is_pods(rt) and _finished(obj):
        return {}
    used = {name: Decimal(1) for name in count_names(rt)}
    if _is_pods(rt):
        containers = _containers(obj)
        for name, (kind, resource) in COMPUTE.items():
            amounts = [((c.get("resources") or {}).get(kind) or {}).get(resource) for c in containers]
            used[name] = sum((quantity(a) for a in amounts if a is not None), Decimal(0))
    return used


def _missing(rt: ResourceType, obj: Obj, hard: Mapping[str, Any]) -> list[str]:
    """The compute resources `hard` tracks that a container of the pod `obj` does not specify."""
    if not _is_pods(rt):
        return []
    containers = _containers(obj)

    def unset(kind: str, resource: str) -> bool:
        return any(resource not in ((c.get("resources") or {}).get(kind) or {}) for c in containers)

    return sorted(name for name, (kind, what) in COMPUTE.items() if name in hard and unset(kind, what))


def namespace_usage(
    store: Store | StoreView, rt: ResourceType, namespace: str, names: Iterable[str]
) -> dict[str, Decimal]:
    total = dict.fromkeys(names, Decimal(0))
    for obj in store.list(rt, namespace):
        for name, amount in usage(rt, obj).items():
            if name in total:
                total[name] += amount
    return total


def admit(request: AdmissionRequest) -> None:
    """kube-apiserver's ResourceQuota admission for creates, quota by quota."""
    rt, obj = request.rt, request.obj
    if request.operation != "CREATE" or not rt.namespaced or request.subresource:
        return
    namespace = namespace_of(obj)
    quotas = request.store.list(request.store.type("", "v1", "resourcequotas"), namespace)
    if not quotas:
        return
    wanted = usage(rt, obj)
    name = name_of(obj) or (obj.get("metadata") or {}).get("generateName", "")
    for quota in sorted(quotas, key=name_of):
        hard: Mapping[str, Any] = (quota.get("spec") or {}).get("hard") or {}
        tracked = sorted(resource for resource in wanted if resource in hard)
        if not tracked:
            continue
        missing = _missing(rt, obj, hard)
        if missing:
            why = f"failed quota: {name_of(quota)}: must specify {','.join(missing)}"
            raise errors.forbidden(rt, name, why)
        known = (quota.get("status") or {}).get("hard") or {}
        unknown = [resource for resource in tracked if resource not in known]
        if unknown:
            raise errors.forbidden(
                rt, name, f"status unknown for quota: {name_of(quota)}, resources: {','.join(unknown)}"
            )
        used = namespace_usage(request.store, rt, namespace, tracked)
        exceeded = [r for r in tracked if used[r] + wanted[r] > quantity(hard[r])]
        if exceeded:
            limits = {r: quantity(hard[r]) for r in exceeded}
            raise errors.forbidden(
                rt,
                name,
                f"exceeded quota: {name_of(quota)}, requested: {_listed(wanted, exceeded)}, "
                f"used: {_listed(used, exceeded)}, limited: {_listed(limits, exceeded)}",
            )


def _listed(values: Mapping[str, Decimal], resources: Iterable[str]) -> str:
    """As the apiserver prints resource lists: `pods=1,requests.cpu=500m`."""
    return ",".join(f"{r}={shown(values[r])}" for r in resources)
