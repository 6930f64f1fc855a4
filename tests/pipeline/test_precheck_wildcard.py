"""A ServiceAccount bound cluster-wide to an all-powerful ClusterRole is not copied silently.

Backup copies the ClusterRoleBindings naming each ServiceAccount of a promoted namespace (and their
ClusterRoles), so an account that is cluster-admin in the member would become cluster-admin in the control
plane. The precheck refuses such a namespace, naming the binding, the role and the field to set, unless
`spec.allowWildcardRoles: true`; then it only warns. Through the whole installation (status, nothing
written) and against `precheck()` directly (the warnings, which the watcher does not publish yet).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from shared.kinds.rbac import grants_everything, wildcard_bindings
from shared.kube import Kube
from shared.models import PromotePolicySpec
from shared.precheck import precheck
from tests.pipeline.conftest import Installation
from tests.pipeline.test_precheck import fail_precheck

EVERYTHING = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
READ_SECRETS = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]


def _bound_namespace(installation: Installation, rules: list[dict[str, object]]) -> tuple[str, str, str]:
    """A member namespace with a ServiceAccount bound by a ClusterRoleBinding to a new ClusterRole with
    `rules`: (namespace, binding, role)."""
    suffix = uuid.uuid4().hex[:6]
    namespace, role, binding = f"wild-{suffix}", f"wild-role-{suffix}", f"wild-binding-{suffix}"
    core = client.CoreV1Api(installation.member_api)
    rbac = client.RbacAuthorizationV1Api(installation.member_api)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "deployer"}})
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": rules})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}],
        }
    )
    return namespace, binding, role


@pytest.fixture
def control_plane(installation: Installation) -> Iterator[Kube]:
    with Kube.from_kubeconfig(installation.env["KPROMOTE_KUBECONFIG"]) as kube:
        yield kube


def test_a_service_account_bound_to_every_verb_on_every_resource_fails_precheck(
    installation: Installation,
) -> None:
    namespace, binding, role = _bound_namespace(installation, EVERYTHING)

    errors = fail_precheck(installation, f"pre-{namespace}", includedNamespaces=[namespace])

    assert errors == [
        f'namespace "{namespace}": ClusterRoleBinding "{binding}" binds ServiceAccount '
        f'"{namespace}/deployer" to ClusterRole "{role}", which grants every verb on every resource; '
        f"promote would copy that binding into the control plane and make the account all-powerful there "
        f"too. Set spec.allowWildcardRoles: true to promote it anyway, or narrow the binding in the member "
        f"first"
    ]


def test_allow_wildcard_roles_turns_the_refusal_into_a_warning(
    installation: Installation, control_plane: Kube
) -> None:
    namespace, binding, role = _bound_namespace(installation, EVERYTHING)

    refused = precheck(
        control_plane, PromotePolicySpec(cluster_name="member1", included_namespaces=[namespace]), []
    )
    allowed = precheck(
        control_plane,
        PromotePolicySpec(cluster_name="member1", included_namespaces=[namespace], allow_wildcard_roles=True),
        [],
    )

    assert (
        not refused.ok and len(refused.errors) == 1 and "spec.allowWildcardRoles: true" in refused.errors[0]
    )
    assert refused.warnings == []
    assert allowed.ok and allowed.namespaces == [namespace]
    assert allowed.warnings == [
        f'namespace "{namespace}": ClusterRoleBinding "{binding}" binds ServiceAccount '
        f'"{namespace}/deployer" to ClusterRole "{role}", which grants every verb on every resource; '
        f"spec.allowWildcardRoles is true, so the binding is copied into the control plane"
    ]


def test_a_narrow_cluster_role_or_unpromoted_service_accounts_pass(
    installation: Installation, control_plane: Kube
) -> None:
    narrow, _, _ = _bound_namespace(installation, READ_SECRETS)
    wild, _, _ = _bound_namespace(installation, EVERYTHING)

    narrow_result = precheck(
        control_plane, PromotePolicySpec(cluster_name="member1", included_namespaces=[narrow]), []
    )
    without_accounts = precheck(
        control_plane,
        PromotePolicySpec(
            cluster_name="member1",
            included_namespaces=[wild],
            excluded_namespace_scoped_resources=["serviceaccounts"],
        ),
        [],
    )

    assert narrow_result.ok and narrow_result.warnings == []
    assert without_accounts.ok and without_accounts.warnings == [], (
        "no account moves, so no binding is copied"
    )


def test_what_counts_as_every_verb_on_every_resource() -> None:
    assert grants_everything({"rules": EVERYTHING})
    assert grants_everything(
        {"rules": [*READ_SECRETS, {"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}]}
    )
    assert not grants_everything({"rules": READ_SECRETS})
    assert not grants_everything({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}]})
    assert not grants_everything({"rules": [{"nonResourceURLs": ["*"], "verbs": ["*"]}]})
    assert not grants_everything(None), "a binding to a missing role grants nothing"

    def binding(name: str, role: str, *subjects: dict[str, str]) -> dict[str, object]:
        return {
            "metadata": {"name": name},
            "roleRef": {"kind": "ClusterRole", "name": role},
            "subjects": subjects,
        }

    account = {"kind": "ServiceAccount", "name": "app", "namespace": "shop"}
    asked: list[str] = []

    def role(name: str) -> dict[str, object] | None:
        asked.append(name)
        return {"cluster-admin": {"rules": EVERYTHING}, "reader": {"rules": READ_SECRETS}}.get(name)

    found = wildcard_bindings(
        {"shop"},
        [
            binding("b", "cluster-admin", account, {"kind": "User", "name": "alice"}),
            binding("a", "cluster-admin", account),
            binding("c", "reader", account),
            binding("d", "cluster-admin", {**account, "namespace": "other"}),
            binding("e", "missing", account),
        ],
        role,
    )

    assert [(f.binding, f.namespace, f.account, f.role) for f in found] == [
        ("a", "shop", "app", "cluster-admin"),
        ("b", "shop", "app", "cluster-admin"),
    ]
    assert sorted(asked) == ["cluster-admin", "missing", "reader"], "each role is read once"
