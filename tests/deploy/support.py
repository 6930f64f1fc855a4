"""What deploy/, docker-compose.yml and the Dockerfile declare, loaded once for the deployment tests.

Everything is read from the files as committed (plain YAML, no kustomize needed), so the tests see exactly
what `kubectl apply` and `docker compose` would be given.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUSTOMIZATION = "kustomization.yaml"
IMAGE = "kosmos-promote"
KUBERNETES_VERSION = "1.30"
"""The Kubernetes API version the manifests are validated against (a recent one kubernetes-validate ships)."""

EXPANSION = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
"""Kubernetes' dependent environment variable expansion, `$(NAME)` in env values, command and args."""


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DEPLOY)}#{self.index} {self.kind}/{self.name}"


def yaml_files(root: Path = DEPLOY) -> list[Path]:
    """Every YAML file under deploy/."""
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


OVERLAYS = DEPLOY / "overlays"
"""Opt-in kustomize Components: their files are patches of base objects, not objects of their own."""


@cache
def manifests() -> tuple[Manifest, ...]:
    """Every Kubernetes object in deploy/: all documents of all YAML files except kustomizations and the
    patches of the opt-in overlays (tests/deploy/rbac.py reads those)."""
    found = []
    for path in yaml_files():
        if path.name == KUSTOMIZATION or path.is_relative_to(OVERLAYS):
            continue
        for index, body in enumerate(yaml.safe_load_all(path.read_text())):
            if body is not None:
                found.append(Manifest(path, index, body))
    return tuple(found)


def kustomization_files() -> list[Path]:
    return [p for p in yaml_files() if p.name == KUSTOMIZATION]


def kustomization(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {m.name: m.body for m in manifests() if m.kind == kind}


def deployments() -> dict[str, dict[str, Any]]:
    return by_kind("Deployment")


def component(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])


def by_component() -> dict[str, dict[str, Any]]:
    return {component(d): d for d in deployments().values()}


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(deployment)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(deployment)["containers"]
    return container  # type: ignore[no-any-return]


def config_map(name: str) -> dict[str, str]:
    return by_kind("ConfigMap")[name]["data"]  # type: ignore[no-any-return]


def secret(name: str) -> dict[str, str]:
    return by_kind("Secret")[name]["stringData"]  # type: ignore[no-any-return]


def env_list(container: dict[str, Any]) -> list[dict[str, Any]]:
    return list(container.get("env", []))


def env_names(container: dict[str, Any]) -> set[str]:
    """Every variable a container gets from the manifests: `env` entries and `envFrom` ConfigMap keys."""
    names = {entry["name"] for entry in env_list(container)}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(config_map(source["configMapRef"]["name"]))
    return names


def environment(container: dict[str, Any], secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom first, then `env` in order with
    `$(VAR)` expanded from what is already defined; secret references resolved from the committed Secrets
    (or `secrets`, keyed "secret/key")."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(config_map(source["configMapRef"]["name"]))
    for entry in env_list(container):
        if "value" in entry:
            values[entry["name"]] = EXPANSION.sub(lambda m: values.get(m[1], m[0]), entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            key = f"{ref['name']}/{ref['key']}"
            values[entry["name"]] = (secrets or {}).get(key, secret(ref["name"])[ref["key"]])
    return values


# ---- RBAC


def cluster_role_rules(role: str) -> list[dict[str, Any]]:
    return by_kind("ClusterRole")[role]["rules"]  # type: ignore[no-any-return]


def roles_of_service_account(account: str) -> list[str]:
    """The ClusterRoles bound cluster-wide (ClusterRoleBinding) to a ServiceAccount of this installation.
    Roles bound in the installation's own namespace (the claims) are in tests/deploy/rbac.py."""
    bound = []
    for binding in by_kind("ClusterRoleBinding").values():
        if any(s["kind"] == "ServiceAccount" and s["name"] == account for s in binding["subjects"]):
            bound.append(binding["roleRef"]["name"])
    return bound


def rules_of(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """The account's cluster-wide rules: what it may do outside the installation's namespace."""
    account = pod_spec(deployment).get("serviceAccountName", "default")
    return [rule for role in roles_of_service_account(account) for rule in cluster_role_rules(role)]


def allows(
    rules: list[dict[str, Any]], verb: str, group: str, resource: str, name: str | None = None
) -> bool:
    """Whether RBAC rules grant `verb` on `resource` ("plural" or "plural/subresource") in API `group`,
    for the object `name` (None: any object).

    As the API server matches: "*" matches any verb and any group; a resource "*" matches every
    resource and subresource; a rule with resourceNames grants those objects only.
    """
    return any(
        ({verb, "*"} & set(rule.get("verbs", [])))
        and ({group, "*"} & set(rule.get("apiGroups", [])))
        and ({resource, "*"} & set(rule.get("resources", [])))
        and (not rule.get("resourceNames") or name in rule["resourceNames"])
        for rule in rules
    )


def split_group_resource(group_resource: str) -> tuple[str, str]:
    """ "deployments.apps" -> ("apps", "deployments"); "pods" -> ("", "pods")."""
    plural, _, group = group_resource.partition(".")
    return group, plural


# ---- docker-compose.yml


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def compose_services() -> dict[str, dict[str, Any]]:
    return compose()["services"]  # type: ignore[no-any-return]


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def duration_seconds(value: str | int) -> float:
    """A compose duration ("1h", "90s", "1m30s", "1500ms") in seconds."""
    if isinstance(value, int):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not a compose duration: {value!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def load_json(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())  # type: ignore[no-any-return]


def iter_strings(value: Any) -> Iterator[str]:
    """Every string inside a YAML value, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_strings(item)


def build_with_component(component: Path, workdir: Path, why_skipped: str) -> list[dict[str, Any]]:
    """Every object of the base with `component`, as `kubectl kustomize` builds them from a user's own
    kustomization in `workdir` (kustomize refuses a Component inside its own base); skips the test with
    `why_skipped` where kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(why_skipped)
    user = workdir / "my-installation"
    user.mkdir()
    (user / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY, user)],
                "components": [os.path.relpath(component, user)],
            }
        )
    )
    built = subprocess.run(
        [kubectl, "kustomize", str(user)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(built) if doc]
