"""Claims: which run owns a namespace, and whether a message may act — the verdicts as a table, the Lease
as the API server stores it, and the races (two claimants, a stale writer) against the simulator."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

import pytest
import redis

from kubesim import SimulatedCluster
from kubesim.testing import SimAdmin
from shared.claims import (
    Claim,
    ClaimHeld,
    Claims,
    ClaimsHeld,
    ClaimState,
    RunSpec,
    compensation_verdict,
    forward_verdict,
    from_lease,
    lease_name,
    rollback_verdict,
    to_lease,
)
from shared.kube import Conflict, Kube, KubeError, RetryPolicy
from shared.progress import Progress

T = TypeVar("T")
R = TypeVar("R")
SPEC = RunSpec(policy="p", policy_uid="uid-p", run_id="run-1", generation=1, cluster="member1")
INSTALL = "kosmos-promote"


def _claim(state: ClaimState = ClaimState.PROMOTING, attempt: int = 2, run_id: str = "run-1") -> Claim:
    return Claim("member1", "shop", replace_run(run_id), attempt, state)


def replace_run(run_id: str) -> RunSpec:
    return SPEC.model_copy(update={"run_id": run_id})


P, C, R = ClaimState.PROMOTING, ClaimState.COMPLETED, ClaimState.ROLLING_BACK


@pytest.mark.parametrize(
    ("claim", "attempt", "acts"),
    [
        (_claim(P, 2), 2, True),
        (_claim(P, 2), 1, False),  # superseded by a resume
        (_claim(C, 2), 2, False),  # completed: a redelivered step must not rebuild again
        (_claim(R, 2), 2, False),  # cancelled or rolling back
        (_claim(P, 2, run_id="run-2"), 2, False),  # another run owns the namespace now
        (None, 2, False),  # released: rolled back
    ],
)
def test_forward_steps_act_only_for_the_claims_run_and_attempt(
    claim: Claim | None, attempt: int, acts: bool
) -> None:
    assert (forward_verdict(claim, "run-1", attempt) is None) is acts


@pytest.mark.parametrize(
    ("claim", "attempt", "acts"),
    [
        (_claim(P, 2), 2, True),
        (_claim(R, 2), 1, True),  # already rolling back: a retry or a duplicate converges
        (_claim(P, 2), 1, False),  # a failed attempt that a resume has superseded
        (_claim(C, 2), 2, False),  # late: the run completed since
        (_claim(P, 1, run_id="run-2"), 1, False),  # a newer run of the namespace: never undone
        (None, 1, False),
    ],
)
def test_compensations_act_only_for_an_uncompleted_current_attempt(
    claim: Claim | None, attempt: int, acts: bool
) -> None:
    assert (compensation_verdict(claim, "run-1", attempt) is None) is acts


@pytest.mark.parametrize(
    ("claim", "acts"),
    [
        (_claim(R), True),
        (_claim(C), False),
        (_claim(P), False),
        (_claim(R, run_id="run-2"), False),
        (None, False),
    ],
)
def test_rollbacks_act_only_once_the_claim_says_rolling_back(claim: Claim | None, acts: bool) -> None:
    assert (rollback_verdict(claim, "run-1") is None) is acts


def test_a_claim_survives_its_lease_round_trip() -> None:
    claim = Claim(
        "member1", "shop", SPEC, 3, ClaimState.COMPLETED, (("storageclasses.storage.k8s.io", "fast"),)
    )
    lease = to_lease(claim, INSTALL)
    assert lease["metadata"]["namespace"] == INSTALL and lease["metadata"]["name"] == "shop.member1"
    assert lease["spec"]["holderIdentity"] == "p/run-1"
    assert from_lease(lease) == claim


def test_a_long_cluster_name_still_gives_a_valid_lease_name() -> None:
    name = lease_name("c" * 250, "shop")
    assert len(name) <= 253 and name.startswith("shop.")
    assert name != lease_name("d" * 250, "shop")


@pytest.fixture
def claims(cluster: SimulatedCluster) -> Iterator[Claims]:
    with Kube.from_kubeconfig(cluster.kubeconfig(), retry=RetryPolicy(attempts=2, base_delay=0.01)) as kube:
        kube.create(kube.discovery.resolve("namespaces"), {"metadata": {"name": INSTALL}})
        yield Claims(kube, INSTALL)


def test_of_two_runs_claiming_at_once_exactly_one_wins(claims: Claims) -> None:
    runs = [SPEC.model_copy(update={"run_id": f"run-{i}", "policy_uid": f"uid-{i}"}) for i in range(2)]

    def claim(spec: RunSpec) -> str:
        try:
            return claims.acquire(spec, "shop").run_id
        except ClaimHeld as held:
            return f"held by {held.claim.run_id}"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(claim, runs))
    winner = claims.get("member1", "shop")
    assert winner is not None
    assert outcomes == sorted([winner.run_id, f"held by {winner.run_id}"])


def _in_threads(call: Callable[[T], R], items: Iterable[T], /) -> list[R]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(call, items))


def _held_namespaces(claims: Claims) -> dict[str, str]:
    return {claim.namespace: claim.run_id for claim in claims.all()}


def test_of_two_policies_claiming_overlapping_namespaces_at_once_one_gets_all_and_the_other_none(
    claims: Claims,
) -> None:
    wanted = {"run-a": ["a", "b", "c", "d"], "run-b": ["c", "d", "e", "f"]}

    def claim_all(run_id: str) -> str:
        spec = SPEC.model_copy(update={"run_id": run_id, "policy_uid": f"uid-{run_id}"})
        try:
            claims.acquire_all(spec, wanted[run_id], _in_threads)
        except ClaimsHeld as refused:
            return "refused by " + ",".join(sorted({held.claim.run_id for held in refused.held}))
        return "all"

    for _ in range(5):
        with ThreadPoolExecutor(2) as pool:
            outcomes = dict(zip(wanted, pool.map(claim_all, wanted), strict=True))
        holders = _held_namespaces(claims)
        winner = holders["c"]
        loser = next(run for run in wanted if run != winner)
        assert outcomes == {winner: "all", loser: f"refused by {winner}"}
        assert holders == dict.fromkeys(wanted[winner], winner)
        for claim in claims.all():
            claims.release(claim)


def test_a_run_refused_one_namespace_holds_none_of_the_others(claims: Claims) -> None:
    claims.acquire(replace_run("run-0").model_copy(update={"policy_uid": "uid-0"}), "c")

    with pytest.raises(ClaimsHeld) as refused:
        claims.acquire_all(SPEC, ["a", "b", "c", "d"], _in_threads)

    assert [held.claim.namespace for held in refused.value.held] == ["c"]
    assert 'claimed by PromotePolicy "p" (run run-0' in str(refused.value)
    assert _held_namespaces(claims) == {"c": "run-0"}


def test_a_claim_that_fails_for_another_reason_releases_those_taken_and_raises(
    claims: Claims, admin: SimAdmin
) -> None:
    admin.add_fault(verb="create", resource="leases", status=403, nth=3)

    with pytest.raises(KubeError):
        claims.acquire_all(SPEC, ["a", "b", "c", "d", "e"], _in_threads)

    assert _held_namespaces(claims) == {}


def test_the_rollbacks_sharing_an_object_are_the_other_namespaces_rolling_back_with_it(
    claims: Claims,
) -> None:
    fast = ("storageclasses.storage.k8s.io", "fast")
    for namespace, run_id, uses in [("a", "run-a", (fast,)), ("b", "run-b", (fast,)), ("c", "run-c", ())]:
        spec = SPEC.model_copy(update={"run_id": run_id, "policy_uid": f"uid-{run_id}"})
        claims.acquire(spec, namespace, cluster_objects=uses)
    claims.roll_back("member1", "a", "run-a", ClaimState.PROMOTING)
    claims.roll_back("member1", "c", "run-c", ClaimState.PROMOTING)

    assert [claim.namespace for claim in claims.rolling_back_with({fast}, "member1", "d")] == ["a"]
    assert claims.rolling_back_with({fast}, "member1", "a") == [], "not its own"
    assert claims.rolling_back_with({("storageclasses.storage.k8s.io", "slow")}, "member1", "d") == []


def test_a_restarted_start_of_the_same_policy_takes_its_claim_over(claims: Claims) -> None:
    claims.acquire(SPEC, "shop")
    retried = SPEC.model_copy(update={"run_id": "run-retried"})
    assert claims.acquire(retried, "shop").run_id == "run-retried"
    completed = claims.change(
        "member1", "shop", lambda c: replace(c, state=ClaimState.COMPLETED) if c else None
    )
    assert completed is not None and completed.state is ClaimState.COMPLETED
    with pytest.raises(ClaimHeld, match='claimed by PromotePolicy "p"'):
        claims.acquire(SPEC.model_copy(update={"run_id": "run-late"}), "shop")  # not promoting: no takeover


def test_a_stale_writer_gets_a_conflict_and_change_decides_again_on_a_fresh_read(claims: Claims) -> None:
    first = claims.acquire(SPEC, "shop")
    claims.replace(first, replace(first, attempt=2))
    with pytest.raises(Conflict):
        claims.replace(first, replace(first, state=ClaimState.COMPLETED))  # written on a stale read
    seen: list[int] = []

    def bump(claim: Claim | None) -> Claim | None:
        assert claim is not None
        seen.append(claim.attempt)
        return replace(claim, attempt=claim.attempt + 1)

    assert claims.change("member1", "shop", bump).attempt == 3  # type: ignore[union-attr]
    assert seen == [2]


def test_a_release_deletes_only_the_claim_that_was_read(claims: Claims) -> None:
    claim = claims.acquire(SPEC, "shop")
    claims.release(claim)
    assert claims.get("member1", "shop") is None
    again = claims.acquire(SPEC.model_copy(update={"run_id": "run-2", "policy_uid": "uid-2"}), "shop")
    with pytest.raises(Conflict):
        claims.release(claim)  # the old claim's uid: the new owner's claim stays
    assert claims.get("member1", "shop") == again
    assert [c.run_id for c in claims.all()] == ["run-2"]


def test_a_resume_restarts_the_stall_clock_so_one_stall_gets_one_resume(redis_url: str) -> None:
    """The watchdog resumes a namespace whose progress has not moved for the stall timeout. Counting a
    resume also stamps the clock: until the resumed messages move, the next resume is a whole stall
    timeout away, not one status pass (a second) later."""
    progress = Progress(redis.Redis.from_url(redis_url), f"stall-{uuid.uuid4().hex[:8]}", "run-1")
    progress.set("shop", phase="Detaching")
    [before] = progress.read(["shop"])
    time.sleep(0.01)
    assert progress.bump_resumes("shop") == 1
    [after] = progress.read(["shop"])
    assert before.updated is not None and after.updated is not None and after.updated > before.updated


def test_roll_back_moves_only_the_runs_own_claim_from_the_states_named(claims: Claims) -> None:
    claims.acquire(SPEC, "shop")
    claims.change("member1", "shop", lambda c: replace(c, state=ClaimState.COMPLETED) if c else None)
    assert claims.roll_back("member1", "shop", "run-1", ClaimState.PROMOTING).state is ClaimState.COMPLETED  # type: ignore[union-attr]
    assert claims.roll_back("member1", "shop", "run-other", ClaimState.COMPLETED) is None
    moved = claims.roll_back("member1", "shop", "run-1", ClaimState.PROMOTING, ClaimState.COMPLETED)
    assert moved is not None and moved.state is ClaimState.ROLLING_BACK
    claims.release_run("member1", "shop", "run-other")
    assert claims.get("member1", "shop") == moved, "another run's release leaves it"
    claims.release_run("member1", "shop", "run-1")
    assert claims.get("member1", "shop") is None


def _claim_requests(admin: SimAdmin, verb: str) -> int:
    return sum(1 for entry in admin.requests() if entry["resource"] == "leases" and entry["verb"] == verb)


def test_a_change_right_after_a_read_writes_without_reading_again(claims: Claims, admin: SimAdmin) -> None:
    """A task reads its claim before acting and records what it did moments later: that read is the
    starting point, and the write's resourceVersion proves it still current."""
    claims.acquire(SPEC, "shop")
    claims.get("member1", "shop")
    admin.clear_requests()
    done = claims.change("member1", "shop", lambda c: replace(c, state=ClaimState.COMPLETED) if c else None)
    assert done is not None and done.state is ClaimState.COMPLETED
    assert (_claim_requests(admin, "get"), _claim_requests(admin, "update")) == (0, 1)
    assert claims.get("member1", "shop") == done


