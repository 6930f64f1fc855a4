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
`requests.cpu`/`cpu`, `requests.memory`/`memory`, `limits.cpu`, `limits.memory` as kube-apiserver sums
them: the containers, plus sidecars (init containers that keep running), or the largest init container if
more. Usage is counted from the store at each create; `pods` and compute leave out pods that finished or
whose deletion grace ran out, `count/pods` counts every pod stored. Scopes (`spec.scopes` and
`spec.scopeSelector`: Terminating, NotTerminating, BestEffort, NotBestEffort, PriorityClass,
CrossNamespacePodAffinity) narrow a quota to the pods they match, and a scoped quota covers nothing else.
Not emulated: storage, ephemeral-storage, extended and service-type resources, pod-level resources and
overhead, checks on update (a pod's resources cannot change anyway), and quantities are printed in base
units (`500m`, `134217728`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
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
    """Every container of the pod, init containers last: each must give what a quota tracks."""
    spec = pod.get("spec") or {}
    return [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]


def _charged(pod: Obj) -> bool:
    """Whether the pod counts against `pods` and compute: not once it finished, nor once its deletion's
    grace period has run out (a pod stuck Terminating on a lost node must not hold its namespace's quota)."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    metadata = pod.get("metadata") or {}
    deleted, grace = metadata.get("deletionTimestamp"), metadata.get("deletionGracePeriodSeconds")
    if deleted is None or grace is None:
        return True
    expiry = datetime.fromisoformat(deleted.replace("Z", "+00:00")) + timedelta(seconds=grace)
    return datetime.now(UTC) <= expiry


def _amounts(container: Obj, kind: str) -> dict[str, Decimal]:
    given = (container.get("resources") or {}).get(kind) or {}
    return {resource: quantity(given[resource]) for resource in ("cpu", "memory") if resource in given}


def _added(total: dict[str, Decimal], more: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {r: total.get(r, Decimal(0)) + more.get(r, Decimal(0)) for r in total.keys() | more.keys()}


def _largest(one: Mapping[str, Decimal], other: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {r: max(one.get(r, Decimal(0)), other.get(r, Decimal(0))) for r in one.keys() | other.keys()}


def pod_resources(pod: Obj, kind: str) -> dict[str, Decimal]:
    """The pod's `requests` or `limits` of cpu and memory as kube-apiserver charges them: the containers
    and sidecars (init containers with `restartPolicy: Always`) together, or, if more, the largest init
    container with the sidecars started before it."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or ():
        total = _added(total, _amounts(container, kind))
    sidecars: dict[str, Decimal] = {}
    initialising: dict[str, Decimal] = {}
    for container in spec.get("initContainers") or ():
        amounts = _amounts(container, kind)
        if container.get("restartPolicy") == "Always":
            total = _added(total, amounts)
            sidecars = _added(sidecars, amounts)
            initialising = _largest(initialising, sidecars)
        else:
            initialising = _largest(initialising, _added(amounts, sidecars))
    return _largest(total, initialising)


def usage(rt: ResourceType, obj: Obj) -> dict[str, Decimal]:
    """What `obj` consumes of every resource a quota could track."""
    used = {name: Decimal(1) for name in count_names(rt)}
    if not _is_pods(rt):
        return used
    if not _charged(obj):
        return {name: amount for name, amount in used.items() if name != "pods"}
    charged = {kind: pod_resources(obj, kind) for kind in ("requests", "limits")}
    for name, (kind, resource) in COMPUTE.items():
        used[name] = charged[kind].get(resource, Decimal(0))
    return used


def _best_effort(pod: Obj) -> bool:
    """The BestEffort QoS class: no container, init containers included, asks for or is limited to any cpu
    or memory."""
    return not any(
        amount > 0
        for container in _containers(pod)
        for kind in ("requests", "limits")
        for amount in _amounts(container, kind).values()
    )


def _terminating(pod: Obj) -> bool:
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    return deadline is not None and deadline >= 0


def _priority_class(pod: Obj, selector: Mapping[str, Any]) -> bool:
    """As a label selector on `{"PriorityClass": <the pod's class>}`, the key absent when it has none."""
    name = (pod.get("spec") or {}).get("priorityClassName") or ""
    operator, values = selector.get("operator"), selector.get("values") or ()
    if operator == "Exists":
        return bool(name)
    if operator == "DoesNotExist":
        return not name
    if operator == "In":
        return bool(name) and name in values
    return not name or name not in values  # NotIn


def _cross_namespace_affinity(pod: Obj) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        terms = affinity.get(kind) or {}
        required = terms.get("requiredDuringSchedulingIgnoredDuringExecution") or ()
        preferred = terms.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        for term in [*required, *((weighted.get("podAffinityTerm") or {}) for weighted in preferred)]:
            if term.get("namespaces") or term.get("namespaceSelector") is not None:
                return True
    return False


SCOPES: dict[str, Callable[[Obj, Mapping[str, Any]], bool]] = {
    "Terminating": lambda pod, _: _terminating(pod),
    "NotTerminating": lambda pod, _: not _terminating(pod),
    "BestEffort": lambda pod, _: _best_effort(pod),
    "NotBestEffort": lambda pod, _: not _best_effort(pod),
    "PriorityClass": _priority_class,
    "CrossNamespacePodAffinity": lambda pod, _: _cross_namespace_affinity(pod),
}
"""kube-apiserver's podMatchesScopeFunc, one function per scope name; an unknown scope matches nothing."""


def _scope_selectors(quota: Obj) -> list[Mapping[str, Any]]:
    spec = quota.get("spec") or {}
    return [
        *({"scopeName": scope, "operator": "Exists"} for scope in spec.get("scopes") or ()),
        *((spec.get("scopeSelector") or {}).get("matchExpressions") or ()),
    ]


def covers(quota: Obj, rt: ResourceType, obj: Obj) -> bool:
    """Whether the quota's scopes take `obj` in: every object when it has none, else pods every scope
    matches (kube-apiserver's other evaluators match no scope, so a scoped quota counts nothing else)."""
    selectors = _scope_selectors(quota)
    if not selectors:
        return True
    return _is_pods(rt) and all(
        SCOPES.get(selector.get("scopeName", ""), lambda *_: False)(obj, selector) for selector in selectors
    )


def _missing(rt: ResourceType, obj: Obj, hard: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per compute resource `hard` tracks, the containers of the pod `obj` (init containers too) that do
    not specify it."""
    if not _is_pods(rt):
        return {}
    missing: dict[str, list[str]] = {}
    for name, (kind, resource) in sorted(COMPUTE.items()):
        if name not in hard:
            continue
        unset = [c.get("name", "") for c in _containers(obj) if _amounts(c, kind).get(resource) is None]
        if unset:
            missing[name] = sorted(unset)
    return missing


def namespace_usage(
    store: Store | StoreView, rt: ResourceType, quota: Obj, names: Iterable[str]
) -> dict[str, Decimal]:
    """What the objects of `rt` in the quota's namespace that its scopes cover use of `names`."""
    total = dict.fromkeys(names, Decimal(0))
    for obj in store.list(rt, namespace_of(quota)):
        if not covers(quota, rt, obj):
            continue
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
        if not tracked or not covers(quota, rt, obj):
            continue
        missing = _missing(rt, obj, hard)
        if missing:
            listed = "; ".join(f"{resource} for: {','.join(names)}" for resource, names in missing.items())
            why = f"failed quota: {name_of(quota)}: must specify {listed}"
            raise errors.forbidden(rt, name, why)
        known = (quota.get("status") or {}).get("hard") or {}
        unknown = [resource for resource in tracked if resource not in known]
        if unknown:
            raise errors.forbidden(
                rt, name, f"status unknown for quota: {name_of(quota)}, resources: {','.join(unknown)}"
            )
        used = namespace_usage(request.store, rt, quota, tracked)
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
