"""The shipped RBAC, enforced: a whole promote and rollback with each component on its own ServiceAccount.

Issue #11: the shipped ClusterRoles must still run the complete promote and rollback scenario when each
component uses its own ServiceAccount's token. Here the simulated control plane enforces RBAC (kubesim's
authorizer: bindings, rules, resourceNames, the escalation check on roles and bindings), the manifests of
deploy/rbac/ (or the `restricted` overlay as kustomize builds it) are applied to it, and the watcher and
one worker per queue run as separate processes, each with a kubeconfig holding a TokenRequest token of
its own account. The member is reached, as in production, with the admin credentials of its Kosmos
Cluster object (it does not enforce RBAC).

Then a fully seeded namespace is promoted and rolled back, and the control plane's request log must show
no 401 and no 403 except the refusals the code expects (tests/deploy/rbac_requests.py REFUSED). Each
process also names its component in its User-Agent (a `sitecustomize` sets
`shared.kube.client.USER_AGENT`; kopf's own requests are the watcher's), so a refusal is reported by
component and every request seen must be a row of tests/deploy/rbac_requests.py: the table that
tests/deploy/test_rbac_requests.py checks the rules against stays complete.

Two installations: the base, where the rollback's cluster-wide list of the seed's custom resources is
refused on purpose and the CRD kept; and the `restricted` overlay with the rules a user adds for the
seed's custom resource group (list included), where nothing is refused and the CRD is deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubesim import SimulatorThread
from kubesim.seed import seed_cluster_scoped, seed_namespace
from kubesim.serve import start_pair
from kubesim.testing import SimAdmin, api_client, service_account_token, wait_until
from services.install import install
from tests.deploy.rbac import RESTRICTED, Request
from tests.deploy.rbac_requests import APP, COMPONENTS, EVENTS_OF_CLUSTER_OBJECTS, INSTALL, REFUSED, ROWS
from tests.deploy.support import DEPLOY, build_with_component
from tests.pipeline.conftest import Installation, _served, _spawn, _wait_for_workers
from tests.pipeline.snapshots import diff, snapshot

COMPONENT_ENV = "KPROMOTE_TEST_COMPONENT"
AGENT = "kosmos-promote/"
SITECUSTOMIZE = f"""
import os
component = os.environ.get("{COMPONENT_ENV}")
if component:
    import shared.kube.client
    shared.kube.client.USER_AGENT = "{AGENT}" + component
"""
NAMESPACE = "rbac-enforced"
POLICY = "rbac-enforced"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
QUEUES = ("backup", "detach", "rebuild", "rollback")
WIDGETS = {"apiGroups": ["example.com"], "resources": ["widgets"]}
"""The seed's custom resource (kubesim/seed.py WIDGET_CRD): the restricted overlay names no custom type."""
CUSTOM_RULES = {
    # What the restricted overlay's patches say to add for each custom resource group promoted: the
    # rebuild worker creates and reads back, the rollback worker reads and deletes and, with `list`,
    # may check that no custom resource of the CRD is left elsewhere before deleting the CRD.
    "kosmos-promote-rebuild-worker": {**WIDGETS, "verbs": ["create", "get"]},
    "kosmos-promote-rollback-worker": {**WIDGETS, "verbs": ["get", "delete", "list"]},
}


# ---------------------------------------------------------------------------------------- manifests


def _base_rbac() -> list[dict[str, Any]]:
    """Every RBAC object of deploy/rbac/, as shipped."""
    return [
        doc
        for path in sorted((DEPLOY / "rbac").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] in RBAC_KINDS
    ]


def _restricted_rbac(workdir: Path) -> list[dict[str, Any]]:
    """Every RBAC object of the base with the restricted Component, as `kubectl kustomize` builds it from
    a user's own kustomization, plus the rule for the seed's custom resource group that a user adds."""
    built = build_with_component(
        RESTRICTED,
        workdir,
        "kubectl (its built-in kustomize) is not installed: the restricted overlay is not built",
    )
    objects = [doc for doc in built if doc["kind"] in RBAC_KINDS]
    for obj in objects:
        if obj["kind"] == "ClusterRole" and obj["metadata"]["name"] in CUSTOM_RULES:
            rules = obj["rules"]
            assert not any("*" in rule.get("resources", []) for rule in rules), "the overlay was not applied"
            rules.append(CUSTOM_RULES[obj["metadata"]["name"]])
    return objects


