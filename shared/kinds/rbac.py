"""ServiceAccounts and RBAC.

Namespaced ones are marked with `kosmos-io/cluster-owners` in the member, as Kosmos does
(docs/ordering.md#detach-order), but not in the control plane, where Kosmos does nothing with the annotation
on these kinds (docs/control-plane-traps.md#kosmos-markers). Cluster-scoped ones come only as dependencies of
a ServiceAccount and are never touched in the member.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from shared.items import GroupResource, ItemRef, Obj
from shared.kinds.bases import ClusterOwnedRule
from shared.kinds.registry import (
    CREATED_BY_CONTROL_PLANE,
    PROMOTE,
    RULES,
    Catalog,
    Context,
    Decision,
    KindRule,
    Move,
)

CLUSTER_ROLES = GroupResource("clusterroles.rbac.authorization.k8s.io")
CLUSTER_ROLE_BINDINGS = GroupResource("clusterrolebindings.rbac.authorization.k8s.io")
BOOTSTRAP_LABEL = ("kubernetes.io/bootstrapping", "rbac-defaults")


@RULES.register
class ServiceAccountRule(ClusterOwnedRule):
    group_resources = ("serviceaccounts",)
    annotate_in_control_plane = False

    def decide(self, obj: Obj) -> Decision:
        """The control plane makes `default` in every new namespace (0.01 s,
        docs/control-plane-traps.md#default-serviceaccount)."""
        if obj["metadata"]["name"] == "default":
            return Decision(Move.SKIP, CREATED_BY_CONTROL_PLANE)
        return PROMOTE

    def related(self, obj: Obj, catalog: Catalog | None = None) -> list[ItemRef]:
        """The ClusterRoleBindings naming exactly this account as a subject, and their ClusterRoles
        (Velero's `RelatedItemsForServiceAccount`). The original took every binding of any account in the
        namespace, shared roles like `cluster-admin` included (docs/design.md#original-kosmos-promote).
        Raises without a catalog: a silent [] would be a silently incomplete backup."""
        if catalog is None:
            raise ValueError("the dependencies of a ServiceAccount need a catalog of ClusterRoleBindings")
        return bindings_of(obj, catalog.cluster_role_bindings())

    def tailor(self, body: Obj, original: Obj, ctx: Context) -> None:
        """Token Secrets `<sa>-token-*` are issued anew by the control plane's token controller and appended
        here (docs/control-plane-traps.md#token-secrets); listing the member's ones would name Secrets that do
        not exist there (as Velero's service_account_action does)."""
        prefix = f"{body['metadata']['name']}-token-"
        kept = [ref for ref in body.get("secrets") or [] if not ref.get("name", "").startswith(prefix)]
        if kept:
            body["secrets"] = kept
        else:
            body.pop("secrets", None)

    def drop_allocated(self, body: Obj) -> None:
        """Each cluster's token controller issues its own token Secret names
        (docs/control-plane-traps.md#token-secrets)."""
        body.pop("secrets", None)


def bindings_of(account: Obj, cluster_role_bindings: Iterable[Obj]) -> list[ItemRef]:
    """For each ClusterRoleBinding with subject {ServiceAccount, this name, this namespace}, in name order:
    its ClusterRole, then the binding itself."""
    namespace, name = account["metadata"].get("namespace", ""), account["metadata"]["name"]
    refs: dict[ItemRef, None] = {}
    for binding in sorted(cluster_role_bindings, key=lambda b: b["metadata"]["name"]):
        if not any(_names_account(subject, namespace, name) for subject in binding.get("subjects") or []):
            continue
        role = binding.get("roleRef") or {}
        if role.get("kind") == "ClusterRole" and role.get("name"):
            refs[ItemRef(CLUSTER_ROLES, "", role["name"])] = None
        refs[ItemRef(CLUSTER_ROLE_BINDINGS, "", binding["metadata"]["name"])] = None
    return list(refs)


def _names_account(subject: Obj, namespace: str, name: str) -> bool:
    return (
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == name
        and subject.get("namespace") == namespace
    )


@RULES.register
class NamespacedRbacRule(ClusterOwnedRule):
    group_resources = ("roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io")
    annotate_in_control_plane = False


@RULES.register
class ClusterRbacRule(KindRule):
    group_resources = (CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS)

    def decide(self, obj: Obj) -> Decision:
        """The API server's bootstrap policy (`cluster-admin`, `view`, `system:*`…) exists in every cluster
        and is reconciled there; a rollback must never delete it
        (docs/control-plane-traps.md#shared-cluster-scoped-objects)."""
        key, value = BOOTSTRAP_LABEL
        if (obj["metadata"].get("labels") or {}).get(key) == value:
            return Decision(Move.SKIP, CREATED_BY_CONTROL_PLANE)
        return PROMOTE

    def drop_allocated(self, body: Obj) -> None:
        """An aggregated ClusterRole's rules are filled in from the roles of the cluster it lives in."""
        if body.get("aggregationRule"):
            body.pop("rules", None)


WILDCARD = "*"
ALLOW_WILDCARD_ROLES = "spec.allowWildcardRoles"


def grants_everything(role: Obj | None) -> bool:
    """Whether a (Cluster)Role has a rule granting every verb (`*`) on every resource (`*`), whatever its
    API groups: `cluster-admin`, or a hand-made copy of it. Subresources and resource names cannot narrow
    a `*` resource; aggregated roles are judged by the rules their controller filled in."""
    return any(
        WILDCARD in (rule.get("verbs") or []) and WILDCARD in (rule.get("resources") or [])
        for rule in (role or {}).get("rules") or []
    )


@dataclass(frozen=True)
class WildcardBinding:
    """A ClusterRoleBinding that makes a ServiceAccount of a promoted namespace all-powerful. Backup copies
    the bindings of each ServiceAccount (`ServiceAccountRule.related`), so promoting the namespace would
    give the account the same power over the whole control plane."""

    namespace: str
    account: str
    binding: str
    role: str

    def _what(self) -> str:
        return (
            f'namespace "{self.namespace}": ClusterRoleBinding "{self.binding}" binds ServiceAccount '
            f'"{self.namespace}/{self.account}" to ClusterRole "{self.role}", which grants every verb on '
            f"every resource"
        )

    def problem(self) -> str:
        return (
            f"{self._what()}; promote would copy that binding into the control plane and make the account "
            f"all-powerful there too. Set {ALLOW_WILDCARD_ROLES}: true to promote it anyway, or narrow "
            f"the binding in the member first"
        )

    def warning(self) -> str:
        return (
            f"{self._what()}; {ALLOW_WILDCARD_ROLES} is true, so the binding is copied into the control plane"
        )


def wildcard_bindings(
    namespaces: Collection[str],
    cluster_role_bindings: Iterable[Obj],
    cluster_role: Callable[[str], Obj | None],
) -> list[WildcardBinding]:
    """Every (binding, ServiceAccount subject in one of `namespaces`) whose ClusterRole grants everything,
    in binding-name order. `cluster_role` reads a ClusterRole by name (None if it does not exist), and is
    asked once per role."""
    found = []
    verdicts: dict[str, bool] = {}
    for binding in sorted(cluster_role_bindings, key=lambda b: b["metadata"]["name"]):
        role = binding.get("roleRef") or {}
        if role.get("kind") != "ClusterRole" or not role.get("name"):
            continue
        subjects = [
            subject
            for subject in binding.get("subjects") or []
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in namespaces
        ]
        if not subjects:
            continue
        if role["name"] not in verdicts:
            verdicts[role["name"]] = grants_everything(cluster_role(role["name"]))
        if verdicts[role["name"]]:
            found += [
                WildcardBinding(
                    subject["namespace"], subject.get("name", ""), binding["metadata"]["name"], role["name"]
                )
                for subject in subjects
            ]
    return found
