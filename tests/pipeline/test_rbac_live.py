"""The whole promote and rollback, each component as its own process, every control-plane request it made
checked against its own ServiceAccount's shipped rules.

The simulator does not enforce RBAC, so the test does what the API server's authorizer would: each
process sends its component's name in its User-Agent (a `sitecustomize` sets
`shared.kube.client.USER_AGENT`; kopf's own requests are the watcher's), the control plane's request log
is read after the run, and every request is evaluated against the rules in deploy/rbac/
(tests/deploy/rbac.py). It also keeps tests/deploy/rbac_requests.py honest: every request seen must be a
row of that table.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubesim import SimulatorThread
from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin
from tests.deploy.rbac import Request, permissions
from tests.deploy.rbac_requests import APP, EVENTS_OF_CLUSTER_OBJECTS, INSTALL, REFUSED, ROWS
from tests.pipeline.conftest import Installation, _spawn, _wait_for_workers, start_installation

COMPONENT_ENV = "KPROMOTE_TEST_COMPONENT"
AGENT = "kosmos-promote/"
SITECUSTOMIZE = f"""
import os
component = os.environ.get("{COMPONENT_ENV}")
if component:
    import shared.kube.client
    shared.kube.client.USER_AGENT = "{AGENT}" + component
"""
NAMESPACE = "rbac-live"


@pytest.fixture(scope="module")
def separated(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    """An installation whose watcher and four workers (one per queue) each name themselves."""
    workdir = tmp_path_factory.mktemp("rbac-live")
    site = workdir / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    extra = {"PYTHONPATH": path, COMPONENT_ENV: "watcher"}
    with start_installation(simulator, redis_url, workdir, extra_env=extra, workers=0) as installation:
        for queue in ("backup", "detach", "rebuild", "rollback"):
            env = {**installation.env, COMPONENT_ENV: f"{queue}-worker"}
            log = workdir / f"worker-{queue}.log"
            installation.processes.append(_spawn(["worker", "-Q", queue, "-c", "4"], env, log))
        _wait_for_workers(installation, expected=4)
        yield installation


def _component(agent: str) -> str | None:
    if agent.startswith(AGENT):
        return agent.removeprefix(AGENT)
    if agent.startswith("kopf"):
        return "watcher"
    return None  # the test's own client, the simulator's controllers


def _request(entry: dict[str, str]) -> Request:
    return Request(
        entry["verb"],
        entry["group"],
        entry["resource"],
        entry["subresource"],
        entry["namespace"],
        entry["name"],
    )


def _table_key(component: str, request: Request) -> tuple[str, str, str, str, str, str]:
    namespace = request.namespace
    if namespace not in ("", INSTALL) and not (
        request.resource == "events" and namespace == EVENTS_OF_CLUSTER_OBJECTS and component == "watcher"
    ):
        namespace = APP
    return component, request.verb, request.group, request.resource, request.subresource, namespace


def test_promote_and_rollback_need_nothing_the_shipped_rbac_refuses(separated: Installation) -> None:
    admin = SimAdmin(separated.control_plane.url)
    mark = max((entry["seq"] for entry in admin.requests()), default=0)
    seed_namespace(separated.member_api, NAMESPACE)

    separated.apply("rbac-live", includedNamespaces=[NAMESPACE])
    assert separated.wait_done("rbac-live")["phase"] == "Completed"
    separated.request_rollback("rbac-live")
    status = separated.wait_done("rbac-live", phases=("RolledBack", "FailedRollback"))
    assert status["phase"] == "RolledBack", status

    seen: dict[str, set[Request]] = {}
    for entry in admin.requests(mark):
        component = _component(entry["user_agent"])
        if component is not None and entry["resource"] and not entry["resource"].startswith("/"):
            seen.setdefault(component, set()).add(_request(entry))
    assert set(seen) == {"watcher", "backup-worker", "detach-worker", "rebuild-worker", "rollback-worker"}, (
        "every component must have been told apart by its User-Agent"
    )

    table = {_table_key(row.component, row.request) for row in ROWS}
    expected_refusals = {_table_key(row.component, row.request) for row in REFUSED}
    missing = {
        key
        for component, requests in seen.items()
        for request in requests
        if (key := _table_key(component, request)) not in table and key not in expected_refusals
    }
    assert missing == set(), "requests missing from tests/deploy/rbac_requests.py (add a row, with the code)"
    refused = {
        (component, str(request), ", ".join(permissions(f"kosmos-promote-{component}").granting(request)))
        for component, requests in seen.items()
        for request in requests
        if not permissions(f"kosmos-promote-{component}").allows(request)
        and _table_key(component, request) not in expected_refusals
    }
    assert refused == set(), "requests the shipped RBAC would refuse (component, request)"

    assert Path(separated.env["KPROMOTE_BACKUP_DIR"]).exists()
