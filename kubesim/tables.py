"""The Table format (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which `kubectl get` asks for.

kube-apiserver prints each row itself: built-in kinds with their printers (pkg/printers/internalversion,
the columns `kubectl get` and `-o wide` show), custom resources with their CRD's
`additionalPrinterColumns` (Name first; `Age` when none are declared, as CRD defaulting adds), and any
other kind with the default convertor (Name, Created At). Rows carry the object's metadata as a
PartialObjectMetadata (`includeObject=Metadata`, kubectl's default), the whole object for
`includeObject=Object`, nothing for `None`.

Printers are written for the kinds promote and the demo show (pods, workloads, services, namespaces,
nodes, config); other built-ins use the default convertor. Durations are Go's `HumanDuration`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubesim.objects import Obj, labels_of, meta
from kubesim.selectors import label_selector_string

Column = tuple[str, str, str, int]
"""(name, type, format, priority): a column definition; priority 1 columns appear with `-o wide`."""
Printer = tuple[Sequence[Column], Callable[[Obj], list[Any]]]

NAME: Column = ("Name", "string", "name", 0)
AGE: Column = ("Age", "string", "", 0)
_DESCRIPTIONS = {
    "Name": "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. Name is "
    "primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object was created.",
}


def wants_table(accept: str) -> str | None:
    """The meta.k8s.io version of Table the client accepts first, if it asks for one."""
    for media_range in accept.split(","):
        params = dict(part.strip().split("=", 1) for part in media_range.split(";")[1:] if "=" in part)
        if (
            params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io"
            and params.get("v") in ("v1", "v1beta1")
        ):
            return params["v"]
    return None


def human_duration(seconds: float) -> str:
    """Go's `duration.HumanDuration`, as `kubectl get` prints ages."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def _age(obj: Obj) -> str:
    created = meta(obj).get("creationTimestamp")
    if not created:
        return "<unknown>"
    then = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    return human_duration((dt.datetime.now(dt.UTC) - then).total_seconds())


