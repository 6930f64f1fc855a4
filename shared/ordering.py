"""Order and scope as data, each entry with its reason (after Velero's restore priorities).

The reasons are explained in docs/ordering.md.

The rebuild goes bottom-up: what an object needs at admission or for adoption exists before it, and
pods exist before any controller that could otherwise create replacements
(docs/ordering.md#rebuild-tiers, the order measured to adopt everything with nothing new). One
pure function, `rebuild_tiers`, consumes the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    name: str
    group_resources: tuple[str, ...]
    """In creation order within the tier; empty for the last tier, which takes every type not named."""
    reason: str


REBUILD_TIERS: tuple[Tier, ...] = (
    Tier(
        "crds",
        ("customresourcedefinitions.apiextensions.k8s.io",),
        "custom resources can only be created once their CRD is served (Velero waits for Established)",
    ),
    Tier(
        "namespaces", ("namespaces",), "every namespaced object needs its namespace, and pods its default SA"
    ),
    Tier(
        "classes",
        ("storageclasses.storage.k8s.io", "priorityclasses.scheduling.k8s.io"),
        "claims bind through their class; Priority admission rejects a pod whose class is missing",
    ),
    Tier(
        "persistentvolumes",
        ("persistentvolumes",),
        "PV first, then its claim without binding annotations: binds cleanly, no ClaimLost",
    ),
    Tier("persistentvolumeclaims", ("persistentvolumeclaims",), "pods mounting a claim need it to exist"),
    Tier(
        "rbac",
        (
            "serviceaccounts",
            "roles.rbac.authorization.k8s.io",
            "rolebindings.rbac.authorization.k8s.io",
            "clusterroles.rbac.authorization.k8s.io",
            "clusterrolebindings.rbac.authorization.k8s.io",
        ),
        "ServiceAccount admission needs a pod's account; roles before pods (velero#9471)",
    ),
    Tier("config", ("secrets", "configmaps"), "pods reference them in volumes and env"),
    Tier(
        "pods",
        ("pods",),
        "before any controller, so controllers adopt them instead of creating new ones",
    ),
    Tier(
        "replicasets",
        ("replicasets.apps", "controllerrevisions.apps"),
        "before Deployments, which adopt the existing ReplicaSets and keep their history",
    ),
    Tier(
        "controllers",
        ("deployments.apps", "statefulsets.apps", "cronjobs.batch"),
        "last of the workloads: everything they would otherwise create already exists",
    ),
    Tier("services", ("services",), "after their pods, as measured; Kosmos exports them once they exist"),
    Tier("rest", (), "everything else (ingresses, PDBs, custom resources…), alphabetically"),
)


def rebuild_tiers(present: Iterable[str]) -> list[tuple[Tier, list[str]]]:
    """The tiers holding at least one of the `present` group-resources, each with those types in order;
    types no tier names go to the last tier, sorted."""
    remaining = set(present)
    tiers = []
    for tier in REBUILD_TIERS:
        types = [gr for gr in tier.group_resources if gr in remaining]
        remaining.difference_update(types)
        tiers.append((tier, types))
    tiers[-1][1].extend(sorted(remaining))
    return [(tier, types) for tier, types in tiers if types]


def tier_step(present: Iterable[str], group_resource: str) -> str:
    """Where the rebuild of `group_resource` stands among the namespace's tiers, for a person:
    `rebuild tier 7/9 (pods): pods`."""
    tiers = rebuild_tiers(present)
    for index, (tier, types) in enumerate(tiers, start=1):
        if group_resource in types:
            return f"rebuild tier {index}/{len(tiers)} ({tier.name}): {group_resource}"
    return f"rebuild {group_resource}"


DEFAULT_EXCLUDED: tuple[str, ...] = (
    "events",  # history of the member; never restorable (Velero nonRestorableResources)
    "events.events.k8s.io",  # the same events through the other API group
    "endpoints",  # written by each cluster's endpoints controller from the Service
    "endpointslices.discovery.k8s.io",  # likewise, by the EndpointSlice controller
)
"""Types never backed up, whatever the policy says."""

PROTECTED_NAMESPACES: tuple[str, ...] = (
    "kube-system",  # the cluster's own components
    "kube-public",  # cluster-info, read by anyone
    "kube-node-lease",  # node heartbeats
    "kosmos-system",  # Kosmos itself; a rollback would delete it from the control plane
)
"""Namespaces that are never promoted."""
