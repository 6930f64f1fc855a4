"""RBAC authorization, optional per cluster: who may do what, and the 401/403 bodies of the real server.

Off by default (every token is accepted, as before). When on, a request's bearer token must be the
kubeconfig's (an administrator in system:masters) or a ServiceAccount token from the TokenRequest API
(kubesim/tokens.py), and the request is authorized as the RBAC authorizer does: the rules of the
ClusterRoleBindings and of the RoleBindings of the request's namespace whose subjects name the user or
one of its groups, matched on verb, API group, resource (`*`, `resource/subresource`, `*/subresource`),
resourceNames and nonResourceURLs. Discovery, version and health paths are open to every authenticated
user (the bootstrap `system:discovery` and `system:public-info-viewer` roles). Writes of roles and
bindings are checked for privilege escalation: a role may grant only what its writer holds unless the
writer has `escalate`, and a binding may reference only a role whose rules the writer holds unless it
has `bind` on that role. Aggregated ClusterRoles get their rules from the aggregation controller
(kubesim/controllers/rbac_aggregation.py).

Not emulated: the bootstrap roles other than cluster-admin (admin, edit, view and the system: roles),
impersonation, the Node authorizer, webhooks, and the `authorization.k8s.io` review APIs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from kubesim import errors
from kubesim.errors import ApiError
from kubesim.faults import RequestInfo
from kubesim.objects import Obj
from kubesim.resources import ResourceType
from kubesim.store import AdmissionRequest, Store
from kubesim.tokens import ADMIN, TokenIssuer, User

Rule = Mapping[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"
CLUSTER_ADMIN: Obj = {
    "metadata": {
        "name": "cluster-admin",
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    },
    "rules": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
    ],
}
PUBLIC_PATHS = (
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/version",
    "/healthz",
    "/livez",
    "/readyz",
    "/openapi/*",
)
"""What `system:discovery` and `system:public-info-viewer` open to every authenticated user."""

current_user: contextvars.ContextVar[User | None] = contextvars.ContextVar("kubesim_user", default=None)
"""The user of the request being served, for the escalation check in admission; None for controllers."""


@dataclass(frozen=True)
class Attributes:
    """What the authorizer decides on (Go's `authorizer.Attributes`)."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @classmethod
    def of(cls, info: RequestInfo, path: str, resource_request: bool) -> Attributes:
        if not resource_request:
            return cls(verb=info.verb, path=path)
        namespace = info.namespace
        if info.resource == "namespaces" and not info.group and info.name:
            namespace = info.name
        return cls(info.verb, info.group, info.resource, info.subresource, namespace, info.name)

    @classmethod
    def from_url(cls, method: str, path: str, watch: bool) -> Attributes | None:
        """The attributes of a resource URL the cluster does not serve (a custom resource whose CRD was
        just deleted, a misspelt plural): the real server tells a resource request by the URL's shape
        alone (Go's `RequestInfoFactory`), so it is authorized as one, and then answered 404. None for a
        URL outside /api/v1/... and /apis/GROUP/VERSION/... (discovery, /version, /healthz)."""
        parts = [part for part in path.split("/") if part]
        if len(parts) >= 3 and parts[0] == "api":
            group, rest = "", parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, rest = parts[1], parts[3:]
        else:
            return None
        namespace = ""
        if rest[0] == "namespaces" and len(rest) > 1:
            namespace = rest[1]
            if len(rest) > 2 and rest[2] not in ("status", "finalize"):
                rest = rest[2:]
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        if method == "GET":
            verb = "watch" if watch else ("get" if name else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
            if method == "DELETE":
                verb = "delete" if name else "deletecollection"
        return cls(verb, group, rest[0], subresource, namespace, name)


def _matches(values: Iterable[str], wanted: str) -> bool:
    return any(value in ("*", wanted) for value in values)


def rule_allows(rule: Rule, attributes: Attributes) -> bool:
    if not _matches(rule.get("verbs") or [], attributes.verb):
        return False
    if attributes.path:
        return any(
            url == attributes.path
            or url == "*"
            or (url.endswith("*") and attributes.path.startswith(url[:-1]))
            for url in rule.get("nonResourceURLs") or []
        )
    if rule.get("nonResourceURLs") or not _matches(rule.get("apiGroups") or [], attributes.group):
        return False
    resource = attributes.resource
    combined = f"{resource}/{attributes.subresource}" if attributes.subresource else resource
    resources = rule.get("resources") or []
    if not any(
        value in ("*", combined) or (attributes.subresource and value == f"*/{attributes.subresource}")
        for value in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attributes.name in names


def _binds(binding: Obj, user: User) -> bool:
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if (
            kind == "ServiceAccount"
            and user.name == f"system:serviceaccount:{subject.get('namespace')}:{name}"
        ):
            return True
    return False


class Rbac:
    """The RBAC authorizer over one cluster's store, plus the switch that turns enforcement on."""

    def __init__(self, store: Store, tokens: TokenIssuer, enabled: bool = False) -> None:
        self.store = store
        self.tokens = tokens
        self.enabled = False
        self.admin_tokens: set[str] = set()
        if enabled:
            self.enable()

    def enable(self, on: bool = True) -> None:
        """Enforcement on creates the bootstrap `cluster-admin` role if it is missing."""
        self.enabled = on
        cluster_roles = self.store.type(RBAC_GROUP, "v1", "clusterroles")
        if on and self.store.get(cluster_roles, "", "cluster-admin") is None:
            self.store.create(cluster_roles, CLUSTER_ADMIN)

    def _type(self, plural: str) -> Any:
        return self.store.type(RBAC_GROUP, "v1", plural)

    # ----------------------------------------------------------------------------------- requests
    def authenticate(self, authorization: str) -> User:
        token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        if token in self.admin_tokens:
            return ADMIN
        user = self.tokens.authenticate(token) if token else None
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user

    def authorize(self, user: User, attributes: Attributes) -> None:
        if self.allows(user, attributes):
            return
        raise forbidden(user, attributes)

    def allows(self, user: User, attributes: Attributes) -> bool:
        if "system:masters" in user.groups:
            return True
        if attributes.path and "system:authenticated" in user.groups:
            public = any(fnmatchcase(attributes.path, pattern) for pattern in PUBLIC_PATHS)
            if public and attributes.verb == "get":
                return True
        return any(rule_allows(rule, attributes) for rule in self.rules_of(user, attributes.namespace))

    def rules_of(self, user: User, namespace: str) -> Iterator[Rule]:
        """Every rule bound to `user` cluster-wide and, for a namespaced request, in its namespace."""
        for binding in self.store.iter(self._type("clusterrolebindings")):
            if _binds(binding, user):
                yield from self._role_rules(binding, "")
        if namespace:
            for binding in self.store.iter(self._type("rolebindings"), namespace):
                if _binds(binding, user):
                    yield from self._role_rules(binding, namespace)

    def _role_rules(self, binding: Obj, namespace: str) -> list[Rule]:
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = self.store.get(self._type("clusterroles"), "", ref.get("name", ""))
        elif ref.get("kind") == "Role" and namespace:
            role = self.store.get(self._type("roles"), namespace, ref.get("name", ""))
        else:
            role = None
        return list((role or {}).get("rules") or [])

    # --------------------------------------------------------------------------------- escalation
    def check_escalation(self, request: AdmissionRequest) -> None:
        """Admission for roles and bindings written by a user: no granting what one does not hold."""
        user = current_user.get()
        rt = request.rt
        if user is None or not self.enabled or rt.group != RBAC_GROUP:
            return
        if "system:masters" in user.groups:
            return
        obj = request.obj
        namespace = (obj.get("metadata") or {}).get("namespace", "") if rt.namespaced else ""
        name = (obj.get("metadata") or {}).get("name", "")
        if rt.plural in ("roles", "clusterroles"):
            if self.allows(
                user, Attributes("escalate", RBAC_GROUP, rt.plural, namespace=namespace, name=name)
            ):
                return
            if not self._holds(user, namespace, obj.get("rules") or []):
                raise _escalation(rt, name, user)
        elif rt.plural in ("rolebindings", "clusterrolebindings"):
            ref = obj.get("roleRef") or {}
            role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            bind = Attributes("bind", RBAC_GROUP, role_plural, namespace=namespace, name=ref.get("name", ""))
            if self.allows(user, bind):
                return
            role_rules = self._role_rules(obj, namespace)
            if not self._holds(user, namespace, role_rules):
                raise _escalation(rt, name, user)

    def _holds(self, user: User, namespace: str, rules: Iterable[Rule]) -> bool:
        """Go's `ConfirmNoEscalation`: every permission a rule names is allowed to the user (a wildcard
        is covered only by the same wildcard)."""
        for rule in rules:
            verbs = rule.get("verbs") or []
            for url in rule.get("nonResourceURLs") or []:
                if not all(self.allows(user, Attributes(verb, path=url)) for verb in verbs):
                    return False
            if rule.get("nonResourceURLs"):
                continue
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    plural, _, sub = resource.partition("/")
                    for verb in verbs:
                        for name in rule.get("resourceNames") or [""]:
                            wanted = Attributes(verb, group, plural, sub, namespace, name)
                            if not self.allows(user, wanted):
                                return False
        return True


def _escalation(rt: ResourceType, name: str, user: User) -> ApiError:
    """The RBAC registry's refusal; the real message goes on to list the rules not held."""
    groups = " ".join(f'"{group}"' for group in user.groups)
    why = f'user "{user.name}" (groups=[{groups}]) is attempting to grant RBAC permissions not currently held'
    return errors.forbidden(rt, name, why)


def forbidden(user: User, attributes: Attributes) -> ApiError:
    """The 403 `responsewriters.Forbidden` writes, word for word."""
    if attributes.path:
        message = f'forbidden: User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
        return ApiError(403, "Forbidden", message, details={})
    resource = attributes.resource + (f"/{attributes.subresource}" if attributes.subresource else "")
    where = f'in the namespace "{attributes.namespace}"' if attributes.namespace else "at the cluster scope"
    why = (
        f'User "{user.name}" cannot {attributes.verb} resource "{resource}" in API group '
        f'"{attributes.group}" {where}'
    )
    qualified = f"{attributes.resource}.{attributes.group}" if attributes.group else attributes.resource
    subject = f'{qualified} "{attributes.name}"' if attributes.name else qualified
    details: dict[str, Any] = {}
    if attributes.name:
        details["name"] = attributes.name
    if attributes.group:
        details["group"] = attributes.group
    details["kind"] = attributes.resource
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details=details)
