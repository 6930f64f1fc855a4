"""The control plane stops answering the tool's workers for 30 s while a failed namespace is compensated.

A rebuild fails in the middle of the outage, and the compensation meets the same outage: every request of
the workers (User-Agent kosmos-promote) to the control plane gets 503, claims included. It must ride the
outage out with its backoff within KPROMOTE_ROLLBACK_RETRY_BUDGET and end RolledBack, the member exactly
as it was. The installation is this module's own, with a budget longer than the outage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kubesim import SimulatorThread
from kubesim.seed import seed_namespace
from kubesim.testing import SimAdmin, wait_until
from tests.pipeline.conftest import Installation, start_installation
from tests.pipeline.snapshots import diff, pod_uids, snapshot

OUTAGE_SECONDS = 30.0


@pytest.fixture(scope="module")
def patient(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    settings = {"KPROMOTE_ROLLBACK_RETRY_BUDGET": "180"}
    with start_installation(
        simulator, redis_url, tmp_path_factory.mktemp("outage"), extra_env=settings
    ) as ready:
        yield ready


def test_a_compensation_rides_out_a_control_plane_outage_and_ends_rolled_back(patient: Installation) -> None:
    seeded = seed_namespace(patient.member_api, "outage-1", full=False)
    before = snapshot(patient.member_api, "outage-1")
    control_plane = SimAdmin(patient.control_plane.url)
    held = control_plane.add_fault(
        verb="create",
        resource="deployments.apps",
        namespace="outage-1",
        status="timeout",
        timeout_seconds=3,
        times=1,
    )
    patient.apply("outage", includedNamespaces=["outage-1"])
    control_plane.wait_fired(held["id"], "the rebuild to be creating the Deployment", timeout=10)
    started = time.monotonic()
    control_plane.add_fault(status=503, user_agent="kosmos-promote", message="injected: apiserver restarting")
    wait_until(
        lambda: _retries(patient, "outage-1"),
        timeout=60,
        what="the compensation to meet the outage and retry",
    )
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
    control_plane.clear_faults()

    status = patient.wait_done("outage", timeout=180, phases=("RolledBack", "FailedRollback", "Failed"))
    assert status["phase"] == "Failed", status  # no namespace completed: all were rolled back
    [namespace] = status["namespaces"]
    assert namespace["phase"] == "RolledBack", namespace
    assert diff(before, snapshot(patient.member_api, "outage-1")) == []
    assert pod_uids(patient.member_api, "outage-1") == seeded.pods
    assert patient.link.member_deletions == []
    assert _retries(patient, "outage-1") >= 2, "retried with backoff while the control plane was down"


def _retries(installation: Installation, namespace: str) -> int:
    """Compensation attempts that met the outage, from the workers' logs."""
    lines = [line for p in installation.workdir.glob("worker-*.log") for line in p.read_text().splitlines()]
    return sum(1 for line in lines if "left differences, retrying" in line and namespace in line)
