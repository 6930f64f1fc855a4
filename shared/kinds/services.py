"""Services, and the endpoint objects the cluster derives from them.

A Service is re-created in the control plane with `kosmos.io/auto-create-mcs`, so Kosmos exports it to every
cluster; the member Service keeps its cluster IP, and only gets the same annotation as a marker
(docs/control-plane-traps.md#kosmos-markers). Values the cluster allocated are not copied
(docs/control-plane-traps.md#cluster-ips; as Velero's `service_action.go` does).
"""

from __future__ import annotations

import json
from typing import Any

from shared.items import Obj
from shared.kinds.bases import MarkedCopyRule
from shared.kinds.registry import (
    MANAGED_BY_CLUSTER,
    RULES,
    Context,
    Decision,
    KindRule,
    Move,
)
from shared.markers import AUTO_CREATE_MCS

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


@RULES.register
class ServiceRule(MarkedCopyRule):
    group_resources = ("services",)
    marker = AUTO_CREATE_MCS
    marked_why = "member Service marked for Kosmos multi-cluster services, ownerReferences removed"

    def tailor(self, body: Obj, original: Obj, ctx: Context) -> None:
        """The member's cluster IP is taken in the control plane too (both allocate from the same range: a
        copy is refused with 422) and cannot be had by chance, so it is left to the control plane; a headless
        Service stays `None` (docs/control-plane-traps.md#cluster-ips). Node ports likewise, unless the user
        set them explicitly: then the control plane must honour them."""
        spec = body.setdefault("spec", {})
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        explicit = _ExplicitFields(original) if spec.get("type") in NODE_PORT_TYPES else None
        for port in spec.get("ports") or []:
            if "nodePort" in port and not (explicit and explicit.node_port(port)):
                del port["nodePort"]
        if "healthCheckNodePort" in spec and not (explicit and explicit.health_check_node_port()):
            del spec["healthCheckNodePort"]
        super().tailor(body, original, ctx)

    def drop_allocated(self, body: Obj) -> None:
        """Each cluster allocates cluster IPs and node ports from its own ranges
        (docs/control-plane-traps.md#cluster-ips)."""
        spec = body.get("spec") or {}
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        spec.pop("healthCheckNodePort", None)
        for port in spec.get("ports") or []:
            port.pop("nodePort", None)


class _ExplicitFields:
    """Which allocated Service fields a user set explicitly, as Velero decides it: named in the
    last-applied-configuration of `kubectl apply`, or owned by a manager in managedFields (server-side
    apply and other writers leave no last-applied annotation). An allocated value appears in neither."""

    def __init__(self, service: Obj) -> None:
        self.applied = _applied_spec(service)
        self.managed = [
            ((entry.get("fieldsV1") or {}).get("f:spec") or {})
            for entry in service["metadata"].get("managedFields") or []
        ]

    def node_port(self, port: Obj) -> bool:
        """Velero matches applied ports by name, or by the nodePort value for an unnamed port; managed
        fields name a port by its (port, protocol) key."""
        for applied in self.applied.get("ports") or []:
            if not applied.get("nodePort"):
                continue
            if port.get("name") and applied.get("name") == port["name"]:
                return True
            if not port.get("name") and _as_int(applied["nodePort"]) == port.get("nodePort"):
                return True
        key = {"port": port.get("port"), "protocol": port.get("protocol", "TCP")}
        return any(
            "f:nodePort" in fields
            for spec in self.managed
            for raw, fields in (spec.get("f:ports") or {}).items()
            if _list_key(raw) == key
        )

    def health_check_node_port(self) -> bool:
        return bool(self.applied.get("healthCheckNodePort")) or any(
            "f:healthCheckNodePort" in spec for spec in self.managed
        )


def _applied_spec(service: Obj) -> Obj:
    """spec of the last-applied-configuration, {} if there is none or it is not a JSON object."""
    raw = (service["metadata"].get("annotations") or {}).get(LAST_APPLIED)
    try:
        applied = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    spec = applied.get("spec") if isinstance(applied, dict) else None
    return spec if isinstance(spec, dict) else {}


def _list_key(raw: str) -> Any:
    """The object of a managedFields list key `k:{"port":80,"protocol":"TCP"}`, None for other keys."""
    if not raw.startswith("k:"):
        return None
    try:
        return json.loads(raw[2:])
    except ValueError:
        return None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@RULES.register
class EndpointsRule(KindRule):
    """Written by the endpoints controllers of each cluster from the Service's pods; a copy would be
    stale at once (default-excluded, `shared.ordering.DEFAULT_EXCLUDED`)."""

    group_resources = ("endpoints", "endpointslices.discovery.k8s.io")

    def decide(self, obj: Obj) -> Decision:
        return Decision(Move.SKIP, MANAGED_BY_CLUSTER)
