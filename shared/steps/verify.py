"""Verify that the control plane adopted everything and started nothing new, and the member kept its pods.

Checked, not assumed: every rebuilt ReplicaSet owns exactly the backed-up pods it owned in the member,
every Deployment owns its ReplicaSets, every StatefulSet owns its pods; no pod or ReplicaSet exists in
the control plane that was not in the backup (a controller made it: a restart in the making), and no
controller's Event says it created a pod at any time during the run (it may have deleted it since);
and in the member every promoted pod still has the UID it had before, with no deletion pending and no
controller of the member's own (an owner put back there, by a GitOps tool say, would manage it beside the
control plane).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from shared.claims import Claim, ClaimState, RunHalted, forward_verdict
from shared.items import Obj
from shared.kinds import RULES
from shared.kinds.helpers import controller_ref
from shared.kube import Kube
from shared.models import NamespacePhase
from shared.plan import NamespacePlan
from shared.progress import NamespaceRun
from shared.runtime import Runtime
from shared.steps import recorded_plan


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    final: bool = False
    """A problem no wait can mend: a member pod gone, re-created, or controlled in the member again."""

    @property
    def ok(self) -> bool:
        return not self.problems


def _promoted(objects: Iterable[Obj], plan: NamespacePlan) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if plan.of(o).promoted}


def _controller(obj: Obj) -> tuple[str, str] | None:
    ref = controller_ref(obj)
    return (ref["kind"], ref["name"]) if ref is not None else None


def check(runtime: Runtime, run: NamespaceRun) -> Verdict:
    member = runtime.member_of(runtime.run_spec(run))
    control_plane = runtime.control_plane
    backup = runtime.backup(run)
    verdict = Verdict()
    plan = recorded_plan.load(backup, runtime.run_spec(run).context())
    for group_resource, owners in ((gr, RULES.for_(gr).promoted_with) for gr in RULES):
        if not owners:
            continue
        expected = _promoted(backup.items(group_resource), plan)
        live = {o["metadata"]["name"]: o for o in _list(control_plane, group_resource, run.namespace)}
        for name in sorted(set(live) - set(expected)):
            verdict.problems.append(
                f"the control plane created {group_resource} {name}: a controller did not "
                f"adopt what was rebuilt"
            )
        for name, obj in expected.items():
            twin = live.get(name)
            if twin is None:
                verdict.problems.append(f"{group_resource} {name} is missing in the control plane")
                continue
            owner = _controller(obj)  # its member owner: the control-plane twin must end up with the same
            if owner is not None and owner[0] in owners and _controller(twin) != owner:
                verdict.problems.append(
                    f"{group_resource} {name} is not owned by {owner[0]} {owner[1]} "
                    f"in the control plane (owner: {_controller(twin)})"
                )
    verdict.problems += [
        f"the control plane's {event['involvedObject'].get('kind')} controller created a pod during the run "
        f"({event.get('message')}): it did not see the rebuilt pods in time"
        for event in _list(control_plane, "events", run.namespace)
        if created_a_pod(event)
    ]
    # One list of the member's pods rather than a read per pod: the same answer in one request per 500.
    promoted_pods = _promoted(backup.items("pods"), plan)
    live_pods = (
        {o["metadata"]["name"]: o for o in _list(member, "pods", run.namespace)} if promoted_pods else {}
    )
    for name, pod in promoted_pods.items():
        problem = member_pod_problem(name, pod, live_pods.get(name))
        if problem is not None:
            verdict.problems.append(problem)
            verdict.final = True
    return verdict


def member_pod_problem(name: str, backed_up: Obj, live: Obj | None) -> str | None:
    """What went wrong with a promoted pod in the member, if anything. A controller that is not the one it
    had (whose reference the garbage collector may not have removed yet) means something re-created its
    owner in the member, typically a GitOps tool syncing the namespace: both clusters would manage it."""
    if live is None:
        return f"member pod {name} is gone"
    if live["metadata"]["uid"] != backed_up["metadata"]["uid"]:
        return f"member pod {name} was re-created (uid changed)"
    if live["metadata"].get("deletionTimestamp"):
        return f"member pod {name} is being deleted"
    ref = controller_ref(live)
    if ref is not None and ref.get("uid") != (controller_ref(backed_up) or {}).get("uid"):
        return (
            f"member pod {name} is controlled again in the member, by {ref.get('kind')} {ref.get('name')}: "
            f"something re-created its owner there (a GitOps tool syncing the namespace?); pause it and "
            f"promote again"
        )
    return None


def created_a_pod(event: Obj) -> bool:
    """An Event saying a ReplicaSet or StatefulSet controller created a pod (worded as theirs are):
    proof that a controller started a pod of its own, even if it deleted the surplus since."""
    kind = (event.get("involvedObject") or {}).get("kind")
    message = event.get("message") or ""
    if event.get("reason") != "SuccessfulCreate":
        return False
    return (kind == "ReplicaSet" and message.startswith("Created pod")) or (
        kind == "StatefulSet" and message.startswith("create Pod ")
    )


def _list(kube: Kube, group_resource: str, namespace: str) -> list[Obj]:
    resource = kube.discovery.by_group_resource(group_resource)
    return list(kube.list(resource, namespace)) if resource else []


def complete(runtime: Runtime, run: NamespaceRun) -> None:
    """Record in the claim that the namespace is promoted: from then on only a rollback request undoes
    it, and a late compensation of this run finds it completed and does nothing."""

    def completed(claim: Claim | None) -> Claim | None:
        reason = forward_verdict(claim, run.run_id, run.attempt)
        if reason is not None or claim is None:
            raise RunHalted(run, reason or "no claim")
        return replace(claim, state=ClaimState.COMPLETED)

    runtime.claims.change(run.cluster, run.namespace, completed)


def verify(runtime: Runtime, run: NamespaceRun) -> Verdict:
    """Adoption takes ~0.1 s on a real control plane; poll until clean or the timeout says otherwise."""
    progress = runtime.progress(run)
    progress.phase(run.namespace, NamespacePhase.VERIFYING, "verify adoption")
    deadline = time.monotonic() + runtime.settings.adoption_timeout
    while True:
        verdict = check(runtime, run)
        if verdict.ok or verdict.final or time.monotonic() > deadline:
            return verdict
        time.sleep(0.1)
