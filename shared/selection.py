"""Which namespaces and which resource types a policy selects, read from the spec and discovery.

The meanings are the README's: an empty or `["*"]` resource list means every namespaced type the member
serves that can be listed, read, created and deleted; the default exclusions (events, endpoints,
endpoint slices) always apply. Namespaces are never implied: an empty list is an error, and `["*"]`
means every member namespace that is not protected and not `default`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.items import GroupResource
from shared.kube import ApiResource, Discovery, UnknownResource
from shared.models import PromotePolicySpec
from shared.ordering import DEFAULT_EXCLUDED

WILDCARD = "*"
MAX_NAMESPACES = 1000
"""Per policy: its status lists every namespace (~0.7 KiB each, bench/promote.py), and Kubernetes refuses
an object over 1.5 MiB, so a larger migration is split over several policies."""


@dataclass
class Selection:
    namespaces: list[str] = field(default_factory=list)
    types: list[ApiResource] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _resolve_all(
    discovery: Discovery, names: Iterable[str], which: str, errors: list[str]
) -> list[ApiResource]:
    resolved = []
    for name in names:
        try:
            resolved.append(discovery.resolve(name))
        except UnknownResource as exc:
            errors.append(f"{which}: {exc}")
    return resolved


def select_types(spec: PromotePolicySpec, discovery: Discovery) -> tuple[list[ApiResource], list[str]]:
    errors: list[str] = []
    if WILDCARD in spec.excluded_namespace_scoped_resources:
        errors.append(
            'excludedNamespaceScopedResources: "*" would exclude everything; list the types to leave out'
        )
    included_names = spec.included_namespace_scoped_resources
    listable = {r.group_resource: r for r in discovery.namespaced_listable()}
    if not included_names or included_names == [WILDCARD]:
        included = list(listable.values())
    else:
        included = _resolve_all(
            discovery,
            [n for n in included_names if n != WILDCARD],
            "includedNamespaceScopedResources",
            errors,
        )
        for resource in included:
            if not resource.namespaced:
                errors.append(
                    f"includedNamespaceScopedResources: {resource.group_resource} is cluster-scoped; "
                    f"cluster-scoped dependencies are backed up automatically"
                )
    excluded = {
        r.group_resource
        for r in _resolve_all(
            discovery,
            [n for n in spec.excluded_namespace_scoped_resources if n != WILDCARD],
            "excludedNamespaceScopedResources",
            errors,
        )
    }
    excluded.update(GroupResource(name) for name in DEFAULT_EXCLUDED)
    chosen = sorted(
        {r.group_resource: r for r in included if r.group_resource not in excluded}.values(),
        key=lambda r: r.group_resource,
    )
    return chosen, errors


def select_namespaces(
    spec: PromotePolicySpec, member_namespaces: Iterable[str], protected: Iterable[str]
) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    protected_set = set(protected)
    existing = set(member_namespaces)
    included = spec.included_namespaces
    excluded = spec.excluded_namespaces
    if not included:
        return [], ['includedNamespaces is empty: list the namespaces to promote (or ["*"] for all)']
    if WILDCARD in excluded:
        errors.append('excludedNamespaces: "*" would exclude everything')
    if included == [WILDCARD]:
        candidates = sorted(existing - protected_set - {"default"})
    else:
        candidates = list(dict.fromkeys(included))
        errors += [
            f'excludedNamespaces: "{ns}" is not in includedNamespaces'
            for ns in excluded
            if ns != WILDCARD and ns not in candidates
        ]
    chosen = [ns for ns in candidates if ns not in excluded]
    if len(chosen) > MAX_NAMESPACES:
        errors.append(
            f"the policy selects {len(chosen)} namespaces, more than the {MAX_NAMESPACES} one policy can "
            f"report in its status (an object must stay under 1.5 MiB): split includedNamespaces over "
            f"several policies"
        )
    errors += [
        f'namespace "{ns}" is protected and cannot be promoted' for ns in chosen if ns in protected_set
    ]
    errors += [
        f'namespace "{ns}" does not exist in the member cluster'
        for ns in chosen
        if ns not in existing and ns not in protected_set
    ]
    return chosen, errors
