"""After a namespace completed: its pods must stay without a controller in the member.

Verify proves it once, when the run ends. A GitOps tool that syncs the member namespace can put an owner
detach deleted back minutes later: its ReplicaSet adopts the running pods it selects, and from then on
both clusters manage them (a scale-down or rollout in either deletes pods the other counts on). Nothing
in the run sees that any more, so the watcher looks again at every completed namespace of a policy, every
`KPROMOTE_COMPLETED_CHECK_INTERVAL` seconds, with one list of the member's promoted pods per namespace,
and reports what it finds; it changes nothing (a re-created owner deleted here would be put back by the
same tool).
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.claims import RunSpec
from shared.items import Obj
from shared.kinds.helpers import controller_ref
from shared.markers import POD_MARKER
from shared.runtime import Runtime


def controlled_in_member(pods: Iterable[Obj]) -> list[str]:
    """`<pod> by <Kind> <name>` for each of the member's promoted pods that a controller there owns."""
    return [
        f"{pod['metadata']['name']} by {ref.get('kind')} {ref.get('name')}"
        for pod in pods
        if (ref := controller_ref(pod)) is not None
    ]


def member_controllers(runtime: Runtime, spec: RunSpec, namespaces: list[str]) -> list[str]:
    """`<namespace>/<pod> by <Kind> <name>` for every promoted pod of `namespaces` a member controller owns,
    on the member the run started on (`MemberChanged` if the cluster's name points elsewhere now)."""
    member = runtime.member_of(spec)
    pods = member.discovery.resolve("pods")

    def in_namespace(namespace: str) -> list[str]:
        promoted = member.list(pods, namespace, label_selector=f"{POD_MARKER}=true")
        return [f"{namespace}/{line}" for line in controlled_in_member(promoted)]

    return [line for lines in runtime.fan_out(in_namespace, namespaces) for line in lines]
