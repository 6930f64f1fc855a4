"""Which run owns a namespace of a member cluster, recorded in Kubernetes so that it outlives Redis.

Before anything is written, a run claims `(cluster, namespace)`: a `coordination.k8s.io` Lease in the
installation namespace, created atomically (a second claimant gets AlreadyExists, so two policies or two
watchers racing cannot both win) and changed only with its resourceVersion (a stale writer gets
Conflict and decides again on a fresh read). The claim holds what the run acts on, frozen when it
started (`RunSpec`), the attempt whose messages may act, and the run's state. Every task reads it first
and acts only when the verdict below says so; anything else is stale work and does nothing.

The claim is released (deleted) only when its namespace has been rolled back, or when the policy of a
completed namespace is deleted: while a namespace is promoted, no other run can take it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from shared.fan_out import FanOut
from shared.items import Obj
from shared.kinds import Context
from shared.kube import AlreadyExists, ApiResource, Conflict, Kube
from shared.models import PromotePolicySpec
from shared.progress import NamespaceRun

LEASES = "leases.coordination.k8s.io"
RUN_SPEC_LABEL = "runSpec"
"""The manifest label holding the run's frozen spec: a sealed backup says by itself what to undo."""
PREFIX = "promote.kosmos.io/"
CLAIM_LABEL = f"{PREFIX}claim"
STATE_LABEL = f"{PREFIX}state"
"""The claim's state as a label too, so the claims rolling back are listed without reading every claim."""
MAX_NAME = 253
RECENT_SECONDS = 5.0
"""How long a claim this process read or wrote may serve as the starting point of a change (see
`Claims.change`): a task reads its claim first and changes it moments later."""
RECENT_CLAIMS = 4096
"""Claims remembered per process at most (one per namespace it worked on lately)."""


class ClaimState(StrEnum):
    PROMOTING = "promoting"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling-back"


