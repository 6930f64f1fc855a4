"""Whether the control plane names each promoted StatefulSet's revision as the member does.

A StatefulSet's pods carry the name of the revision they were made from (`controller-revision-hash`),
a hash of the template's bytes as the controller manager encodes them. Two Kubernetes versions can
encode the same template differently: 1.34 stopped writing a template's unset `creationTimestamp` as
null (kubernetes/kubernetes#134773), and defaulting changes the same way. Where the control plane's
name differs from the member's, its controller sees every adopted pod as outdated and rolls them one by
one, and Kosmos deletes each member twin: the restart promote exists to avoid.

So before detach changes anything, each promoted StatefulSet's template is given to the control plane's
own controller in a probe: a StatefulSet of no replicas in the installation's namespace, whose pods
could only be named after the probe, so it adopts nothing. The revision its controller names is compared
with the member's `status.updateRevision`, and the probe is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable

from shared.errors import NotInTime, PromoteError
from shared.items import GroupResource, Obj
from shared.kinds import RULES, Context
from shared.kube import AlreadyExists, ApiResource, Kube
from shared.runtime import Runtime

STATEFULSETS = GroupResource("statefulsets.apps")
PROBE_LABEL = "promote.kosmos.io/revision-probe"
_POLL = 0.05


class RevisionMismatch(PromoteError):
    """The control plane would name a StatefulSet's revision other than the member: a rolling restart."""


def revision_hash(owner_name: str, revision: str) -> str:
    """The hash part of a revision name `<owner>-<hash>`; empty when the name is not of that owner."""
    prefix = f"{owner_name}-"
    return revision[len(prefix) :] if revision.startswith(prefix) else ""


def probe_name(run_id: str, namespace: str, statefulset: str) -> str:
    """One probe per run, namespace and StatefulSet: a second worker running the same step finds it."""
    digest = hashlib.sha256(f"{run_id}/{namespace}/{statefulset}".encode()).hexdigest()[:12]
    return f"kpromote-probe-{digest}"


def probe_body(statefulset: Obj, name: str, namespace: str, context: Context) -> Obj:
    """The StatefulSet as the rebuild would create it (its template untouched), renamed into the
    installation's namespace, with no replicas."""
    body = RULES.for_(STATEFULSETS).rebuild(statefulset, context)
    body["metadata"] = {
        "name": name,
        "namespace": namespace,
        "labels": {PROBE_LABEL: "true"},
        "annotations": body["metadata"].get("annotations") or {},
    }
    body["spec"]["replicas"] = 0
    return body


def require_same_revisions(
    runtime: Runtime, member: Kube, statefulsets: Iterable[Obj], context: Context, run_id: str
) -> None:
    """Raise `RevisionMismatch` naming every promoted StatefulSet the control plane would roll."""
    checked = [s for s in statefulsets if (s.get("status") or {}).get("updateRevision")]
    if not checked:
        return
    control_plane = runtime.control_plane
    resource = control_plane.discovery.require(STATEFULSETS)
    timeout = runtime.settings.adoption_timeout

    def control_plane_hash(statefulset: Obj) -> str:
        name = probe_name(run_id, statefulset["metadata"]["namespace"], statefulset["metadata"]["name"])
        body = probe_body(statefulset, name, runtime.settings.namespace, context)
        return probe_revision(control_plane, resource, body, timeout)

    found = runtime.fan_out(control_plane_hash, checked)
    mismatched = [
        (s["metadata"]["name"], theirs, ours)
        for s, ours in zip(checked, found, strict=True)
        if ours != (theirs := revision_hash(s["metadata"]["name"], s["status"]["updateRevision"]))
    ]
    if mismatched:
        versions = (
            f"the member runs {member.version().get('gitVersion')}, "
            f"the control plane {control_plane.version().get('gitVersion')}"
        )
        named = "; ".join(
            f"StatefulSet {name}: revision hash {theirs} in the member, {ours} in the control plane"
            for name, theirs, ours in mismatched
        )
        raise RevisionMismatch(
            f"{named}: the control plane's controller would restart every pod to roll it to its own "
            f"revision. Either the clusters encode or default the pod template otherwise ({versions}): "
            f"promote once both run the same Kubernetes minor version; or the member's controller has not "
            f"caught up with a template change (a rollout in progress): promote once it has. Nothing "
            f"was changed"
        )


def probe_revision(control_plane: Kube, resource: ApiResource, body: Obj, timeout: float) -> str:
    """The hash of the revision the control plane's controller names for `body`'s template."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        deadline = time.monotonic() + timeout
        while True:
            probe = control_plane.get(resource, namespace, name)
            if probe is None:  # not made yet, or removed by the same step running at once: made (again)
                with contextlib.suppress(AlreadyExists):
                    control_plane.create(resource, body, namespace)
                continue
            revision = (probe.get("status") or {}).get("updateRevision")
            if revision:
                return revision_hash(name, revision)
            if time.monotonic() > deadline:
                raise NotInTime(
                    f"the control plane's StatefulSet controller named no revision for the probe "
                    f"{namespace}/{name} within {timeout:.0f}s"
                )
            time.sleep(_POLL)
    finally:
        control_plane.delete(resource, namespace, name, propagation="Background")
