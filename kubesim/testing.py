"""Helpers for tests and benchmarks that drive a simulated cluster over HTTP.

Everything goes through the wire (the official client for the Kubernetes API, plain HTTP for the
`/_sim` admin endpoints), so the same helpers work for a simulator in this process or in another one.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
"""The patch type for status writes (strategic merge, the client's default, is refused for CRs)."""


def api_client(url: str, token: str = "kubesim") -> client.ApiClient:
    """The default token is the administrator's; pass a `service_account_token` to act as an account."""
    configuration = client.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def service_account_token(core: client.CoreV1Api, namespace: str, name: str, seconds: int = 3600) -> str:
    """A bound token of ServiceAccount `namespace/name` from the TokenRequest API, as kubelet projects
    one into a pod; the simulator authenticates it when RBAC is enforced."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds},
    }
    answer = core.create_namespaced_service_account_token(
        name, namespace, client.AuthenticationV1TokenRequest.model_validate(body)
    )
    return required(required(answer.status, "TokenRequest status").token, "TokenRequest token")


def crd_body(group: str, plural: str, kind: str, *, short_names: Sequence[str] = ()) -> dict[str, Any]:
    """A namespaced, schemaless CustomResourceDefinition with a status subresource, for seeds and tests."""
    names: dict[str, Any] = {"plural": plural, "singular": kind.lower(), "kind": kind}
    if short_names:
        names["shortNames"] = list(short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": names,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


def required(value: T | None, what: str) -> T:
    """`value`, which the API server always sets though the typed client declares every field Optional: an
    answer without it is a broken server, named here rather than failing later as an AttributeError on None.
    """
    if value is None:
        raise ValueError(f"the API server's answer has no {what}")
    return value


def wait_until(
    predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll until `predicate` returns something truthy (never None, so an Optional result is narrowed);
    on timeout, say what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def bind_pod(core: client.CoreV1Api, namespace: str, name: str, node: str) -> None:
    """What the scheduler does: POST pods/NAME/binding. The answer is a Status, which the official
    client cannot read as the V1Binding it expects, so it is not parsed."""
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    core.create_namespaced_pod_binding(
        name, namespace, client.V1Binding.model_validate(body), _preload_content=False
    )


def mark_pod_running(core: client.CoreV1Api, namespace: str, name: str, *, ready: bool = True) -> None:
    """What a kubelet would report: the simulator never runs pods, so tests say when one is up. The
    scheduler's PodScheduled condition is kept, as the kubelet's status manager keeps it."""
    pod = core.read_namespaced_pod(name, namespace)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    statuses = [
        {
            "name": c.name,
            "ready": ready,
            "restartCount": 0,
            "image": c.image,
            "imageID": "",
            "started": True,
            "state": {"running": {"startedAt": now}},
        }
        for c in required(pod.spec, "pod spec").containers
    ]
    scheduled = [
        core.api_client.sanitize_for_serialization(condition)
        for condition in required(pod.status, "pod status").conditions or []
        if condition.type == "PodScheduled"
    ]
    status = {
        "phase": "Running",
        "podIP": "10.244.0.10",
        "startTime": now,
        "conditions": [
            *scheduled,
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": now},
        ],
        "containerStatuses": statuses,
    }
    core.patch_namespaced_pod_status(name, namespace, {"status": status}, _content_type=MERGE_PATCH)


class SimAdmin:
    """The simulator's `/_sim` endpoints: fault injection, latency, informer lag, request log and counters."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        return self._call("POST", "/_sim/faults", rule)

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sim/faults")["faults"]

    def wait_fired(self, fault_id: int, what: str, timeout: float = 60.0) -> None:
        """Until fault `fault_id` has failed (or is holding) a request: the step under test is there."""
        wait_until(
            lambda: any(f["id"] == fault_id and f["fired"] for f in self.faults()),
            timeout=timeout,
            interval=0.1,
            what=what,
        )

    def clear_faults(self) -> None:
        self._call("DELETE", "/_sim/faults")

    def set_latency(self, ms: float) -> None:
        self._call("PUT", "/_sim/latency", {"ms": ms})

    def set_informer_lag(self, seconds: float) -> None:
        """How far behind the store the controllers run from now on; 0 catches them up at once."""
        self._call("PUT", "/_sim/informer-lag", {"seconds": seconds})

    def informer_lag(self) -> dict[str, Any]:
        """`seconds` of lag and `pending_events` not yet delivered to the controllers."""
        return self._call("GET", "/_sim/informer-lag")

    def enforce_rbac(self, enabled: bool = True) -> None:
        """Authenticate bearer tokens and authorize requests with RBAC from now on."""
        self._call("PUT", "/_sim/rbac", {"enabled": enabled})

    def enforce_crd_schemas(self, enabled: bool = True, *, validation_rules: bool = True) -> None:
        """Prune and validate custom resources by their CRD's structural schema from now on (the
        default), running its CEL validation rules unless `validation_rules` is False, as a server older
        than Kubernetes 1.25 does not."""
        self._call("PUT", "/_sim/crd-schemas", {"enabled": enabled, "validationRules": validation_rules})

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", f"/_sim/requests?since={since}")["requests"]

    def clear_requests(self) -> None:
        self._call("DELETE", "/_sim/requests")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/stats")


def busiest_window(requests: Sequence[dict[str, Any]], seconds: float = 1.0) -> int:
    """The most requests of a request log (`SimAdmin.requests()`) that arrived within any `seconds`."""
    arrivals = sorted(entry["start"] for entry in requests)
    most, first = 0, 0
    for last, arrived in enumerate(arrivals):
        while arrivals[first] <= arrived - seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def most_in_flight(requests: Sequence[dict[str, Any]]) -> int:
    """The most requests of a request log that the server was handling at the same moment."""
    events = sorted([(e["start"], 1) for e in requests] + [(e["end"], -1) for e in requests])
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most
