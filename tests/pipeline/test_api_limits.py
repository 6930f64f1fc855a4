"""KPROMOTE_API_QPS and KPROMOTE_API_MAX_IN_FLIGHT, set for the whole installation, hold in each cluster's
request log while two worker processes promote several namespaces at once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubesim import SimulatorThread
from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin, busiest_window, most_in_flight
from shared.kube.client import USER_AGENT
from tests.pipeline.conftest import Installation, start_installation

QPS, BURST, IN_FLIGHT = 20, 2, 3
NAMESPACES = ["limited-1", "limited-2", "limited-3"]


@pytest.fixture(scope="module")
def limited(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    settings = {
        "KPROMOTE_API_QPS": str(QPS),
        "KPROMOTE_API_BURST": str(BURST),
        "KPROMOTE_API_MAX_IN_FLIGHT": str(IN_FLIGHT),
    }
    with start_installation(
        simulator, redis_url, tmp_path_factory.mktemp("limits"), extra_env=settings
    ) as installation:
        yield installation


def test_both_limits_hold_on_both_clusters_and_the_promote_completes(limited: Installation) -> None:
    with ThreadPoolExecutor(max_workers=len(NAMESPACES)) as pool:
        list(pool.map(lambda ns: seed_namespace(limited.member_api, ns, full=False), NAMESPACES))
    admins = {"control plane": SimAdmin(limited.control_plane.url), "member": SimAdmin(limited.member.url)}
    for admin in admins.values():
        admin.set_latency(10)
        admin.clear_requests()
    limited.apply("limited", includedNamespaces=NAMESPACES)
    status = limited.wait_done("limited", timeout=120)
    assert status["phase"] == "Completed", status
    for cluster, admin in admins.items():
        ours = [entry for entry in admin.requests() if entry["user_agent"] == USER_AGENT]
        assert len(ours) > 2 * QPS, f"too few requests to {cluster} to test a per-second limit"
        assert most_in_flight(ours) <= IN_FLIGHT, cluster
        assert busiest_window(ours, 1.0) <= QPS + BURST + 2, cluster
