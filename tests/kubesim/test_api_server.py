"""The simulator's API server, exercised only through the official Kubernetes client over HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException

from kubesim.testing import SimAdmin, crd_body, wait_until

MERGE = "application/merge-patch+json"
SMP = "application/strategic-merge-patch+json"


def _namespace(core: client.CoreV1Api, name: str) -> str:
    core.create_namespace({"metadata": {"name": name}})
    wait_until(lambda: _exists(core, name), what=f"default ServiceAccount in {name}")
    return name


def _exists(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException:
        return False
    return True


def _status(error: ApiException) -> dict:
    return json.loads(error.body)


def _pod(name: str, **labels: str) -> dict:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
    }


# ------------------------------------------------------------------ discovery
def test_version_and_group_discovery(api: client.ApiClient) -> None:
    version = client.VersionApi(api).get_code()
    assert version.git_version.startswith("v1.")
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    for group in (
        "apps",
        "batch",
        "rbac.authorization.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "networking.k8s.io",
        "discovery.k8s.io",
        "policy",
        "events.k8s.io",
        "apiextensions.k8s.io",
    ):
        assert group in groups, group
    assert groups["apps"].preferred_version.group_version == "apps/v1"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]


def test_resource_discovery_lists_kinds_scopes_verbs_and_short_names(api: client.ApiClient) -> None:
    core = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    for plural in (
        "namespaces",
        "pods",
        "services",
        "endpoints",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "persistentvolumeclaims",
        "persistentvolumes",
        "events",
        "nodes",
    ):
        assert plural in core, plural
    assert core["pods"].kind == "Pod" and core["pods"].namespaced and "po" in core["pods"].short_names
    assert not core["persistentvolumes"].namespaced
    assert set(core["configmaps"].verbs) >= {"create", "delete", "get", "list", "patch", "update", "watch"}
    assert "pods/status" in core
    apps = {r.name: r for r in client.AppsV1Api(api).get_api_resources().resources}
    assert apps["deployments"].short_names == ["deploy"]
    assert {"replicasets", "statefulsets", "daemonsets", "controllerrevisions"} <= set(apps)
    rbac = {r.name: r for r in client.RbacAuthorizationV1Api(api).get_api_resources().resources}
    assert {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} <= set(rbac)
    assert not rbac["clusterroles"].namespaced


def test_dynamic_client_discovers_and_uses_the_server(api: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(api)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and deployments.name == "deployments"
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    configmaps.create(namespace="default", body={"metadata": {"name": "dyn"}, "data": {"a": "1"}})
    assert configmaps.get(namespace="default", name="dyn").data.a == "1"


# ------------------------------------------------------------------- CRUD
def test_create_fills_metadata_and_refuses_duplicates(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "one"}, "data": {"a": "1"}})
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("default", {"metadata": {"name": "one"}})
    assert caught.value.status == 409
    assert _status(caught.value)["reason"] == "AlreadyExists"
    assert _status(caught.value)["details"] == {"name": "one", "kind": "configmaps"}


def test_generate_name_and_generation(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    generated = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}})
    assert generated.metadata.name.startswith("gen-") and len(generated.metadata.name) > len("gen-")
    _namespace(core, "gen")
    deployment = apps.create_namespaced_deployment(
        "gen",
        {
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
                },
            },
        },
    )
    assert deployment.metadata.generation == 1
    bumped = apps.patch_namespaced_deployment(
        "d", "gen", {"spec": {"replicas": 0, "minReadySeconds": 3}}, _content_type=MERGE
    )
    assert bumped.metadata.generation == 2
    labelled = apps.patch_namespaced_deployment(
        "d", "gen", {"metadata": {"labels": {"x": "y"}}}, _content_type=MERGE
    )
    assert labelled.metadata.generation == 2


def test_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "occ"}, "data": {"v": "1"}})
    first.data = {"v": "2"}
    core.replace_namespaced_config_map("occ", "default", first)
    first.data = {"v": "3"}
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("occ", "default", first)
    assert caught.value.status == 409 and _status(caught.value)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("occ", "default").data == {"v": "2"}


def test_unknown_resource_and_object_are_404(api: client.ApiClient, core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("missing", "default")
    assert caught.value.status == 404 and _status(caught.value)["reason"] == "NotFound"
    with pytest.raises(ApiException) as caught:
        client.CustomObjectsApi(api).list_namespaced_custom_object("example.org", "v1", "default", "gadgets")
    assert caught.value.status == 404


def test_invalid_bodies_are_422(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Not_Valid"}})
    assert caught.value.status == 422 and _status(caught.value)["reason"] == "Invalid"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": []}})
    assert caught.value.status == 422
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(
            "default",
            {
                "metadata": {"name": "mismatch"},
                "spec": {
                    "selector": {"matchLabels": {"app": "a"}},
                    "template": {
                        "metadata": {"labels": {"app": "b"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            },
        )
    assert caught.value.status == 422
    assert "selector" in _status(caught.value)["message"]


def test_namespace_must_exist(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert caught.value.status == 404
    assert _status(caught.value)["details"]["kind"] == "namespaces"


# ---------------------------------------------------------------- listing
def test_label_selectors_equality_and_set_based(core: client.CoreV1Api) -> None:
    for name, labels in (
        ("a", {"app": "web", "tier": "front"}),
        ("b", {"app": "web", "tier": "back"}),
        ("c", {"app": "db"}),
    ):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"sel-{name}", "labels": labels}})

    def names(selector: str) -> list[str]:
        items = core.list_namespaced_config_map("default", label_selector=selector).items
        return sorted(i.metadata.name for i in items if i.metadata.name.startswith("sel-"))

    assert names("app=web") == ["sel-a", "sel-b"]
    assert names("app==web,tier!=back") == ["sel-a"]
    assert names("tier in (front,back)") == ["sel-a", "sel-b"]
    assert names("app notin (web)") == ["sel-c"]
    assert names("!tier,app") == ["sel-c"]
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map("default", label_selector="app in (web")
    assert caught.value.status == 400


def test_field_selectors_on_name_and_namespace(core: client.CoreV1Api) -> None:
    _namespace(core, "fields")
    core.create_namespaced_config_map("fields", {"metadata": {"name": "target"}})
    core.create_namespaced_config_map("fields", {"metadata": {"name": "other"}})
    by_name = core.list_namespaced_config_map("fields", field_selector="metadata.name=target").items
    assert [i.metadata.name for i in by_name] == ["target"]
    across = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=fields").items
    assert {i.metadata.name for i in across} == {"target", "other", "kube-root-ca.crt"}
    excluded = core.list_namespaced_config_map("fields", field_selector="metadata.name!=target").items
    assert "target" not in {i.metadata.name for i in excluded}


def test_paging_with_limit_and_continue_visits_every_item_once(core: client.CoreV1Api) -> None:
    _namespace(core, "paging")
    for index in range(23):
        core.create_namespaced_config_map("paging", {"metadata": {"name": f"cm-{index:02d}"}})
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map("paging", limit=5, _continue=token)
        pages += 1
        seen += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count > 0
    assert pages == 5
    assert sorted(seen) == sorted({*(f"cm-{i:02d}" for i in range(23)), "kube-root-ca.crt"})
    assert len(seen) == len(set(seen))


def test_list_items_of_builtin_types_carry_no_kind(api: client.ApiClient, cluster) -> None:
    with urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces") as response:
        body = json.loads(response.read())
    assert body["kind"] == "NamespaceList" and body["metadata"]["resourceVersion"]
    assert "kind" not in body["items"][0]


# ------------------------------------------------------------------ watch
def test_watch_streams_added_modified_deleted(core: client.CoreV1Api) -> None:
    _namespace(core, "watched")
    events: list[tuple[str, str]] = []
    stream = watch.Watch()

    def consume() -> None:
        for event in stream.stream(core.list_namespaced_config_map, "watched", timeout_seconds=5):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                stream.stop()

    listener = threading.Thread(target=consume)
    listener.start()
    time.sleep(0.2)
    core.create_namespaced_config_map("watched", {"metadata": {"name": "w"}})
    core.patch_namespaced_config_map("w", "watched", {"data": {"a": "b"}}, _content_type=MERGE)
    core.delete_namespaced_config_map("w", "watched")
    listener.join(10)
    assert ("ADDED", "w") in events and ("MODIFIED", "w") in events and ("DELETED", "w") in events
    assert events.index(("ADDED", "w")) < events.index(("MODIFIED", "w")) < events.index(("DELETED", "w"))


def test_watch_resumes_from_a_resource_version(core: client.CoreV1Api) -> None:
    _namespace(core, "resume")
    listing = core.list_namespaced_config_map("resume")
    core.create_namespaced_config_map("resume", {"metadata": {"name": "after"}})
    stream = watch.Watch()
    seen = []
    for event in stream.stream(
        core.list_namespaced_config_map,
        "resume",
        resource_version=listing.metadata.resource_version,
        timeout_seconds=1,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        stream.stop()
    assert seen == [("ADDED", "after")]


def test_watch_with_label_selector_reports_objects_leaving_it(core: client.CoreV1Api) -> None:
    _namespace(core, "leaving")
    core.create_namespaced_config_map("leaving", {"metadata": {"name": "m", "labels": {"keep": "yes"}}})
    listing = core.list_namespaced_config_map("leaving", label_selector="keep=yes")
    core.patch_namespaced_config_map(
        "m", "leaving", {"metadata": {"labels": {"keep": "no"}}}, _content_type=MERGE
    )
    stream = watch.Watch()
    seen = [
        e["type"]
        for e in stream.stream(
            core.list_namespaced_config_map,
            "leaving",
            label_selector="keep=yes",
            resource_version=listing.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert seen == ["DELETED"]


# ---------------------------------------------------------------- patches
def test_merge_json_and_strategic_patches(api: client.ApiClient, core: client.CoreV1Api) -> None:
    _namespace(core, "patching")
    core.create_namespaced_pod("patching", _pod("p", app="x"))
    core.patch_namespaced_pod(
        "p", "patching", {"metadata": {"labels": {"kosmos-io/pod": "true"}}}, _content_type=SMP
    )
    pod = core.read_namespaced_pod("p", "patching")
    assert pod.metadata.labels == {"app": "x", "kosmos-io/pod": "true"}
    core.patch_namespaced_pod("p", "patching", [{"op": "remove", "path": "/metadata/labels/kosmos-io~1pod"}])
    assert core.read_namespaced_pod("p", "patching").metadata.labels == {"app": "x"}
    dyn = dynamic.DynamicClient(api)
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    pods.patch(
        namespace="patching",
        name="p",
        body={"metadata": {"annotations": {"a": "1"}}},
        content_type="application/merge-patch+json",
    )
    assert core.read_namespaced_pod("p", "patching").metadata.annotations == {"a": "1"}
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_pod("p", "patching", [{"op": "test", "path": "/metadata/name", "value": "q"}])
    assert caught.value.status == 422


def test_running_pod_spec_is_immutable(core: client.CoreV1Api) -> None:
    _namespace(core, "immutable")
    core.create_namespaced_pod("immutable", _pod("p"))
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_pod("p", "immutable", {"spec": {"restartPolicy": "Never"}}, _content_type=SMP)
    assert caught.value.status == 422
    core.patch_namespaced_pod(
        "p",
        "immutable",
        {"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}},
        _content_type=SMP,
    )
    assert core.read_namespaced_pod("p", "immutable").spec.containers[0].image == "nginx:1.26"


def test_status_subresource_separates_spec_and_status(core: client.CoreV1Api) -> None:
    _namespace(core, "statuses")
    pod = core.create_namespaced_pod("statuses", _pod("p"))
    assert pod.status.phase == "Pending"
    core.patch_namespaced_pod("p", "statuses", {"status": {"phase": "Running"}}, _content_type=MERGE)
    assert core.read_namespaced_pod("p", "statuses").status.phase == "Pending"
    core.patch_namespaced_pod_status(
        "p",
        "statuses",
        {"status": {"phase": "Running"}, "metadata": {"labels": {"ignored": "yes"}}},
        _content_type=MERGE,
    )
    after = core.read_namespaced_pod("p", "statuses")
    assert after.status.phase == "Running" and "ignored" not in (after.metadata.labels or {})


# ---------------------------------------------------------------- deletion
def test_delete_with_finalizer_waits_for_it(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "fin", "finalizers": ["example.com/hold"]}}
    )
    core.delete_namespaced_config_map("fin", "default")
    held = core.read_namespaced_config_map("fin", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map(
        "fin", "default", {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("fin", "default")
    assert caught.value.status == 404


def test_bound_pod_waits_for_its_grace_period_unless_zero(core: client.CoreV1Api) -> None:
    _namespace(core, "grace")
    core.create_namespaced_pod(
        "grace", {**_pod("bound"), "spec": {**_pod("bound")["spec"], "nodeName": "n1"}}
    )
    core.delete_namespaced_pod("bound", "grace")
    assert core.read_namespaced_pod("bound", "grace").metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("bound", "grace", grace_period_seconds=0)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("bound", "grace")
    core.create_namespaced_pod("grace", _pod("unbound"))
    core.delete_namespaced_pod("unbound", "grace")
    with pytest.raises(ApiException):
        core.read_namespaced_pod("unbound", "grace")


def test_delete_precondition_on_uid(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "pre"}})
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_config_map(
            "pre", "default", body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="x"))
        )
    assert caught.value.status == 409


# ------------------------------------------------------------------- CRDs
WIDGETS = crd_body("example.com", "gizmos", "Gizmo", short_names=["gz"])


def test_crd_is_served_with_discovery_and_status_subresource(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(WIDGETS)

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition("gizmos.example.com").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_until(established, what="the CRD to be Established")
    custom = client.CustomObjectsApi(api)
    resources = {r.name: r for r in custom.get_api_resources("example.com", "v1").resources}
    assert resources["gizmos"].short_names == ["gz"] and "gizmos/status" in resources
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Gizmo",
        "metadata": {"name": "g"},
        "spec": {"size": 1},
        "status": {"ready": True},
    }
    created = custom.create_namespaced_custom_object("example.com", "v1", "default", "gizmos", body)
    assert "status" not in created
    custom.patch_namespaced_custom_object_status(
        "example.com", "v1", "default", "gizmos", "g", {"status": {"ready": True}}, _content_type=MERGE
    )
    assert custom.get_namespaced_custom_object("example.com", "v1", "default", "gizmos", "g")["status"] == {
        "ready": True
    }
    listed = custom.list_namespaced_custom_object("example.com", "v1", "default", "gizmos")
    assert listed["items"][0]["kind"] == "Gizmo"
    dyn = dynamic.DynamicClient(api)
    assert dyn.resources.get(api_version="example.com/v1", kind="Gizmo").name == "gizmos"
    extensions.delete_custom_resource_definition("gizmos.example.com")
    wait_until(
        lambda: not any(r.name == "gizmos" for r in _resources_or_empty(custom)),
        what="the CRD's type to stop being served",
    )


def _resources_or_empty(custom: client.CustomObjectsApi) -> list:
    try:
        return custom.get_api_resources("example.com", "v1").resources
    except ApiException:
        return []


def test_strategic_merge_patch_is_refused_for_custom_resources(api: client.ApiClient, cluster) -> None:
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(WIDGETS)
    custom = client.CustomObjectsApi(api)
    wait_until(lambda: _resources_or_empty(custom), what="the CRD to be served")
    custom.create_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "gizmos",
        {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "s"}},
    )
    request = urllib.request.Request(
        f"{cluster.url}/apis/example.com/v1/namespaces/default/gizmos/s",
        method="PATCH",
        data=b'{"metadata":{"labels":{"a":"b"}}}',
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 415


# -------------------------------------------------------- services and revisions
def test_cluster_ip_allocation_refuses_a_taken_ip_and_keeps_headless(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_service(
        "default", {"metadata": {"name": "s1"}, "spec": {"ports": [{"port": 80}]}}
    )
    ip = first.spec.cluster_ip
    assert ip and ip != "None" and first.spec.cluster_ips == [ip]
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_service(
            "default", {"metadata": {"name": "s2"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}
        )
    assert (
        caught.value.status == 422 and "provided IP is already allocated" in _status(caught.value)["message"]
    )
    headless = core.create_namespaced_service(
        "default", {"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}
    )
    assert headless.spec.cluster_ip == "None"
    node_port = core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "np"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]},
        },
    )
    assert node_port.spec.ports[0].node_port == 30080


def test_controller_revision_data_is_kept_byte_for_byte_and_immutable(
    cluster, core: client.CoreV1Api
) -> None:
    raw = (
        b'{"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r1"}, '
        b'"data": {"spec": {"b": 1, "a": "x"}}, "revision": 1}'
    )
    url = f"{cluster.url}/apis/apps/v1/namespaces/default/controllerrevisions"
    request = urllib.request.Request(
        url, data=raw, method="POST", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request).read()
    with urllib.request.urlopen(f"{url}/r1") as response:
        served = response.read()
    assert b'"data":{"spec": {"b": 1, "a": "x"}}' in served
    patch = urllib.request.Request(
        f"{url}/r1",
        data=b'{"metadata":{"labels":{"a":"b"}}}',
        method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(patch)
    assert caught.value.code == 422 and b"field is immutable" in caught.value.read()


# ------------------------------------------------------- faults and accounting
def test_nth_request_fault_then_normal_service(core: client.CoreV1Api, admin: SimAdmin) -> None:
    admin.add_fault(verb="create", resource="configmaps", nth=2, status=500, message="etcd timeout")
    core.create_namespaced_config_map("default", {"metadata": {"name": "f1"}})
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("default", {"metadata": {"name": "f2"}})
    assert caught.value.status == 500 and _status(caught.value)["message"] == "etcd timeout"
    core.create_namespaced_config_map("default", {"metadata": {"name": "f2"}})
    assert [f["fired"] for f in admin.faults()] == [1]


def test_throttling_fault_carries_retry_after(core: client.CoreV1Api, admin: SimAdmin) -> None:
    admin.add_fault(verb="get", resource="configmaps", name="kube-root-ca.crt", status=429, retry_after=2)
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("kube-root-ca.crt", "default")
    assert caught.value.status == 429 and caught.value.headers["Retry-After"] == "2"


def test_ratio_fault_is_seeded_and_repeatable(core: client.CoreV1Api, admin: SimAdmin) -> None:
    def outcomes() -> list[bool]:
        admin.clear_faults()
        admin.add_fault(verb="list", resource="secrets", ratio=0.5, status=503, seed=7)
        results = []
        for _ in range(20):
            try:
                core.list_namespaced_secret("default")
                results.append(True)
            except ApiException as error:
                assert error.status == 503
                results.append(False)
        return results

    first, second = outcomes(), outcomes()
    assert first == second and 3 < first.count(False) < 17


def test_timeout_fault_hangs_until_the_client_gives_up(core: client.CoreV1Api, admin: SimAdmin) -> None:
    admin.add_fault(verb="get", resource="pods", status="timeout", timeout_seconds=3, nth=1)
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - urllib3 raises its own timeout type
        core.read_namespaced_pod("whatever", "default", _request_timeout=0.5)
    assert 0.4 < time.monotonic() - started < 2.5


def test_request_log_counters_and_latency(core: client.CoreV1Api, admin: SimAdmin) -> None:
    admin.clear_requests()
    core.create_namespaced_config_map("default", {"metadata": {"name": "logged"}})
    core.read_namespaced_config_map("logged", "default")
    log = [(r["verb"], r["resource"], r["name"], r["code"]) for r in admin.requests()]
    assert ("create", "configmaps", "", 201) in log and ("get", "configmaps", "logged", 200) in log
    stats = admin.stats()
    assert stats["by_verb_resource"]["create configmaps"] >= 1
    admin.set_latency(50)
    started = time.monotonic()
    core.read_namespaced_config_map("logged", "default")
    assert time.monotonic() - started >= 0.05
    admin.set_latency(0)
