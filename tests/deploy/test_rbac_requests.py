"""Every control-plane request of every component (tests/deploy/rbac_requests.py) against the shipped RBAC.

Each component runs with its own ServiceAccount's token, so each row is checked against that account's
rules only, as the API server's RBAC authorizer would (tests/deploy/rbac.py): in the base, and with the
opt-in `restricted` overlay, where only custom resources need a rule of the cluster's own. Then what must
stay refused: least privilege is as much what is denied as what is allowed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.rbac import (
    NAMESPACE,
    RESTRICTED,
    Request,
    overlay_patches,
    permissions,
    rule_allows,
)
from tests.deploy.rbac_requests import APP, COMPONENTS, INSTALL, PROMOTED, REFUSED, ROWS, Row, rows_of
from tests.deploy.support import DEPLOY, build_with_component, by_component, by_kind, pod_spec


def _account(component: str) -> str:
    return str(pod_spec(by_component()[component])["serviceAccountName"])


def _id(row: Row) -> str:
    return f"{row.component}: {row.request}"


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_the_shipped_rbac_allows_every_request_a_component_makes(row: Row) -> None:
    assert permissions(_account(row.component)).allows(row.request), f"{row.request} is needed for: {row.why}"


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_the_restricted_overlay_allows_every_request_but_on_custom_resources(row: Row) -> None:
    custom = {(k.group, k.resource) for k in PROMOTED if k.custom}
    allowed = permissions(_account(row.component), RESTRICTED).allows(row.request)
    if (row.request.group, row.request.resource) in custom:
        assert not allowed, "custom resources are the cluster's to add to the restricted roles"
    else:
        assert allowed, f"{row.request} is needed for: {row.why}"


@pytest.mark.parametrize("row", REFUSED, ids=_id)
def test_requests_refused_on_purpose_stay_refused(row: Row) -> None:
    for overlay in (None, RESTRICTED):
        assert not permissions(_account(row.component), overlay).allows(row.request), row.why


def test_every_component_is_in_the_table() -> None:
    assert {row.component for row in ROWS} == set(COMPONENTS)
    assert len(set(ROWS)) == len(ROWS)


def test_the_restricted_overlay_has_no_wildcard_at_all() -> None:
    for component in COMPONENTS:
        for overlay in (None, RESTRICTED):
            rules = permissions(_account(component), overlay)
            for _, rule in rules.namespaced_rules():
                assert "*" not in rule["verbs"] + rule["apiGroups"] + rule["resources"], (component, rule)
        for rule in permissions(_account(component), RESTRICTED).cluster_wide_rules():
            assert "*" not in rule["verbs"] + rule["apiGroups"] + rule["resources"], (component, rule)
    patched = {(p["kind"], p["metadata"]["name"]) for p in overlay_patches(RESTRICTED)}
    assert patched == {
        ("ClusterRole", "kosmos-promote-rebuild-worker"),
        ("ClusterRole", "kosmos-promote-rollback-worker"),
    }


def test_wildcards_are_left_only_where_deploy_readme_explains_them() -> None:
    """`*` resources remain only for the promoted objects of the rebuild (create, get) and rollback (get,
    delete) workers; deploy/README.md says why, component by component."""
    wildcards = {
        (component, tuple(rule["verbs"]))
        for component in COMPONENTS
        for rule in permissions(_account(component)).cluster_wide_rules()
        if "*" in rule["resources"] or "*" in rule["apiGroups"]
    }
    assert wildcards == {("rebuild-worker", ("create", "get")), ("rollback-worker", ("get", "delete"))}
    readme = (DEPLOY / "README.md").read_text()
    for component in COMPONENTS:
        assert f"`kosmos-promote-{component}`" in readme, component


# ---- what stays refused


def _everywhere(verb: str, group: str, resource: str, name: str = "x") -> list[Request]:
    """The request in an application namespace, in kube-system, and across all namespaces."""
    return [Request(verb, group, resource, "", namespace, name) for namespace in (APP, "kube-system", "")]


@pytest.mark.parametrize("overlay", [None, RESTRICTED], ids=["base", "restricted"])
def test_no_component_can_list_or_watch_secrets_or_write_outside_its_job(overlay: Path | None) -> None:
    for component in COMPONENTS:
        rules = permissions(_account(component), overlay)
        for verb in ("list", "watch"):
            for request in _everywhere(verb, "", "secrets", name=""):
                assert not rules.allows(request), (component, str(request))
        for verb in ("update", "deletecollection"):
            for request in _everywhere(verb, "", "pods"):
                assert not rules.allows(request), (component, str(request))
    for component in ("watcher", "backup-worker", "detach-worker"):
        rules = permissions(_account(component), overlay)
        for verb in ("create", "patch", "delete"):
            for request in _everywhere(verb, "", "pods") + _everywhere(verb, "", "secrets"):
                assert not rules.allows(request), (component, str(request))
        assert not rules.allows(Request("get", "", "secrets", "", APP, "db")), component


@pytest.mark.parametrize("overlay", [None, RESTRICTED], ids=["base", "restricted"])
def test_rebuild_never_changes_or_removes_and_rollback_never_adds(overlay: Path | None) -> None:
    rebuild = permissions(_account("rebuild-worker"), overlay)
    rollback = permissions(_account("rollback-worker"), overlay)
    for kind in PROMOTED:
        namespace = APP if kind.namespaced else ""
        for verb in ("update", "patch", "delete", "deletecollection"):
            assert not rebuild.allows(Request(verb, kind.group, kind.resource, "", namespace, "x")), (
                verb,
                kind,
            )
        for verb in ("create", "update", "list", "watch"):
            assert not rollback.allows(Request(verb, kind.group, kind.resource, "", namespace, "x")), (
                verb,
                kind,
            )
    assert not rollback.allows(Request("escalate", "rbac.authorization.k8s.io", "clusterroles", name="x"))
    assert not rollback.allows(Request("bind", "rbac.authorization.k8s.io", "clusterroles", name="x"))


def test_without_wildcards_no_subresource_such_as_a_token_or_exec_is_reachable() -> None:
    """The cost of `*` in the base, stated by the README and removed by the overlay."""
    token = Request("create", "", "serviceaccounts", "token", "kube-system", "admin")
    exec_ = Request("create", "", "pods", "exec", APP, "web")
    base, restricted = (
        permissions(_account("rebuild-worker")),
        permissions(_account("rebuild-worker"), RESTRICTED),
    )
    assert base.allows(token) and base.allows(exec_)
    assert not restricted.allows(token) and not restricted.allows(exec_)


def test_claims_are_reachable_in_the_installation_namespace_only() -> None:
    verbs = {
        "watcher": {"get", "list", "watch", "create", "update", "patch", "delete"},
        "backup-worker": {"get", "list", "update", "patch"},
        "detach-worker": {"get", "update", "patch"},
        "rebuild-worker": {"get", "update", "patch"},
        "rollback-worker": {"get", "list", "update", "patch", "delete"},
    }
    promoted_leases = {"rebuild-worker": {"create", "get"}, "rollback-worker": {"get", "delete"}}
    """Leases are also a type promote moves, which rebuild creates and rollback deletes anywhere."""
    all_verbs = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
    for component, wanted in verbs.items():
        for overlay in (None, RESTRICTED):
            rules = permissions(_account(component), overlay)
            lease = "coordination.k8s.io", "leases", ""
            claims = {v for v in all_verbs if rules.allows(Request(v, *lease, INSTALL, "c"))}
            elsewhere = promoted_leases.get(component, set())
            assert claims == wanted | elsewhere, component
            for namespace in ("kube-system", "kube-node-lease", ""):
                for verb in all_verbs:
                    request = Request(verb, *lease, namespace, "c")
                    assert rules.allows(request) == (verb in elsewhere), (component, str(request))


def test_each_component_holds_only_the_verbs_its_rows_need_on_promotes_own_api() -> None:
    """No account holds a verb on PromotePolicies or Kosmos Clusters that no row of its component needs,
    except through the base's wildcards (rebuild may create, rollback delete, any type): which the
    restricted overlay removes."""
    for component in COMPONENTS:
        for overlay in (None, RESTRICTED):
            if overlay is None and component in ("rebuild-worker", "rollback-worker"):
                continue
            rules = permissions(_account(component), overlay)
            needed = {(r.request.verb, r.request.resource, r.request.subresource) for r in rows_of(component)}
            for resource, sub in (("promotepolicies", ""), ("promotepolicies", "status"), ("clusters", "")):
                for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
                    request = Request(verb, "kosmos.io", resource, sub, name="p")
                    expected = (verb, resource, sub) in needed
                    assert rules.allows(request) == expected, (component, overlay, str(request))
    wildcard = Request("delete", "kosmos.io", "clusters", name="member1")
    assert permissions(_account("rollback-worker")).allows(wildcard), "the base's cost, in deploy/README.md"


# ---- the evaluator is RBAC, not a looser imitation


def test_rule_matching_follows_kubernetes_rbac() -> None:
    rule = {"apiGroups": ["apps"], "resources": ["deployments", "*/scale"], "verbs": ["get"]}
    assert rule_allows(rule, Request("get", "apps", "deployments", name="web"))
    assert rule_allows(rule, Request("get", "apps", "statefulsets", "scale", name="db"))
    assert not rule_allows(rule, Request("get", "apps", "deployments", "status", name="web"))
    assert not rule_allows(rule, Request("get", "", "deployments", name="web")), "the group must match"
    assert not rule_allows(rule, Request("list", "apps", "deployments")), "the verb must match"
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}
    assert rule_allows(everything, Request("get", "", "serviceaccounts", "token", name="x")), (
        "* has subresources"
    )
    named = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"], "resourceNames": ["a"]}
    assert rule_allows(named, Request("get", "", "secrets", namespace=APP, name="a"))
    assert not rule_allows(named, Request("get", "", "secrets", namespace=APP, name="b"))
    assert not rule_allows(named, Request("list", "", "secrets", namespace=APP)), "a list names no object"


def test_a_role_binding_grants_in_its_namespace_only() -> None:
    rules = permissions(_account("backup-worker"))
    assert rules.allows(Request("get", "coordination.k8s.io", "leases", "", NAMESPACE, "c"))
    assert not rules.allows(Request("get", "coordination.k8s.io", "leases", "", "other", "c"))
    assert rules.granting(Request("get", "coordination.k8s.io", "leases", "", NAMESPACE, "c")) == [
        "RoleBinding kosmos-promote-backup-worker -> Role kosmos-promote-backup-worker"
    ]


# ---- the overlay as kustomize builds it


def test_kustomize_applies_the_restricted_component_to_the_base(tmp_path: Path) -> None:
    built = build_with_component(
        RESTRICTED,
        tmp_path,
        "kubectl (its built-in kustomize) is not installed; the rule tests above still ran",
    )
    objects = {(o["kind"], o["metadata"]["name"]): o for o in built}
    patches = {(p["kind"], p["metadata"]["name"]): p for p in overlay_patches(RESTRICTED)}
    for key, patch in patches.items():
        assert objects[key]["rules"] == patch["rules"], key
    base = {("ClusterRole", name): role for name, role in by_kind("ClusterRole").items()}
    assert set(objects) >= set(base)
    for key, role in base.items():
        if key not in patches:
            assert objects[key]["rules"] == role["rules"], key
