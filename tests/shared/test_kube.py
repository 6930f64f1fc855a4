"""shared.kube against the simulator over real HTTP: discovery, verbs, paging, retries, throttling, Kosmos."""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim import SimulatedCluster, SimulatorThread
from kubesim.serve import start_pair
from kubesim.testing import SimAdmin, crd_body, wait_until
from shared.kube import (
    KOSMOS_CLUSTERS,
    AlreadyExists,
    ApiResource,
    Conflict,
    Forbidden,
    Kube,
    KubeError,
    MemberUnavailable,
    NotFound,
    RetryPolicy,
    UnknownResource,
    Unreachable,
    connect_member,
    member_kubeconfig,
)

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
GIZMOS_CRD = crd_body("example.com", "gizmos", "Gizmo", short_names=["gz"])


@pytest.fixture
def kube(cluster: SimulatedCluster) -> Iterator[Kube]:
    with Kube.from_kubeconfig(cluster.kubeconfig(), retry=FAST_RETRY) as kube_:
        yield kube_


@pytest.fixture
def configmaps(kube: Kube) -> ApiResource:
    return kube.discovery.resolve("configmaps")


def _configmap(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "data": data}


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    container = {"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def _requests(admin: SimAdmin, verb: str, resource: str) -> list[dict[str, Any]]:
    return [r for r in admin.requests() if r["verb"] == verb and r["resource"] == resource]


# ------------------------------------------------------------------ discovery
@pytest.mark.parametrize(
    "spelling", ["deployments", "deployment", "Deployment", "DEPLOYMENT", "deploy", "deployments.apps"]
)
def test_resolve_accepts_the_spellings_kubectl_accepts(kube: Kube, spelling: str) -> None:
    resource = kube.discovery.resolve(spelling)
    assert (resource.group_resource, resource.api_version, resource.kind) == (
        "deployments.apps",
        "apps/v1",
        "Deployment",
    )
    assert resource.namespaced and {"list", "create", "patch"} <= resource.verbs


def test_a_name_served_by_two_groups_prefers_the_core_group(kube: Kube) -> None:
    assert kube.discovery.resolve("ev").group_resource == "events"
    assert kube.discovery.resolve("events").group_resource == "events"
    assert kube.discovery.resolve("events.events.k8s.io").group == "events.k8s.io"


def test_unknown_resource_suggests_the_closest_served_type(kube: Kube) -> None:
    with pytest.raises(UnknownResource) as caught:
        kube.discovery.resolve("deploymnets")
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (
        'unknown resource type "deploymnets": not served by cluster "test" (did you mean "deployments.apps"?)'
    )
    with pytest.raises(UnknownResource, match="create its CustomResourceDefinition first"):
        kube.discovery.resolve("qqqxz")


def test_lookups_by_group_resource_and_kind(kube: Kube) -> None:
    discovery = kube.discovery
    assert discovery.by_group_resource("statefulsets.apps") == discovery.resolve("sts")
    assert discovery.by_group_resource("nothings") is None
    assert discovery.by_kind("apps/v1", "ReplicaSet") == discovery.resolve("rs")
    assert discovery.by_kind("v1", "Pod") == discovery.resolve("po")
    assert discovery.by_kind("example.com/v1", "Gizmo") is None
    assert all("/" not in r.plural for r in discovery.all())


def test_namespaced_listable_holds_what_promote_can_move(kube: Kube) -> None:
    listable = {r.group_resource for r in kube.discovery.namespaced_listable()}
    assert {"configmaps", "deployments.apps", "secrets", "statefulsets.apps"} <= listable
    cluster_scoped = {"nodes", "namespaces", "persistentvolumes", "clusterroles.rbac.authorization.k8s.io"}
    assert not cluster_scoped & listable


def test_a_crd_created_at_run_time_resolves_after_refresh(kube: Kube) -> None:
    discovery = kube.discovery
    kube.create(discovery.resolve("crd"), GIZMOS_CRD)

    def served() -> ApiResource | None:
        discovery.refresh()
        return discovery.by_group_resource("gizmos.example.com")

    gizmos = wait_until(served, what="gizmos to be served")
    assert discovery.resolve("gz") == discovery.resolve("Gizmo") == discovery.resolve("gizmos.example.com")
    body = {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}, "spec": {"size": 1}}
    kube.create(gizmos, body, namespace="default")
    kube.patch(gizmos, "default", "g", {"status": {"ready": True}}, subresource="status")
    listed = list(kube.list(gizmos, "default"))
    assert [(g["kind"], g["status"]) for g in listed] == [("Gizmo", {"ready": True})]