def _spec(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _containers(template: Mapping[str, Any]) -> tuple[str, str]:
    containers = (template.get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _selector(selector: Mapping[str, Any] | None) -> str:
    return label_selector_string(selector) or "<none>"


def _condition_true(obj: Obj, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in _status(obj).get("conditions") or []
    )


def _pod(pod: Obj) -> list[Any]:
    status, spec = _status(pod), _spec(pod)
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    reason = status.get("reason") or status.get("phase") or "Pending"
    for container in statuses:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated.get("reason") and status.get("phase") not in ("Succeeded", "Failed"):
            reason = terminated["reason"]
    if meta(pod).get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    gates = spec.get("readinessGates") or []
    return [
        meta(pod).get("name"),
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        str(restarts),
        _age(pod),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"{sum(_condition_true(pod, gate.get('conditionType', '')) for gate in gates)}/{len(gates)}"
        if gates
        else "<none>",
    ]


def _workload_wide(obj: Obj) -> list[Any]:
    containers, images = _containers(_spec(obj).get("template") or {})
    return [containers, images, _selector(_spec(obj).get("selector"))]


def _deployment(obj: Obj) -> list[Any]:
    status = _status(obj)
    replicas = _spec(obj).get("replicas", 1)
    return [
        meta(obj).get("name"),
        f"{status.get('readyReplicas', 0)}/{replicas}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj),
        *_workload_wide(obj),
    ]


def _replicaset(obj: Obj) -> list[Any]:
    status = _status(obj)
    return [
        meta(obj).get("name"),
        _spec(obj).get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(obj),
        *_workload_wide(obj),
    ]


def _statefulset(obj: Obj) -> list[Any]:
    replicas = _spec(obj).get("replicas", 1)
    return [
        meta(obj).get("name"),
        f"{_status(obj).get('readyReplicas', 0)}/{replicas}",
        _age(obj),
        *_workload_wide(obj)[:2],
    ]


def _daemonset(obj: Obj) -> list[Any]:
    status = _status(obj)
    node_selector = ((_spec(obj).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [
        meta(obj).get("name"),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or "<none>",
        _age(obj),
        *_workload_wide(obj),
    ]


def _job(obj: Obj) -> list[Any]:
    status = _status(obj)
    completions = _spec(obj).get("completions")
    shown = (
        f"{status.get('succeeded', 0)}/{completions}"
        if completions is not None
        else f"{status.get('succeeded', 0)}/1 of {_spec(obj).get('parallelism', 1)}"
    )
    duration = ""
    if status.get("startTime"):
        start = dt.datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
        end_text = status.get("completionTime")
        end = (
            dt.datetime.fromisoformat(end_text.replace("Z", "+00:00"))
            if end_text
            else dt.datetime.now(dt.UTC)
        )
        duration = human_duration((end - start).total_seconds())
    return [meta(obj).get("name"), shown, duration, _age(obj), *_workload_wide(obj)]


def _service(obj: Obj) -> list[Any]:
    spec, status = _spec(obj), _status(obj)
    kind = spec.get("type", "ClusterIP")
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress) or ",".join(
        spec.get("externalIPs") or []
    )
    if not external:
        external = "<pending>" if kind == "LoadBalancer" else (spec.get("externalName") or "<none>")
    ports = []
    for port in spec.get("ports") or []:
        text = f"{port.get('port')}/{port.get('protocol', 'TCP')}"
        if port.get("nodePort"):
            text = f"{port.get('port')}:{port['nodePort']}/{port.get('protocol', 'TCP')}"
        ports.append(text)
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [
        meta(obj).get("name"),
        kind,
        spec.get("clusterIP") or "<none>",
        external,
        ",".join(ports) or "<none>",
        _age(obj),
        selector,
    ]


def _node(obj: Obj) -> list[Any]:
    status = _status(obj)
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    if _spec(obj).get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = sorted(
        key.removeprefix("node-role.kubernetes.io/")
        for key in labels_of(obj)
        if key.startswith("node-role.kubernetes.io/")
    )
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        meta(obj).get("name"),
        state,
        ",".join(roles) or "<none>",
        _age(obj),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def _wide(*names: str) -> list[Column]:
    return [(name, "string", "", 1) for name in names]


PRINTERS: dict[str, Printer] = {
    "pods": (
        [
            NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            AGE,
            *_wide("IP", "Node", "Nominated Node", "Readiness Gates"),
        ],
        _pod,
    ),
    "deployments.apps": (
        [
            NAME,
            ("Ready", "string", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            AGE,
            *_wide("Containers", "Images", "Selector"),
        ],
        _deployment,
    ),
    "replicasets.apps": (
        [
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            AGE,
            *_wide("Containers", "Images", "Selector"),
        ],
        _replicaset,
    ),
    "statefulsets.apps": (
        [NAME, ("Ready", "string", "", 0), AGE, *_wide("Containers", "Images")],
        _statefulset,
    ),
    "daemonsets.apps": (
        [
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            ("Node Selector", "string", "", 0),
            AGE,
            *_wide("Containers", "Images", "Selector"),
        ],
        _daemonset,
    ),
    "jobs.batch": (
        [
            NAME,
            ("Completions", "string", "", 0),
            ("Duration", "string", "", 0),
            AGE,
            *_wide("Containers", "Images", "Selector"),
        ],
        _job,
    ),
    "services": (
        [
            NAME,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            AGE,
            *_wide("Selector"),
        ],
        _service,
    ),
    "namespaces": (
        [NAME, ("Status", "string", "", 0), AGE],
        lambda obj: [meta(obj).get("name"), _status(obj).get("phase", ""), _age(obj)],
    ),
    "nodes": (
        [
            NAME,
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            AGE,
            ("Version", "string", "", 0),
            *_wide("Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"),
        ],
        _node,
    ),
    "configmaps": (
        [NAME, ("Data", "integer", "", 0), AGE],
        lambda obj: [
            meta(obj).get("name"),
            len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
            _age(obj),
        ],
    ),
    "secrets": (
        [NAME, ("Type", "string", "", 0), ("Data", "integer", "", 0), AGE],
        lambda obj: [meta(obj).get("name"), obj.get("type", ""), len(obj.get("data") or {}), _age(obj)],
    ),
    "serviceaccounts": (
        [NAME, ("Secrets", "integer", "", 0), AGE],
        lambda obj: [meta(obj).get("name"), len(obj.get("secrets") or []), _age(obj)],
    ),
}
DEFAULT: Printer = (
    [NAME, ("Created At", "date", "", 0)],
    lambda obj: [meta(obj).get("name"), meta(obj).get("creationTimestamp")],
)

_JSON_PATH = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def json_path(obj: Any, path: str) -> Any:
    """The simple JSONPath forms printer columns use: `.a.b`, `.a[0].b`; None when absent."""
    value = obj
    for key, index in _JSON_PATH.findall(path.strip().strip("{}")):
        if key:
            value = value.get(key) if isinstance(value, dict) else None
        else:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        if value is None:
            return None
    return value


def crd_printer(crd: Obj, version: str) -> Printer:
    """Name, then the version's `additionalPrinterColumns` (`Age` on creationTimestamp when none)."""
    entry: dict[str, Any] = next(
        (v for v in (crd.get("spec") or {}).get("versions") or [] if v.get("name") == version), {}
    )
    declared = entry.get("additionalPrinterColumns") or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]
    columns = [NAME] + [
        (c["name"], c.get("type", "string"), c.get("format", ""), int(c.get("priority", 0))) for c in declared
    ]

    def cells(obj: Obj) -> list[Any]:
        return [meta(obj).get("name")] + [json_path(obj, c.get("jsonPath", "")) for c in declared]

    return columns, cells


def table(
    printer: Printer,
    objects: Sequence[Obj],
    list_meta: Mapping[str, Any],
    version: str,
    include: str,
) -> dict[str, Any]:
    columns, cells = printer
    definitions = [
        {
            "name": name,
            "type": kind,
            "format": fmt,
            "description": _DESCRIPTIONS.get(name, name),
            "priority": priority,
        }
        for name, kind, fmt, priority in columns
    ]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": cells(obj)}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": f"meta.k8s.io/{version}",
                "metadata": obj.get("metadata") or {},
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": dict(list_meta),
        "columnDefinitions": definitions,
        "rows": rows,
    }