def _create(api: client.ApiClient, obj: dict[str, Any]) -> None:
    """Create one RBAC object with the official client; namespaced ones in the installation namespace."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    body = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "namespace"}}
    namespaced: dict[str, Callable[..., Any]] = {
        "ServiceAccount": core.create_namespaced_service_account,
        "Role": rbac.create_namespaced_role,
        "RoleBinding": rbac.create_namespaced_role_binding,
    }
    cluster: dict[str, Callable[..., Any]] = {
        "ClusterRole": rbac.create_cluster_role,
        "ClusterRoleBinding": rbac.create_cluster_role_binding,
    }
    if obj["kind"] in namespaced:
        assert obj["metadata"].get("namespace", INSTALL) == INSTALL, obj["metadata"]
        namespaced[obj["kind"]](INSTALL, body)
    else:
        cluster[obj["kind"]](body)


def _kubeconfig(path: Path, server: str, account: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "control-plane", "cluster": {"server": server}}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": account, "context": {"cluster": "control-plane", "user": account}}],
                "current-context": account,
            },
            sort_keys=False,
        )
    )
    path.chmod(0o600)
    return path


# ------------------------------------------------------------------------------------- installation


@contextlib.contextmanager
def _enforced_installation(
    simulator: SimulatorThread,
    redis_url: str,
    workdir: Path,
    rbac: list[dict[str, Any]],
    requests: list[dict[str, Any]],
) -> Iterator[Installation]:
    """A simulated pair whose control plane enforces `rbac`, with the watcher and one worker per queue,
    each on its own ServiceAccount's token. `requests` gets the control plane's request log once every
    process has stopped."""
    control_plane, member, link = simulator.run(start_pair("member1"))
    site = workdir / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
        "KPROMOTE_BROKER_URL": redis_url,
        "KPROMOTE_BACKUP_DIR": str(workdir / "backups"),
        "KPROMOTE_KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}:",
        "KPROMOTE_NAMESPACE": INSTALL,
        "KPROMOTE_ADOPTION_TIMEOUT": "20",
        # As in conftest: a tier of several objects fans out as `rebuild.batch` tasks, small ones share a
        # `rebuild.tiers` task, so both paths run under the rebuild worker's account.
        "KPROMOTE_REBUILD_BATCH_SIZE": "1",
        "KPROMOTE_ROLLBACK_RETRY_BUDGET": "10",
        "KPROMOTE_METRICS_PORT": "0",
        "KPROMOTE_WATCHER_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    try:
        SimAdmin(control_plane.url).enforce_rbac()
        with api_client(control_plane.url) as cp_api, api_client(member.url) as member_api:
            install(cp_api, INSTALL)
            for obj in rbac:
                _create(cp_api, obj)
            seed_cluster_scoped(member_api)
            wait_until(lambda: _served(cp_api), what="the PromotePolicy CRD to be served")
            core = client.CoreV1Api(cp_api)
            kubeconfigs = {
                component: _kubeconfig(
                    workdir / f"{component}.kubeconfig",
                    control_plane.url,
                    f"kosmos-promote-{component}",
                    service_account_token(core, INSTALL, f"kosmos-promote-{component}"),
                )
                for component in COMPONENTS
            }

            def own(component: str) -> dict[str, str]:
                path = str(kubeconfigs[component])
                return {**env, COMPONENT_ENV: component, "KPROMOTE_KUBECONFIG": path, "KUBECONFIG": path}

            installation = Installation(control_plane, member, link, cp_api, member_api, env, workdir)
            try:
                installation.processes.append(_spawn(["watcher"], own("watcher"), workdir / "watcher.log"))
                for queue in QUEUES:
                    log = workdir / f"worker-{queue}.log"
                    args = ["worker", "-Q", queue, "-c", "4"]
                    installation.processes.append(_spawn(args, own(f"{queue}-worker"), log))
                _wait_for_workers(installation, expected=len(QUEUES))
                yield installation
            finally:
                for process in installation.processes:
                    process.terminate()
                for process in installation.processes:
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                requests.extend(SimAdmin(control_plane.url).requests())
    finally:
        simulator.run(link.stop())
        simulator.run(member.stop())
        simulator.run(control_plane.stop())


# ---------------------------------------------------------------------------------------- the log


def _component(agent: str) -> str | None:
    if agent.startswith(AGENT):
        return agent.removeprefix(AGENT)
    if agent.startswith("kopf"):
        return "watcher"
    return None  # the test's own (administrator) client


def _request(entry: dict[str, Any]) -> Request:
    return Request(
        entry["verb"],
        entry["group"],
        entry["resource"],
        entry["subresource"],
        entry["namespace"],
        entry["name"],
    )


def _table_key(component: str, request: Request) -> tuple[str, str, str, str, str, str]:
    """A request as a row of tests/deploy/rbac_requests.py: any promoted namespace is APP there."""
    namespace = request.namespace
    if namespace not in ("", INSTALL) and not (
        request.resource == "events" and namespace == EVENTS_OF_CLUSTER_OBJECTS and component == "watcher"
    ):
        namespace = APP
    return component, request.verb, request.group, request.resource, request.subresource, namespace


def _pod_uids(api: client.ApiClient, namespace: str) -> dict[str, str]:
    return {
        pod.metadata.name: pod.metadata.uid
        for pod in client.CoreV1Api(api).list_namespaced_pod(namespace).items
    }


def _promote_and_roll_back(installation: Installation) -> bool:
    """Promote the seeded namespace, roll it back, check the member is as it was; whether the control
    plane kept the custom resource's CRD."""
    seed_namespace(installation.member_api, NAMESPACE)
    before = snapshot(installation.member_api, NAMESPACE)
    pods_before = _pod_uids(installation.member_api, NAMESPACE)
    assert pods_before

    installation.apply(POLICY, includedNamespaces=[NAMESPACE])
    status = installation.wait_done(POLICY, timeout=60)
    assert status["phase"] == "Completed", f"{status}\n{installation.logs()}"
    installation.request_rollback(POLICY)
    status = installation.wait_done(POLICY, timeout=60, phases=("RolledBack", "FailedRollback"))
    assert status["phase"] == "RolledBack", f"{status}\n{installation.logs()}"

    assert diff(before, snapshot(installation.member_api, NAMESPACE)) == []
    assert _pod_uids(installation.member_api, NAMESPACE) == pods_before, "a member pod was re-created"
    crds = client.ApiextensionsV1Api(installation.cp_api).list_custom_resource_definition().items
    return "widgets.example.com" in {crd.metadata.name for crd in crds}


