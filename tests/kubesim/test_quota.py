"""ResourceQuota admission and status, and namespaces provisioned with a quota by the platform, as a
control plane with a policy engine refuses what promote creates into them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import SimulatedCluster
from kubesim.quota import covers, pod_resources, quantity, usage
from kubesim.resources import ResourceType
from kubesim.testing import SimAdmin, wait_until


def _pod(name: str, **requests: str) -> dict[str, Any]:
    resources = {"requests": requests} if requests else {}
    container = {"name": "app", "image": "nginx:1.27", "resources": resources}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container]},
    }


def _quota(name: str, **hard: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard}}


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    name = f"quota-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_until(lambda: core.list_namespaced_service_account(name).items, what="the default ServiceAccount")
    return name


def _synced(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (
                core.read_namespaced_resource_quota(name, namespace).status or client.V1ResourceQuotaStatus()
            ).hard
        ),
        what="the quota's status",
    )


def _refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == 403
    body = json.loads(refused.value.body)
    assert body["reason"] == "Forbidden"
    return str(body["message"])


def test_a_create_beyond_the_quota_is_refused_and_finished_pods_do_not_count(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_resource_quota(namespace, _quota("pods", pods="2", **{"count/configmaps": "1"}))
    _synced(core, namespace, "pods")
    core.create_namespaced_pod(namespace, _pod("a"))
    core.create_namespaced_pod(namespace, _pod("b"))

    message = _refusal(lambda: core.create_namespaced_pod(namespace, _pod("c")))
    assert (
        message
        == 'pods "c" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2'
    )

    core.patch_namespaced_pod_status("b", namespace, {"status": {"phase": "Succeeded"}})
    core.create_namespaced_pod(namespace, _pod("c"))
    wait_until(
        lambda: (
            core.read_namespaced_resource_quota("pods", namespace).status.used
            == {"pods": "2", "count/configmaps": "1"}
        ),
        what="the used counts (kube-root-ca.crt is a ConfigMap too)",
    )
    assert "count/configmaps=1" in _refusal(
        lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "extra"}})
    )


def test_compute_requests_must_be_given_and_fit(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_resource_quota(namespace, _quota("compute", **{"requests.cpu": "1"}))
    _synced(core, namespace, "compute")

    assert _refusal(lambda: core.create_namespaced_pod(namespace, _pod("bare"))).endswith(
        "failed quota: compute: must specify requests.cpu for: app"
    )
    core.create_namespaced_pod(namespace, _pod("first", cpu="600m"))
    assert _refusal(lambda: core.create_namespaced_pod(namespace, _pod("second", cpu="600m"))).endswith(
        "exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, "
        "limited: requests.cpu=1"
    )


def test_a_new_quota_refuses_what_it_covers_until_its_controller_has_seen_it(
    core: client.CoreV1Api, admin: SimAdmin, namespace: str
) -> None:
    admin.set_informer_lag(1.0)
    try:
        core.create_namespaced_resource_quota(namespace, _quota("late", pods="5"))
        message = _refusal(lambda: core.create_namespaced_pod(namespace, _pod("early")))
        assert message == 'pods "early" is forbidden: status unknown for quota: late, resources: pods'
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "not-covered"}})
        _synced(core, namespace, "late")
    finally:
        admin.set_informer_lag(0)
    core.create_namespaced_pod(namespace, _pod("early"))


def test_the_platform_gives_every_new_namespace_its_quota(
    cluster: SimulatedCluster, core: client.CoreV1Api
) -> None:
    cluster.provision_namespaces([("", "resourcequotas", _quota("default-quota", pods="1"))])
    name = f"provisioned-{uuid.uuid4().hex[:8]}"

    core.create_namespace({"metadata": {"name": name}})

    quota = wait_until(lambda: core.list_namespaced_resource_quota(name).items, what="the provisioned quota")
    assert [q.spec.hard for q in quota] == [{"pods": "1"}]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("128Mi", "134217728"),
        ("1G", "1000000000"),
        ("1e3", "1000"),
        ("1.5", "1.5"),
    ],
)
def test_quantities_are_read_as_kubernetes_writes_them(text: str, value: str) -> None:
    assert str(quantity(text).normalize()) == str(quantity(value).normalize())


def _container(name: str, cpu: str | None = None, **extra: Any) -> dict[str, Any]:
    resources = {"requests": {"cpu": cpu}} if cpu else {}
    return {"name": name, "image": "busybox:1.36", "resources": resources, **extra}


def _pod_with(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": containers, **spec},
    }


def test_a_pod_is_charged_its_containers_and_sidecars_or_its_largest_init_container() -> None:
    """kube-apiserver's sum: sidecars (restartPolicy Always) run beside the containers; an init container
    runs alone, beside the sidecars started before it."""
    pod = _pod_with(
        "p",
        [_container("app", "200m")],
        initContainers=[_container("proxy", "300m", restartPolicy="Always"), _container("migrate", "600m")],
    )
    assert pod_resources(pod, "requests") == {"cpu": quantity("900m")}
    pod["spec"]["initContainers"][1]["resources"]["requests"]["cpu"] = "100m"
    assert pod_resources(pod, "requests") == {"cpu": quantity("500m")}
    assert pod_resources(pod, "limits") == {}


PODS = ResourceType(group="", version="v1", plural="pods", kind="Pod", namespaced=True)


@pytest.mark.parametrize(
    ("scope", "pod", "covered"),
    [
        ({"scopeName": "BestEffort", "operator": "Exists"}, _pod_with("p", [_container("a")]), True),
        ({"scopeName": "BestEffort", "operator": "Exists"}, _pod_with("p", [_container("a", "1m")]), False),
        ({"scopeName": "NotBestEffort", "operator": "Exists"}, _pod_with("p", [_container("a", "1m")]), True),
        (
            {"scopeName": "BestEffort", "operator": "Exists"},
            _pod_with("p", [_container("a")], initContainers=[_container("i", "1m")]),
            False,
        ),
        (
            {"scopeName": "Terminating", "operator": "Exists"},
            _pod_with("p", [_container("a")], activeDeadlineSeconds=60),
            True,
        ),
        ({"scopeName": "NotTerminating", "operator": "Exists"}, _pod_with("p", [_container("a")]), True),
        (
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]},
            _pod_with("p", [_container("a")], priorityClassName="high"),
            True,
        ),
        (
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]},
            _pod_with("p", [_container("a")]),
            False,
        ),
        (
            {"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]},
            _pod_with("p", [_container("a")]),
            True,
        ),
        ({"scopeName": "PriorityClass", "operator": "Exists"}, _pod_with("p", [_container("a")]), False),
        ({"scopeName": "PriorityClass", "operator": "DoesNotExist"}, _pod_with("p", [_container("a")]), True),
        (
            {"scopeName": "CrossNamespacePodAffinity", "operator": "Exists"},
            _pod_with(
                "p",
                [_container("a")],
                affinity={
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"topologyKey": "zone", "namespaceSelector": {}}
                        ]
                    }
                },
            ),
            True,
        ),
        (
            {"scopeName": "CrossNamespacePodAffinity", "operator": "Exists"},
            _pod_with("p", [_container("a")]),
            False,
        ),
    ],
)
def test_a_scope_takes_in_the_pods_kube_apiserver_matches(
    scope: dict[str, Any], pod: dict[str, Any], covered: bool
) -> None:
    quota = {
        "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [scope]}},
    }
    assert covers(quota, PODS, pod) is covered


def test_a_scoped_quota_counts_only_the_pods_it_covers(core: client.CoreV1Api, namespace: str) -> None:
    best_effort = {
        **_quota("best-effort", pods="1"),
        "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]},
    }
    core.create_namespaced_resource_quota(namespace, best_effort)
    _synced(core, namespace, "best-effort")
    core.create_namespaced_pod(namespace, _pod("first"))
    core.create_namespaced_pod(namespace, _pod("sized", cpu="100m"))  # Burstable: not in the scope

    message = _refusal(lambda: core.create_namespaced_pod(namespace, _pod("second")))
    assert message.endswith("exceeded quota: best-effort, requested: pods=1, used: pods=1, limited: pods=1")
    wait_until(
        lambda: core.read_namespaced_resource_quota("best-effort", namespace).status.used == {"pods": "1"},
        what="the quota's usage, of the covered pod only",
    )


def test_init_containers_are_charged_and_must_give_what_the_quota_tracks(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_resource_quota(namespace, _quota("compute", **{"requests.cpu": "1"}))
    _synced(core, namespace, "compute")
    unsized_init = _pod_with("unsized", [_container("app", "100m")], initContainers=[_container("setup")])
    assert _refusal(lambda: core.create_namespaced_pod(namespace, unsized_init)).endswith(
        "failed quota: compute: must specify requests.cpu for: setup"
    )
    core.create_namespaced_pod(
        namespace,
        _pod_with("big-init", [_container("app", "200m")], initContainers=[_container("setup", "900m")]),
    )
    assert _refusal(lambda: core.create_namespaced_pod(namespace, _pod("small", cpu="200m"))).endswith(
        "exceeded quota: compute, requested: requests.cpu=200m, used: requests.cpu=900m, "
        "limited: requests.cpu=1"
    )


def test_finished_pods_still_count_as_stored_objects(core: client.CoreV1Api, namespace: str) -> None:
    """`pods` counts pods that may still run; `count/pods` every pod stored."""
    core.create_namespaced_resource_quota(namespace, _quota("stored", **{"count/pods": "1"}))
    _synced(core, namespace, "stored")
    core.create_namespaced_pod(namespace, _pod("done"))
    core.patch_namespaced_pod_status("done", namespace, {"status": {"phase": "Succeeded"}})
    assert "count/pods=1" in _refusal(lambda: core.create_namespaced_pod(namespace, _pod("next")))


def test_a_pod_whose_deletion_grace_ran_out_is_no_longer_charged() -> None:
    """A pod stuck Terminating (no kubelet confirms it) must not hold its namespace's quota."""
    pod = _pod_with("p", [_container("app", "100m")])
    ten_seconds_ago = (datetime.now(UTC) - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod["metadata"].update(deletionTimestamp=ten_seconds_ago, deletionGracePeriodSeconds=60)
    assert usage(PODS, pod)["pods"] == 1
    pod["metadata"]["deletionGracePeriodSeconds"] = 5
    assert "pods" not in usage(PODS, pod) and usage(PODS, pod)["count/pods"] == 1