class RunSpec(BaseModel):
    """What a run acts on, copied from the policy when the run starts and never read from it again: a
    later edit of the policy (another cluster, other filters) cannot change what a run does or undoes."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=to_camel)

    policy: str
    policy_uid: str
    run_id: str
    generation: int
    started: float = 0.0
    """When the run was prechecked (epoch seconds): what existed in the member then is in its scope."""
    cluster: str
    member_id: str | None = None
    """UID of the member's kube-system namespace: the same Cluster name may later point elsewhere."""
    included_resources: tuple[str, ...] = ()
    excluded_resources: tuple[str, ...] = ()

    def dump(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def recorded_in(cls, labels: Mapping[str, str]) -> RunSpec | None:
        """The spec a sealed backup's manifest records (label RUN_SPEC_LABEL), if it records one."""
        recorded = labels.get(RUN_SPEC_LABEL)
        return cls.model_validate_json(recorded) if recorded is not None else None

    def context(self) -> Context:
        return Context(cluster=self.cluster, policy=self.policy, run=self.run_id)

    def selection(self) -> PromotePolicySpec:
        """The frozen type filters in the shape the type selection reads."""
        return PromotePolicySpec(
            cluster_name=self.cluster,
            included_namespace_scoped_resources=list(self.included_resources),
            excluded_namespace_scoped_resources=list(self.excluded_resources),
        )


@dataclass(frozen=True)
class Claim:
    cluster: str
    namespace: str
    spec: RunSpec
    attempt: int
    state: ClaimState
    cluster_objects: tuple[tuple[str, str], ...] = ()
    """(group-resource, name) of the cluster-scoped objects the namespace uses in the control plane: a
    rollback of another namespace keeps what a live claim still uses."""
    resource_version: str = ""
    uid: str = ""

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    def describe(self) -> str:
        return f'PromotePolicy "{self.spec.policy}" (run {self.run_id}, {self.state.value})'


class ClaimHeld(Exception):
    """The namespace is owned by another run."""

    def __init__(self, claim: Claim) -> None:
        super().__init__(
            f'namespace "{claim.namespace}" of cluster "{claim.cluster}" is claimed by {claim.describe()}; '
            f"one namespace is promoted by one policy at a time"
        )
        self.claim = claim


class ClaimsHeld(Exception):
    """Some of the namespaces a run asked for are owned by other runs; it holds none of them."""

    def __init__(self, held: list[ClaimHeld]) -> None:
        super().__init__("; ".join(map(str, held)))
        self.held = held


class RunHalted(Exception):
    """A message that must not act: stale, cancelled or superseded work. Not a failure: nothing is
    compensated for it; the message is dropped and the log says why."""

    def __init__(self, run: NamespaceRun, reason: str) -> None:
        super().__init__(f"{run.namespace} (run {run.run_id}, attempt {run.attempt}) does nothing: {reason}")
        self.run = run
        self.reason = reason


# The verdicts: pure decisions of whether a message may act, given the claim as it is now. ----------------
def forward_verdict(claim: Claim | None, run_id: str, attempt: int) -> str | None:
    """None when a forward step of `run_id`/`attempt` may act, otherwise why it must not."""
    if claim is None or claim.run_id != run_id:
        return "the namespace is not claimed by this run (rolled back, or taken over by another run)"
    if claim.state is not ClaimState.PROMOTING:
        return f"the run is {claim.state.value}"
    if claim.attempt != attempt:
        return f"attempt {attempt} was superseded by attempt {claim.attempt}"
    return None


def compensation_verdict(claim: Claim | None, run_id: str, attempt: int) -> str | None:
    """None when a compensation of a failed `attempt` may roll the namespace back, otherwise why not: a
    compensation of an earlier attempt, or one that arrives after the run completed, is stale."""
    if claim is None or claim.run_id != run_id:
        return "the namespace is not claimed by this run (already rolled back, or another run owns it)"
    if claim.state is ClaimState.COMPLETED:
        return "the run has completed since; only a rollback request undoes it"
    if claim.state is ClaimState.PROMOTING and claim.attempt != attempt:
        return f"attempt {attempt} was superseded by attempt {claim.attempt}"
    return None


def rollback_verdict(claim: Claim | None, run_id: str) -> str | None:
    """None when a rollback of `run_id` may act: only once its claim says so, so that a stale request
    cannot undo a run that has completed since, or another run's promote."""
    if claim is None or claim.run_id != run_id:
        return "the namespace is not claimed by this run (already rolled back, or another run owns it)"
    if claim.state is not ClaimState.ROLLING_BACK:
        return f"the run is {claim.state.value}, not rolling back"
    return None


# The Lease that records a claim. ---------------------------------------------------------------------------
def lease_name(cluster: str, namespace: str) -> str:
    """Readable when it fits a name (`<namespace>.<cluster>`), else a digest; labels carry both anyway."""
    name = f"{namespace}.{cluster}"
    if len(name) <= MAX_NAME:
        return name
    return f"{namespace}.{hashlib.sha256(cluster.encode()).hexdigest()[:32]}"


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_lease(claim: Claim, install_namespace: str) -> Obj:
    metadata: Obj = {
        "name": lease_name(claim.cluster, claim.namespace),
        "namespace": install_namespace,
        "labels": {
            CLAIM_LABEL: "true",
            STATE_LABEL: claim.state.value,
            "app.kubernetes.io/managed-by": "kosmos-promote",
        },
        "annotations": {
            f"{PREFIX}cluster": claim.cluster,
            f"{PREFIX}namespace": claim.namespace,
            f"{PREFIX}policy": claim.spec.policy,
            f"{PREFIX}run": claim.run_id,
            f"{PREFIX}attempt": str(claim.attempt),
            f"{PREFIX}state": claim.state.value,
            f"{PREFIX}spec": claim.spec.dump(),
            f"{PREFIX}cluster-objects": orjson.dumps(claim.cluster_objects).decode(),
        },
    }
    if claim.resource_version:
        metadata["resourceVersion"] = claim.resource_version
    now = _micro_time()
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {"holderIdentity": f"{claim.spec.policy}/{claim.run_id}", "renewTime": now},
    }


def from_lease(obj: Obj) -> Claim:
    metadata = obj["metadata"]
    notes = metadata.get("annotations") or {}
    return Claim(
        cluster=notes[f"{PREFIX}cluster"],
        namespace=notes[f"{PREFIX}namespace"],
        spec=_spec(notes[f"{PREFIX}spec"]),
        attempt=int(notes[f"{PREFIX}attempt"]),
        state=ClaimState(notes[f"{PREFIX}state"]),
        cluster_objects=_cluster_objects(notes.get(f"{PREFIX}cluster-objects", "[]")),
        resource_version=metadata.get("resourceVersion", ""),
        uid=metadata.get("uid", ""),
    )