@pytest.mark.parametrize("overlay", ["base", "restricted"])
def test_promote_and_rollback_under_the_shipped_rbac_enforced(
    overlay: str, simulator: SimulatorThread, redis_url: str, tmp_path: Path
) -> None:
    rbac = _base_rbac() if overlay == "base" else _restricted_rbac(tmp_path)
    log: list[dict[str, Any]] = []
    failure: Exception | None = None
    crd_kept = False
    with _enforced_installation(simulator, redis_url, tmp_path, rbac, log) as installation:
        try:
            crd_kept = _promote_and_roll_back(installation)
        except Exception as error:  # raised below, after the refusals that may explain it
            failure = error

    (tmp_path / "requests.json").write_text(json.dumps(log, indent=1))  # for a failure's post-mortem
    seen: dict[str, set[Request]] = {}
    refused: set[tuple[str, int, Request | str]] = set()
    for entry in log:
        component = _component(entry["user_agent"])
        resource_request = bool(entry["resource"]) and not entry["resource"].startswith("/")
        request = _request(entry) if resource_request else entry["resource"]
        if component is not None and isinstance(request, Request):
            seen.setdefault(component, set()).add(request)
        if entry["code"] in (401, 403):
            refused.add((component or f"user agent {entry['user_agent']!r}", entry["code"], request))
    assert set(seen) == set(COMPONENTS), "every component must have been told apart by its User-Agent"

    expected = {_table_key(row.component, row.request) for row in REFUSED}
    unexpected = sorted(
        f"{component}: {code} {request}"
        for component, code, request in refused
        if code != 403 or not isinstance(request, Request) or _table_key(component, request) not in expected
    )
    assert unexpected == [], "requests the shipped RBAC refused (component: status request)"
    if failure is not None:
        raise failure

    if overlay == "base":
        # The rollback's cluster-wide list of the CRD's custom resources is refused on purpose, and the
        # code keeps the CRD: the refusal is real, and handled.
        assert {(c, code, _table_key(c, r)) for c, code, r in refused if isinstance(r, Request)} == {
            (row.component, 403, _table_key(row.component, row.request)) for row in REFUSED
        }
        assert crd_kept, "the CRD must be kept when its custom resources cannot be listed"
    else:
        # The user granted `list` on widgets.example.com: nothing is refused, and the CRD promote created
        # is gone again.
        assert refused == set()
        assert not crd_kept, "the CRD promote created must be deleted once nothing else uses it"

    table = {_table_key(row.component, row.request) for row in ROWS} | expected
    missing = sorted(
        str((component, str(request)))
        for component, requests in seen.items()
        for request in requests
        if _table_key(component, request) not in table
    )
    assert missing == [], "requests missing from tests/deploy/rbac_requests.py (add a row, with the code)"
