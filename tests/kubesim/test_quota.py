"""ResourceQuota admission and status, and namespaces provisioned with a quota by the platform, as a
control plane with a policy engine refuses what promote creates into them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import SimulatedCluster
from kubesim.quota import quantity
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
        "failed quota: compute: must specify requests.cpu"
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
