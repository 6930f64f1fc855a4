"""Optional RBAC: ServiceAccount tokens from the TokenRequest API, and the 401/403 a real server gives."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import SimulatedCluster
from kubesim.testing import SimAdmin, api_client, bind_pod, service_account_token, wait_until

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def namespace(core: client.CoreV1Api, admin: SimAdmin) -> Iterator[str]:
    """A namespace with ServiceAccount `app`, and RBAC enforced on the cluster."""
    name = f"rbac-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_service_account(name, {"metadata": {"name": "app"}})
    admin.enforce_rbac()
    yield name
    admin.enforce_rbac(False)


@pytest.fixture
def as_app(cluster: SimulatedCluster, core: client.CoreV1Api, namespace: str) -> Iterator[client.ApiClient]:
    """The official client authenticated as ServiceAccount `app` of the namespace."""
    with api_client(cluster.url, service_account_token(core, namespace, "app")) as api:
        yield api


def _grant(rbac: client.RbacAuthorizationV1Api, namespace: str, name: str, *rules: dict[str, Any]) -> None:
    """A Role of `rules` bound to ServiceAccount `app`."""
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": list(rules)})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": namespace}],
        },
    )


def _status(call: Callable[[], Any], code: int) -> dict[str, Any]:
    with pytest.raises(ApiException) as exc:
        call()
    assert exc.value.status == code, exc.value.body
    return json.loads(exc.value.body)


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}


def test_without_enforcement_any_token_is_accepted(cluster: SimulatedCluster) -> None:
    with api_client(cluster.url, "not-a-token") as api:
        assert client.CoreV1Api(api).list_namespace().items


def test_an_unknown_token_is_unauthorized_and_the_admin_token_may_do_anything(
    cluster: SimulatedCluster, core: client.CoreV1Api, namespace: str
) -> None:
    with api_client(cluster.url, "forged") as api:
        body = _status(lambda: client.CoreV1Api(api).list_namespace(), 401)
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert core.list_namespaced_pod(namespace).items == []


def test_a_service_account_without_bindings_is_forbidden_as_the_real_server_words_it(
    as_app: client.ApiClient, namespace: str
) -> None:
    core, apps = client.CoreV1Api(as_app), client.AppsV1Api(as_app)
    user = f"system:serviceaccount:{namespace}:app"

    listing = _status(lambda: core.list_namespaced_pod(namespace), 403)
    assert listing["message"] == (
        f'pods is forbidden: User "{user}" cannot list resource "pods" in API group "" '
        f'in the namespace "{namespace}"'
    )
    assert (listing["reason"], listing["details"]) == ("Forbidden", {"kind": "pods"})
    named = _status(lambda: apps.read_namespaced_deployment("web", namespace), 403)
    assert named["message"].startswith(
        f'deployments.apps "web" is forbidden: User "{user}" cannot get resource'
    )
    assert named["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    cluster_wide = _status(lambda: core.list_node(), 403)
    assert cluster_wide["message"].endswith(
        'cannot list resource "nodes" in API group "" at the cluster scope'
    )
    assert core.get_api_resources().resources, "discovery is open to every authenticated user"


def test_role_rules_match_verbs_resource_names_and_namespaces(
    core: client.CoreV1Api, as_app: client.ApiClient, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    core.create_namespaced_pod(namespace, _pod("web"))
    core.create_namespaced_pod(namespace, _pod("db"))
    _grant(
        rbac,
        namespace,
        "reader",
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"], "resourceNames": ["web"]},
    )
    app = client.CoreV1Api(as_app)

    assert {pod.metadata.name for pod in app.list_namespaced_pod(namespace).items} == {"web", "db"}
    assert app.read_namespaced_pod("web", namespace).metadata.name == "web"
    _status(lambda: app.read_namespaced_pod("db", namespace), 403)
    _status(lambda: app.delete_namespaced_pod("db", namespace), 403)
    app.delete_namespaced_pod("web", namespace)
    _status(lambda: app.list_namespaced_pod("default"), 403)
    _status(lambda: app.create_namespaced_pod(namespace, _pod("new")), 403)


def test_a_type_the_cluster_does_not_serve_is_authorized_as_a_resource_then_not_found(
    core: client.CoreV1Api, as_app: client.ApiClient, namespace: str
) -> None:
    """The real server tells a resource request by its URL (a custom resource whose CRD was just deleted
    is still `delete widgets.example.com`): allowed, it is 404; not allowed, 403 naming the resource."""
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    app = client.CustomObjectsApi(as_app)
    args = ("example.com", "v1", namespace, "widgets", "w1")

    body = _status(lambda: app.delete_namespaced_custom_object(*args), 403)
    assert 'cannot delete resource "widgets" in API group "example.com"' in body["message"]
    body = _status(lambda: app.get_namespaced_custom_object(*args), 403)
    assert 'cannot get resource "widgets" in API group "example.com"' in body["message"]

    _grant(
        rbac, namespace, "widgets", {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["*"]}
    )
    _status(lambda: app.delete_namespaced_custom_object(*args), 404)
    _status(lambda: app.get_namespaced_custom_object(*args), 404)
    assert client.CoreApi(as_app).get_api_versions().versions, "discovery stays open"


def test_subresources_need_their_own_rule(
    core: client.CoreV1Api, as_app: client.ApiClient, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    core.create_namespaced_pod(namespace, _pod("web"))
    _grant(rbac, namespace, "pods", {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["*"]})
    app = client.CoreV1Api(as_app)

    body = _status(lambda: bind_pod(app, namespace, "web", "worker-1"), 403)
    assert 'cannot create resource "pods/binding" in API group ""' in body["message"]

    _grant(
        rbac, namespace, "scheduler", {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]}
    )
    bind_pod(app, namespace, "web", "worker-1")
    assert app.read_namespaced_pod("web", namespace).spec.node_name == "worker-1"


def test_cluster_roles_bound_to_a_group_and_aggregated_roles(
    core: client.CoreV1Api, as_app: client.ApiClient, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    rbac.create_cluster_role(
        {
            "metadata": {"name": f"{namespace}-aggregate"},
            "aggregationRule": {
                "clusterRoleSelectors": [{"matchLabels": {f"aggregate-to-{namespace}": "true"}}]
            },
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"{namespace}-aggregate"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": f"{namespace}-aggregate"},
            "subjects": [{"kind": "Group", "name": f"system:serviceaccounts:{namespace}", "apiGroup": RBAC}],
        }
    )
    app = client.CoreV1Api(as_app)
    _status(lambda: app.list_node(), 403)

    rbac.create_cluster_role(
        {
            "metadata": {"name": f"{namespace}-nodes", "labels": {f"aggregate-to-{namespace}": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
        }
    )
    wait_until(lambda: rbac.read_cluster_role(f"{namespace}-aggregate").rules, what="aggregated rules")
    assert app.list_node().items is not None


def test_granting_more_than_one_holds_needs_escalate_or_bind(
    core: client.CoreV1Api, as_app: client.ApiClient, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    _grant(
        rbac,
        namespace,
        "role-writer",
        {"apiGroups": [RBAC], "resources": ["roles", "rolebindings"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    )
    app = client.RbacAuthorizationV1Api(as_app)
    held = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    more = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}

    app.create_namespaced_role(namespace, {"metadata": {"name": "held"}, "rules": [held]})
    body = _status(
        lambda: app.create_namespaced_role(namespace, {"metadata": {"name": "more"}, "rules": [more]}), 403
    )
    assert "is attempting to grant RBAC permissions not currently held" in body["message"]
    assert body["details"] == {"name": "more", "group": RBAC, "kind": "roles"}

    rbac.create_namespaced_role(namespace, {"metadata": {"name": "more"}, "rules": [more]})
    binding = {
        "metadata": {"name": "to-more"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "more"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": namespace}],
    }
    _status(lambda: app.create_namespaced_role_binding(namespace, binding), 403)
    _grant(
        rbac,
        namespace,
        "binder",
        {"apiGroups": [RBAC], "resources": ["roles"], "verbs": ["bind"], "resourceNames": ["more"]},
    )
    app.create_namespaced_role_binding(namespace, binding)


def test_a_token_stops_working_when_its_service_account_is_deleted(
    cluster: SimulatedCluster, core: client.CoreV1Api, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    _grant(rbac, namespace, "reader", {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]})
    token = service_account_token(core, namespace, "app")
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{namespace}:app"
    with api_client(cluster.url, token) as api:
        assert client.CoreV1Api(api).list_namespaced_pod(namespace).items == []
        core.delete_namespaced_service_account("app", namespace)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
        _status(lambda: client.CoreV1Api(api).list_namespaced_pod(namespace), 401)