# ---------------------------------------------------------------------- reads
def test_list_pages_through_large_collections_lazily(
    kube: Kube, configmaps: ApiResource, admin: SimAdmin
) -> None:
    namespaces = kube.discovery.resolve("namespaces")
    kube.create(namespaces, {"metadata": {"name": "paging"}})
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: kube.create(configmaps, _configmap(f"cm-{i:04d}", "paging")), range(1200)))
    admin.clear_requests()

    items = kube.list(configmaps, "paging", page_size=500)
    first = next(items)
    assert len(_requests(admin, "list", "configmaps")) == 1
    names = [first["metadata"]["name"], *(item["metadata"]["name"] for item in items)]
    assert {n for n in names if n.startswith("cm-")} == {f"cm-{i:04d}" for i in range(1200)}
    assert len(_requests(admin, "list", "configmaps")) >= 3
    assert (first["apiVersion"], first["kind"]) == ("v1", "ConfigMap")


def test_list_filters_by_label_and_field(kube: Kube, configmaps: ApiResource) -> None:
    kube.create(configmaps, {"metadata": {"name": "a", "namespace": "default", "labels": {"tier": "web"}}})
    kube.create(configmaps, {"metadata": {"name": "b", "namespace": "default", "labels": {"tier": "db"}}})
    by_label = kube.list(configmaps, "default", label_selector="tier=web")
    assert [c["metadata"]["name"] for c in by_label] == ["a"]
    by_field = kube.list(configmaps, field_selector="metadata.name=b")
    assert [c["metadata"]["name"] for c in by_field] == ["b"]


def test_get_returns_none_for_a_missing_object(kube: Kube, configmaps: ApiResource) -> None:
    assert kube.get(configmaps, "default", "missing") is None
    kube.create(configmaps, _configmap("present", x="1"))
    assert kube.get(configmaps, "default", "present")["data"] == {"x": "1"}
    assert kube.version()["gitVersion"].startswith("v1.")


# --------------------------------------------------------------------- writes
def test_create_then_already_exists_names_the_object_and_cluster(kube: Kube, configmaps: ApiResource) -> None:
    created = kube.create(configmaps, _configmap("dup"))
    assert created["metadata"]["uid"]
    with pytest.raises(AlreadyExists) as caught:
        kube.create(configmaps, _configmap("dup"))
    error = caught.value
    assert (error.status, error.reason) == (409, "AlreadyExists")
    assert str(error).startswith("configmaps default/dup on test: ")
    assert kube.retries == 0


def test_create_needs_a_namespace_for_namespaced_types(kube: Kube, configmaps: ApiResource) -> None:
    with pytest.raises(ValueError, match="no namespace"):
        kube.create(configmaps, {"metadata": {"name": "nowhere"}})
    assert kube.create(configmaps, {"metadata": {"name": "here"}}, namespace="default")


def test_replace_with_a_stale_resource_version_is_a_conflict_not_retried(
    kube: Kube, configmaps: ApiResource
) -> None:
    stale = kube.create(configmaps, _configmap("rv", v="1"))
    fresh = kube.replace(configmaps, {**stale, "data": {"v": "2"}})
    assert fresh["data"] == {"v": "2"}
    with pytest.raises(Conflict):
        kube.replace(configmaps, {**stale, "data": {"v": "3"}})
    assert kube.retries == 0


