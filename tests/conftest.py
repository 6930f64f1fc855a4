"""Fixtures shared by every test: simulated clusters reached over HTTP, and a real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubernetes import client

from kubesim import SimulatedCluster, SimulatorThread
from kubesim.testing import SimAdmin, api_client
from shared.embedded_redis import broker_url


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorThread]:
    with SimulatorThread() as thread:
        yield thread


@pytest.fixture
def cluster(simulator: SimulatorThread) -> Iterator[SimulatedCluster]:
    """A fresh simulated cluster per test, with all controllers running."""
    sim = simulator.start_cluster(SimulatedCluster("test"))
    yield sim
    simulator.run(sim.stop())
    simulator.clusters.remove(sim)


@pytest.fixture
def api(cluster: SimulatedCluster) -> Iterator[client.ApiClient]:
    with api_client(cluster.url) as api_client_:
        yield api_client_


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def admin(cluster: SimulatedCluster) -> SimAdmin:
    return SimAdmin(cluster.url)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """KPROMOTE_BROKER_URL if set, else a local Redis if one answers, else an embedded one (never a skip)."""
    with broker_url(os.environ.get("KPROMOTE_BROKER_URL")) as url:
        yield url