@lru_cache(maxsize=256)
def _spec(text: str) -> RunSpec:
    """A run's spec is frozen, and every task of the run reads the same text: validated once per process
    (the pydantic validation was most of a claim read's CPU)."""
    return RunSpec.model_validate_json(text)


@lru_cache(maxsize=1024)
def _cluster_objects(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(ref) for ref in orjson.loads(text))


class Claims:
    """The claims of one installation, in its namespace of the control plane."""

    def __init__(self, kube: Kube, install_namespace: str) -> None:
        self.kube = kube
        self.install_namespace = install_namespace
        self._recent: OrderedDict[str, tuple[float, Claim]] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._claiming = threading.Lock()

    @property
    def _leases(self) -> ApiResource:
        return self.kube.discovery.resolve(LEASES)

    def get(self, cluster: str, namespace: str) -> Claim | None:
        """The claim as the API server has it now: always a request."""
        name = lease_name(cluster, namespace)
        obj = self.kube.get(self._leases, self.install_namespace, name)
        return self._remember(name, from_lease(obj) if obj is not None else None)

    def _remember(self, name: str, claim: Claim | None) -> Claim | None:
        with self._recent_lock:
            self._recent.pop(name, None)
            if claim is not None:
                self._recent[name] = (time.monotonic(), claim)
                if len(self._recent) > RECENT_CLAIMS:
                    self._recent.popitem(last=False)
        return claim

    def _recently_seen(self, cluster: str, namespace: str) -> Claim | None:
        """The claim as this process last read or wrote it, if that was within RECENT_SECONDS."""
        with self._recent_lock:
            seen = self._recent.get(lease_name(cluster, namespace))
        if seen is None or time.monotonic() - seen[0] > RECENT_SECONDS:
            return None
        return seen[1]

    def all(self, state: ClaimState | None = None) -> Iterator[Claim]:
        """Every claim, or those in `state` (selected by the server on the claims' state label)."""
        selector = f"{CLAIM_LABEL}=true" + (f",{STATE_LABEL}={state.value}" if state is not None else "")
        for obj in self.kube.list(self._leases, self.install_namespace, label_selector=selector):
            yield from_lease(obj)

    def rolling_back_with(self, objects: set[tuple[str, str]], cluster: str, namespace: str) -> list[Claim]:
        """The claims of other namespaces rolling back whose cluster-scoped objects include any of
        `objects`: their rollbacks may be deleting them."""
        return [
            claim
            for claim in self.all(ClaimState.ROLLING_BACK)
            if (claim.cluster, claim.namespace) != (cluster, namespace)
            and objects.intersection(claim.cluster_objects)
        ]

    def acquire(
        self,
        spec: RunSpec,
        namespace: str,
        state: ClaimState = ClaimState.PROMOTING,
        cluster_objects: tuple[tuple[str, str], ...] = (),
    ) -> Claim:
        """Claim `namespace` for the run of `spec`; ClaimHeld names the owner if another run has it. A
        claim of the same policy object (an earlier attempt to start it that did not reach its status) is
        taken over: that run's messages then find the claim is not theirs and do nothing."""
        wanted = Claim(spec.cluster, namespace, spec, attempt=1, state=state, cluster_objects=cluster_objects)
        try:
            return from_lease(self.kube.create(self._leases, to_lease(wanted, self.install_namespace)))
        except AlreadyExists:
            held = self.get(spec.cluster, namespace)
        if held is None:
            return self.acquire(spec, namespace, state, cluster_objects)
        if held.run_id == spec.run_id:
            return held
        if held.spec.policy_uid == spec.policy_uid and held.state is ClaimState.PROMOTING:
            return self.replace(held, replace(wanted, resource_version=held.resource_version))
        raise ClaimHeld(held)

    def acquire_all(self, spec: RunSpec, namespaces: Iterable[str], fan_out: FanOut) -> list[Claim]:
        """Claim every namespace, or none (ClaimsHeld names every holder).

        The claims go out at once, one round trip for any number of namespaces, while no other run of
        this process is claiming: of two policies racing for overlapping namespaces, the one that claims
        first gets all of its own and the other is refused naming the holder, never both (the watcher
        is the only process that starts runs, deploy/watcher.yaml). Claims already taken are released
        before another run may claim, whatever went wrong."""

        def attempt(namespace: str) -> Claim | Exception:
            try:
                return self.acquire(spec, namespace)
            except Exception as failure:  # sorted out below, once every claim has an answer
                return failure

        with self._claiming:
            outcomes = fan_out(attempt, sorted(set(namespaces)))
            taken = [outcome for outcome in outcomes if isinstance(outcome, Claim)]
            failures = [outcome for outcome in outcomes if not isinstance(outcome, Claim)]
            if failures:
                fan_out(self.release, taken)
        if unexpected := [failure for failure in failures if not isinstance(failure, ClaimHeld)]:
            raise unexpected[0]
        if failures:
            raise ClaimsHeld([failure for failure in failures if isinstance(failure, ClaimHeld)])
        return taken

    def replace(self, current: Claim, wanted: Claim) -> Claim:
        """Write `wanted` if the claim is still `current` (its resourceVersion); Conflict otherwise."""
        body = to_lease(replace(wanted, resource_version=current.resource_version), self.install_namespace)
        written = from_lease(self.kube.replace(self._leases, body))
        self._remember(lease_name(current.cluster, current.namespace), written)
        return written

    def change(
        self, cluster: str, namespace: str, decide: Callable[[Claim | None], Claim | None]
    ) -> Claim | None:
        """Read, let `decide` return the claim as it should be (or None to leave it), write it with the
        read resourceVersion; on Conflict read and decide again. Returns the claim as it is afterwards.

        The first try starts from the claim this process read or wrote moments ago (a task reads its
        claim before acting, then records what it did), which saves a read: the write carries that
        claim's resourceVersion, so it succeeds only if the claim has not changed since, i.e. exactly
        when a fresh read would have decided the same. Every other outcome (a Conflict, nothing to
        write, `decide` refusing) is decided again on a fresh read."""
        seen = self._recently_seen(cluster, namespace)
        if seen is not None:
            try:
                wanted = decide(seen)
            except Exception:
                wanted = None  # decided again below, on the claim as it is now
            if wanted is not None and wanted != seen:
                try:
                    return self.replace(seen, wanted)
                except Conflict:
                    pass
        for _ in range(20):
            current = self.get(cluster, namespace)
            wanted = decide(current)
            if current is None or wanted is None or wanted == current:
                return current
            try:
                return self.replace(current, wanted)
            except Conflict:
                time.sleep(0.05)
        raise Conflict(409, "Conflict", f"claim of {namespace} kept changing", target=LEASES)

    def roll_back(self, cluster: str, namespace: str, run_id: str, *from_states: ClaimState) -> Claim | None:
        """Move `run_id`'s claim to rolling back from one of `from_states` (one already rolling back stays
        so); the claim as it is then, or None when the run does not hold the namespace."""

        def rolling_back(claim: Claim | None) -> Claim | None:
            if claim is None or claim.run_id != run_id:
                return None
            if claim.state in from_states:
                return replace(claim, state=ClaimState.ROLLING_BACK)
            return claim

        claim = self.change(cluster, namespace, rolling_back)
        return claim if claim is not None and claim.run_id == run_id else None

    def release_run(self, cluster: str, namespace: str, run_id: str) -> None:
        """Release the claim if `run_id` still holds it (its rollback is done); another run's stays.

        From the claim read moments ago when there is one: its delete is conditional on that very
        version, so a claim changed since (another run took the namespace over) is read again first."""
        seen = self._recently_seen(cluster, namespace)
        if seen is not None and seen.run_id == run_id:
            try:
                self.release(seen, exact=True)
                return
            except Conflict:
                pass
        claim = self.get(cluster, namespace)
        if claim is not None and claim.run_id == run_id:
            self.release(claim)

    def release(self, claim: Claim, *, exact: bool = False) -> None:
        """Delete the claim, only if it is still the object that was read (its uid) and, when `exact`,
        still at the version that was read (Conflict otherwise)."""
        name = lease_name(claim.cluster, claim.namespace)
        self._remember(name, None)
        self.kube.delete(
            self._leases,
            self.install_namespace,
            name,
            uid=claim.uid,
            resource_version=claim.resource_version if exact else None,
        )