def test_a_claim_changed_elsewhere_since_it_was_read_is_decided_again_on_a_fresh_read(
    claims: Claims,
) -> None:
    """Another process (the watcher moving it to rolling back) wrote the claim after this one read it:
    the change must not act on the old view, whether it would write or refuse."""
    claims.acquire(SPEC, "shop")
    claims.get("member1", "shop")
    elsewhere = Claims(claims.kube, INSTALL)
    elsewhere.roll_back("member1", "shop", "run-1", ClaimState.PROMOTING)
    seen: list[ClaimState] = []

    def complete(claim: Claim | None) -> Claim | None:
        assert claim is not None
        seen.append(claim.state)
        if claim.state is not ClaimState.PROMOTING:
            raise RuntimeError("not promoting any more")
        return replace(claim, state=ClaimState.COMPLETED)

    with pytest.raises(RuntimeError, match="not promoting"):
        claims.change("member1", "shop", complete)
    assert seen == [ClaimState.PROMOTING, ClaimState.ROLLING_BACK]
    assert claims.get("member1", "shop").state is ClaimState.ROLLING_BACK  # type: ignore[union-attr]


def test_a_release_after_a_read_spares_a_claim_another_run_took_over_since(claims: Claims) -> None:
    """The restarted start of a policy takes its claim over (same Lease, another run): a release by the
    earlier run from what it read before must leave the new run's claim."""
    claims.acquire(SPEC, "shop")
    claims.get("member1", "shop")
    retried = Claims(claims.kube, INSTALL).acquire(SPEC.model_copy(update={"run_id": "run-retried"}), "shop")
    claims.release_run("member1", "shop", "run-1")
    assert claims.get("member1", "shop") == retried
    claims.release_run("member1", "shop", "run-retried")
    assert claims.get("member1", "shop") is None