def test_patch_merge_json_and_strategic(kube: Kube, configmaps: ApiResource) -> None:
    kube.create(configmaps, _configmap("p", a="1", b="2"))
    merged = kube.patch(configmaps, "default", "p", {"data": {"a": None, "c": "3"}})
    assert merged["data"] == {"b": "2", "c": "3"}
    operations = [{"op": "add", "path": "/metadata/labels", "value": {"patched": "json"}}]
    assert kube.patch(configmaps, "default", "p", operations, patch_type="json")["metadata"]["labels"] == {
        "patched": "json"
    }

    deployments = kube.discovery.resolve("deployments")
    kube.create(deployments, _deployment("web"))
    image = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}
    patched = kube.patch(deployments, "default", "web", image, patch_type="strategic")
    (container,) = patched["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nginx:1.27" and container["ports"][0]["containerPort"] == 80


def test_patch_of_the_status_subresource(kube: Kube) -> None:
    pods = kube.discovery.resolve("pods")
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
    kube.create(pods, body, namespace="default")
    kube.patch(pods, "default", "p", {"status": {"phase": "Running"}}, subresource="status")
    assert kube.get(pods, "default", "p")["status"]["phase"] == "Running"
    with pytest.raises(NotFound, match="pods default/absent on test"):
        kube.patch(pods, "default", "absent", {"status": {"phase": "Running"}}, subresource="status")


def test_delete_orphaning_dependents_and_when_already_gone(
    kube: Kube, simulator: SimulatorThread, cluster: SimulatedCluster
) -> None:
    deployments, replicasets = kube.discovery.resolve("deploy"), kube.discovery.resolve("rs")
    deployment = kube.create(deployments, _deployment("orphaning"))
    owned = wait_until(lambda: list(kube.list(replicasets, "default")), what="the deployment's replicaset")
    with pytest.raises(Conflict):
        kube.delete(deployments, "default", "orphaning", uid="not-its-uid")
    uid = deployment["metadata"]["uid"]
    assert kube.delete(deployments, "default", "orphaning", propagation="Orphan", uid=uid) is True
    simulator.settle(cluster)
    survivor = kube.get(replicasets, "default", owned[0]["metadata"]["name"])
    assert survivor is not None and not survivor["metadata"].get("ownerReferences")
    assert kube.delete(deployments, "default", "orphaning") is False


# -------------------------------------------------------------------- retries
def test_a_500_is_retried_transparently(kube: Kube, configmaps: ApiResource, admin: SimAdmin) -> None:
    kube.create(configmaps, _configmap("r"))
    admin.add_fault(verb="get", resource="configmaps", status=500, nth=1)
    assert kube.get(configmaps, "default", "r") is not None
    assert kube.retries == 1


def test_a_429_waits_for_retry_after(kube: Kube, configmaps: ApiResource, admin: SimAdmin) -> None:
    admin.add_fault(verb="create", resource="configmaps", status=429, nth=1, retry_after=1)
    started = time.monotonic()
    kube.create(configmaps, _configmap("throttled"))
    assert 0.95 <= time.monotonic() - started < 3
    assert kube.retries == 1 and kube.get(configmaps, "default", "throttled") is not None


def test_a_persistent_500_fails_after_the_last_attempt(
    kube: Kube, configmaps: ApiResource, admin: SimAdmin
) -> None:
    admin.add_fault(verb="get", resource="configmaps", status=500, message="etcd is down")
    admin.clear_requests()
    with pytest.raises(KubeError) as caught:
        kube.get(configmaps, "default", "any")
    assert (caught.value.status, caught.value.message) == (500, "etcd is down")
    assert kube.retries == FAST_RETRY.attempts - 1
    assert len(_requests(admin, "get", "configmaps")) == FAST_RETRY.attempts


def test_forbidden_is_not_retried(kube: Kube, configmaps: ApiResource, admin: SimAdmin) -> None:
    admin.add_fault(verb="list", resource="configmaps", status=403)
    with pytest.raises(Forbidden):
        list(kube.list(configmaps, "default"))
    assert kube.retries == 0


def test_a_quota_whose_status_is_not_yet_known_is_waited_out_not_taken_as_a_refusal(
    kube: Kube, configmaps: ApiResource, admin: SimAdmin
) -> None:
    unknown = 'configmaps "q" is forbidden: status unknown for quota: platform-default, resources: configmaps'
    admin.add_fault(verb="create", resource="configmaps", status=403, message=unknown, nth=1)
    started = time.monotonic()
    kube.create(configmaps, _configmap("q"))
    assert time.monotonic() - started >= 0.95, "one second for the quota controller to catch up"
    assert kube.retries == 1 and kube.get(configmaps, "default", "q") is not None


def test_a_hanging_request_times_out_and_is_retried(
    cluster: SimulatedCluster, configmaps: ApiResource, admin: SimAdmin
) -> None:
    admin.add_fault(verb="get", resource="configmaps", status="timeout", timeout_seconds=2, nth=1)
    with Kube.from_kubeconfig(cluster.kubeconfig(), request_timeout=0.5) as kube:
        started = time.monotonic()
        assert kube.get(configmaps, "default", "kube-root-ca.crt") is not None
        assert time.monotonic() - started < 1.9
        assert kube.retries == 1


def test_an_unreachable_server_raises_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = SimulatedCluster("gone").kubeconfig()
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{port}"
    with Kube.from_kubeconfig(config, retry=FAST_RETRY) as kube, pytest.raises(Unreachable) as caught:
        kube.version()
    assert caught.value.status == 0 and "after 3 attempts" in str(caught.value)
    assert kube.retries == 2


# ------------------------------------------------------ throttling and threads
def test_concurrent_threads_share_one_kube(kube: Kube, configmaps: ApiResource) -> None:
    kube.create(configmaps, _configmap("shared", v="1"))
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(50):
                assert kube.get(configmaps, "default", "shared")["data"] == {"v": "1"}
        except BaseException as error:  # collected: an exception in a thread does not fail the test
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --------------------------------------------------------------------- kosmos
@pytest.fixture
def pair(simulator: SimulatorThread) -> Iterator[tuple[Kube, SimulatedCluster]]:
    control_plane, member, link = simulator.run(start_pair("member1"))
    with Kube.from_kubeconfig(control_plane.kubeconfig()) as cp:
        yield cp, member
    simulator.run(link.stop())
    simulator.run(member.stop())
    simulator.run(control_plane.stop())


def test_connect_member_reaches_the_member_through_its_cluster_object(
    pair: tuple[Kube, SimulatedCluster],
) -> None:
    control_plane, member = pair
    assert member_kubeconfig(control_plane, "member1")["clusters"][0]["cluster"]["server"] == member.url
    with connect_member(control_plane, "member1") as kube:
        assert (kube.name, kube.url) == ("member1", member.url)
        namespaces = kube.discovery.resolve("ns")
        kube.create(namespaces, {"metadata": {"name": "only-in-member"}})
        assert kube.get(namespaces, "", "only-in-member") is not None
    assert control_plane.get(namespaces, "", "only-in-member") is None


def test_a_local_kubeconfig_takes_precedence(pair: tuple[Kube, SimulatedCluster], tmp_path: Path) -> None:
    control_plane, member = pair
    path = member.write_kubeconfig(tmp_path / "member.kubeconfig")
    with connect_member(control_plane, "outside-kosmos", {"outside-kosmos": str(path)}) as kube:
        assert kube.url == member.url and kube.name == "outside-kosmos"


def test_member_errors_say_what_is_wrong(pair: tuple[Kube, SimulatedCluster]) -> None:
    control_plane, _ = pair
    with pytest.raises(MemberUnavailable, match='Kosmos cluster "nope" not found in the control plane'):
        connect_member(control_plane, "nope")
    broken = {
        "bad-base64": {"kubeconfig": "not base64!"},
        "no-kubeconfig": {"clusterTreeOptions": {"enable": True}},
        "not-kubeconfig": {"kubeconfig": base64.b64encode(yaml.safe_dump(["a"]).encode()).decode()},
    }
    for name, spec in broken.items():
        body = {"apiVersion": "kosmos.io/v1alpha1", "kind": "Cluster", "metadata": {"name": name}}
        control_plane.create(KOSMOS_CLUSTERS, {**body, "spec": spec})
    with pytest.raises(MemberUnavailable, match=r"spec\.kubeconfig is not valid base64"):
        connect_member(control_plane, "bad-base64")
    with pytest.raises(MemberUnavailable, match=r'"no-kubeconfig" has no spec\.kubeconfig'):
        connect_member(control_plane, "no-kubeconfig")
    with pytest.raises(MemberUnavailable, match="is not a valid kubeconfig"):
        connect_member(control_plane, "not-kubeconfig")


def test_a_rotated_token_is_sent_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials are asked of the client's configuration at most once a second (its refresh hook is
    costly), so a token rotated by that hook reaches the server within AUTH_REFRESH."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            body = b'{"major": "1", "minor": "30"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = SimulatedCluster("auth").kubeconfig()
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{server.server_address[1]}"
    config["users"][0]["user"] = {"token": "first"}
    monkeypatch.setattr("shared.kube.client.AUTH_REFRESH", 0.3)
    try:
        with Kube.from_kubeconfig(config) as kube:
            kube.version()
            configuration = kube._api.configuration  # a refresh hook that rotates the token, as exec does
            configuration.refresh_api_key_hook = lambda c: c.api_key.update(BearerToken="Bearer second")
            kube.version()
            time.sleep(0.35)
            kube.version()
    finally:
        server.shutdown()
    assert seen == ["Bearer first", "Bearer first", "Bearer second"]


def test_requests_go_below_a_path_in_the_servers_url_and_through_a_proxy() -> None:
    """An API server behind a path (`https://gateway/k8s/clusters/c-1`) gets every request below it; a
    kubeconfig's proxy gets the request in the form a proxy expects, the whole URL."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"major": "1", "minor": "30"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    config = SimulatedCluster("behind-a-path").kubeconfig()
    config["clusters"][0]["cluster"]["server"] = f"{address}/k8s/clusters/c-1"
    proxied = SimulatedCluster("through-a-proxy").kubeconfig()
    proxied["clusters"][0]["cluster"]["server"] = "http://api.example.invalid:6443"
    proxied["clusters"][0]["cluster"]["proxy-url"] = address
    try:
        with Kube.from_kubeconfig(config) as kube:
            assert kube.version() == {"major": "1", "minor": "30"}
            kube.raw_get("/api/v1", {"limit": 5})
        with Kube.from_kubeconfig(proxied) as kube:
            kube.version()
    finally:
        server.shutdown()
    assert seen == [
        "/k8s/clusters/c-1/version",
        "/k8s/clusters/c-1/api/v1?limit=5",
        "http://api.example.invalid:6443/version",
    ]
