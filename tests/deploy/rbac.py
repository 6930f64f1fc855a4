"""Kubernetes RBAC, evaluated the way the API server's authorizer does, over the shipped manifests.

A request is allowed when any rule bound to the account allows it: ClusterRoles bound by a
ClusterRoleBinding anywhere, (Cluster)Roles bound by a RoleBinding in that binding's namespace only. A rule
allows a request when it matches its verb (or `*`), its API group (or `*`), its resource: `*`, the exact
`resource` or `resource/subresource`, or `*/subresource`, and, when the rule lists resourceNames, the
object's name (never a create, list or watch: they name no object). This mirrors
k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go (VerbMatches, APIGroupMatches, ResourceMatches,
ResourceNameMatches). Non-resource URLs (discovery: /api, /apis) are granted to every authenticated user by
the built-in `system:discovery` ClusterRole and are not evaluated here.

The base is what `deploy/` declares; an overlay's rules are the base's with its patches applied: a patch
is a whole (Cluster)Role whose `rules` replace the base's (a strategic merge patch replaces lists of
PolicyRule whole: PolicyRule has no merge key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.support import OVERLAYS, by_kind, kustomization

NAMESPACE = "kosmos-promote"
"""Where kustomize puts every namespaced object of the installation (deploy/kustomization.yaml)."""
RESTRICTED = OVERLAYS / "restricted"


@dataclass(frozen=True)
class Request:
    """One API request as the authorizer sees it. `namespace` is "" for a cluster-scoped object, and for
    a list or watch across all namespaces."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def __str__(self) -> str:
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        if self.subresource:
            resource += f"/{self.subresource}"
        where = f" in {self.namespace}" if self.namespace else " (cluster-wide)"
        return f"{self.verb} {resource}{where}" + (f" {self.name!r}" if self.name else "")


def rule_allows(rule: Mapping[str, Any], request: Request) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and request.verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and request.group not in groups:
        return False
    combined = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    resources = rule.get("resources") or []
    if not any(
        r == "*" or r == combined or (request.subresource and r == f"*/{request.subresource}")
        for r in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or request.name in names


@dataclass(frozen=True)
class Grant:
    """Rules bound to an account, and where they apply: everywhere (ClusterRoleBinding) or in one
    namespace (RoleBinding)."""

    rules: tuple[Mapping[str, Any], ...]
    namespace: str | None
    source: str

    def allows(self, request: Request) -> bool:
        if self.namespace is not None and request.namespace != self.namespace:
            return False
        return any(rule_allows(rule, request) for rule in self.rules)


@dataclass(frozen=True)
class Permissions:
    account: str
    grants: tuple[Grant, ...]

    def allows(self, request: Request) -> bool:
        return any(grant.allows(request) for grant in self.grants)

    def granting(self, request: Request) -> list[str]:
        return [grant.source for grant in self.grants if grant.allows(request)]

    def cluster_wide_rules(self) -> list[Mapping[str, Any]]:
        return [rule for grant in self.grants if grant.namespace is None for rule in grant.rules]

    def namespaced_rules(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [(g.namespace, rule) for g in self.grants if g.namespace is not None for rule in g.rules]


def _patched(roles: dict[str, dict[str, Any]], kind: str, patches: Iterable[dict[str, Any]]) -> None:
    for patch in patches:
        if patch["kind"] == kind:
            name = patch["metadata"]["name"]
            assert name in roles, f"overlay patches {kind}/{name}, which the base does not have"
            roles[name] = {**roles[name], "rules": patch["rules"]}


def overlay_patches(overlay: Path) -> list[dict[str, Any]]:
    """The objects of an overlay's `patches` (each a file path)."""
    found = []
    for entry in kustomization(overlay / "kustomization.yaml").get("patches", []):
        found += [body for body in yaml.safe_load_all((overlay / entry["path"]).read_text()) if body]
    return found


@cache
def permissions(account: str, overlay: Path | None = None) -> Permissions:
    """What the ServiceAccount `account` of this installation may do, as shipped (or with `overlay`)."""
    patches = overlay_patches(overlay) if overlay else []
    cluster_roles = dict(by_kind("ClusterRole"))
    roles = dict(by_kind("Role"))
    _patched(cluster_roles, "ClusterRole", patches)
    _patched(roles, "Role", patches)
    grants = []
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in by_kind(kind).values():
            if not any(
                s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace") == NAMESPACE
                for s in binding["subjects"]
            ):
                continue
            ref = binding["roleRef"]
            role = (cluster_roles if ref["kind"] == "ClusterRole" else roles)[ref["name"]]
            scope = None if kind == "ClusterRoleBinding" else binding["metadata"].get("namespace", NAMESPACE)
            source = f"{kind} {binding['metadata']['name']} -> {ref['kind']} {ref['name']}"
            grants.append(Grant(tuple(role["rules"]), scope, source))
    return Permissions(account, tuple(grants))
