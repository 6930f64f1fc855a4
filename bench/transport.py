"""What one API request costs the client in CPU, by HTTP transport: the figure behind issue #16's worker CPU.

A small namespace costs a worker ~95 requests and a large one two per object, so the client's CPU per
request bounds how far the workers' CPU can fall. This sends the same GET, merge PATCH and create of a
small ConfigMap to one simulator process (pinned to another core when `taskset` exists) from one thread,
and prints the client process's CPU per request for each transport, the median of alternating rounds:

- `Kube` (shared/kube/client.py): raw JSON on the official client's urllib3 pool, what the workers use;
- the official client's generated API (`CoreV1Api`), which `Kube` replaced;
- `http.client` on one kept-alive connection: the standard library under urllib3, without urllib3;
- `pycurl` (libcurl) on one reused handle, when installed (`pip install -e '.[bench]'`): a transport
  written in C, which the workers do not use (see README "Performance").

Not a test: nothing is asserted beyond each answer being a success.

    python bench/transport.py [--requests 2000] [--rounds 5] [--json bench/results/transport.json]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import urllib3
from kubernetes import client
from sim_rate import start_simulator

from shared.kube import Kube

NAMESPACE = "bench"
NAME = "transport"
OPERATIONS = ("get", "patch", "create")
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
Request = Callable[[int], object]
"""One request of an operation, numbered (creates need distinct names); its answer is not used."""
Send = Callable[[str, str, dict[str, Any] | None, str], None]


def _kube(kube: Kube) -> dict[str, Request]:
    configmaps = kube.discovery.resolve("configmaps")
    return {
        "get": lambda _: kube.get(configmaps, NAMESPACE, NAME),
        "patch": lambda i: kube.patch(configmaps, NAMESPACE, NAME, {"data": {"k": str(i)}}),
        "create": lambda i: kube.create(configmaps, _configmap(f"kube-{i}")),
    }


def _official(kube: Kube) -> dict[str, Request]:
    core = client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.url)))
    return {
        "get": lambda _: core.read_namespaced_config_map(NAME, NAMESPACE),
        "patch": lambda i: core.patch_namespaced_config_map(NAME, NAMESPACE, {"data": {"k": str(i)}}),
        "create": lambda i: core.create_namespaced_config_map(NAMESPACE, _configmap(f"official-{i}")),
    }


def _http_client(kube: Kube) -> dict[str, Request]:
    url = urllib3.util.parse_url(kube.url)
    connection = http.client.HTTPConnection(url.host or "127.0.0.1", url.port)
    headers = {"Accept": JSON, "User-Agent": "kosmos-promote"}

    def send(method: str, path: str, body: dict[str, Any] | None, content_type: str) -> None:
        data = orjson.dumps(body) if body is not None else None
        connection.request(method, path, body=data, headers={**headers, "Content-Type": content_type})
        response = connection.getresponse()
        _check(response.status, orjson.loads(response.read()))

    return _raw_requests(send, "stdlib")


def _pycurl(kube: Kube) -> dict[str, Request] | None:
    try:
        import pycurl  # type: ignore[import-not-found]
    except ImportError:
        return None
    handle = pycurl.Curl()
    handle.setopt(pycurl.NOSIGNAL, 1)

    def send(method: str, path: str, body: dict[str, Any] | None, content_type: str) -> None:
        answer = io.BytesIO()
        handle.setopt(pycurl.URL, f"{kube.url}{path}")
        handle.setopt(pycurl.CUSTOMREQUEST, method)
        handle.setopt(
            pycurl.HTTPHEADER,
            [f"Accept: {JSON}", "User-Agent: kosmos-promote", f"Content-Type: {content_type}"],
        )
        if body is not None:
            handle.setopt(pycurl.POSTFIELDS, orjson.dumps(body))
        else:
            handle.setopt(pycurl.HTTPGET, 1)
        handle.setopt(pycurl.WRITEDATA, answer)
        handle.perform()
        _check(handle.getinfo(pycurl.RESPONSE_CODE), orjson.loads(answer.getvalue()))

    return _raw_requests(send, "curl")


def _raw_requests(send: Send, prefix: str) -> dict[str, Request]:
    """The three operations over a transport that sends (method, path, body, content type)."""
    return {
        "get": lambda _: send("GET", _path(NAME), None, JSON),
        "patch": lambda i: send("PATCH", _path(NAME), {"data": {"k": str(i)}}, MERGE_PATCH),
        "create": lambda i: send("POST", _path(), _configmap(f"{prefix}-{i}"), JSON),
    }


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE}}


def _path(name: str = "") -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/configmaps" + (f"/{name}" if name else "")


def _check(status: int, answer: dict[str, Any]) -> None:
    if not 200 <= status < 300:
        raise RuntimeError(f"the simulator answered {status}: {answer.get('message')}")


def cpu_per_request(request: Request, start: int, count: int) -> float:
    """Microseconds of this process's CPU (user and system) per request, over `count` requests."""
    began = time.process_time()
    for index in range(start, start + count):
        request(index)
    return (time.process_time() - began) / count * 1e6


def measure(requests: int, rounds: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="kpromote-transport-") as folder:
        kubeconfig = Path(folder) / "sim.kubeconfig"
        simulator = start_simulator(kubeconfig)
        try:
            kube = Kube.from_kubeconfig(kubeconfig, pool_size=4)
            kube.create(kube.discovery.resolve("namespaces"), {"metadata": {"name": NAMESPACE}})
            kube.create(kube.discovery.resolve("configmaps"), _configmap(NAME))
            transports = {
                "Kube (urllib3 pool)": _kube(kube),
                "official client, CoreV1Api": _official(kube),
                "http.client, one connection": _http_client(kube),
            }
            curl = _pycurl(kube)
            if curl is not None:
                transports["pycurl, one handle"] = curl
            samples = {transport: {op: list[float]() for op in OPERATIONS} for transport in transports}
            for round_ in range(rounds + 1):
                for transport, calls in transports.items():
                    for operation in OPERATIONS:
                        start = round_ * requests
                        figure = cpu_per_request(calls[operation], start, requests)
                        if round_:  # the first round warms connections and caches up
                            samples[transport][operation].append(figure)
        finally:
            simulator.terminate()
            simulator.wait()
    return {t: {op: round(statistics.median(v), 1) for op, v in ops.items()} for t, ops in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per operation and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds measured (after one warm-up round)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = measure(args.requests, args.rounds)
    print(f"client CPU per request, us (median of {args.rounds} rounds of {args.requests}, one thread)")
    print(f"{'transport':32}" + "".join(f"{op:>10}" for op in OPERATIONS))
    for transport, by_operation in figures.items():
        print(f"{transport:32}" + "".join(f"{by_operation[op]:>10}" for op in OPERATIONS))
    if "pycurl, one handle" not in figures:
        print("pycurl is not installed: pip install -e '.[bench]' to compare it")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
