"""The DaemonSet controller: one pod per eligible Node, pinned to it by node affinity.

What promote meets: a DaemonSet's pods belong to the member's nodes (each pod's `spec.affinity` names
its node through `matchFields` on `metadata.name`, which the scheduler honours), carry the
`controller-revision-hash` and `pod-template-generation` labels and the controller's default
tolerations, and the DaemonSet owns a ControllerRevision `<name>-<hash>`. A control-plane copy would run
pods for nodes it does not have, which is why promote leaves DaemonSets in the member.

The logic follows pkg/controller/daemon (`manage`, `podsShouldBeOnNode`, `NodeShouldRunDaemonPod`,
`snapshot`, `rollingUpdate`, `updateDaemonSetStatus`): a node is eligible when the template's
nodeSelector and required node affinity match it and its NoSchedule/NoExecute taints are tolerated; a
missing pod is created, surplus and failed ones deleted, pods on ineligible or vanished nodes deleted,
and RollingUpdate replaces outdated pods `maxUnavailable` at a time. Not emulated: maxSurge,
minReadySeconds, the failed-pod backoff, revision renumbering on rollback.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, cast

from kubesim.controllers.hashing import pod_template_hash
from kubesim.controllers.pod_control import PodOwnerController
from kubesim.controllers.statefulsets import REVISION_LABEL, revision_data
from kubesim.controllers.workloads import (
    Key,
    adopt,
    claim,
    key_of,
    omit_empty,
    pod_from_template,
    selector_of,
)
from kubesim.errors import ApiError
from kubesim.objects import (
    Obj,
    annotations_of,
    controller_ref,
    is_pod_ready,
    is_terminating,
    labels_of,
    meta,
    name_of,
    namespace_of,
    owner_reference,
    uid_of,
)
from kubesim.selectors import LabelSelector, SelectorError
from kubesim.store import Store, WatchEvent

GENERATION_LABEL = "pod-template-generation"
GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
"""apps/v1 keeps the internal `spec.templateGeneration` here; admission sets and bumps it."""

DEFAULT_TOLERATIONS = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
"""`AddOrUpdateDaemonPodTolerations`, in its order; hostNetwork pods also tolerate network-unavailable."""
NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", "NoSchedule")


def pod_tolerations(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The template's tolerations plus the controller's defaults not already there."""
    tolerations = [dict(t) for t in spec.get("tolerations") or []]
    defaults = list(DEFAULT_TOLERATIONS) + ([NETWORK_UNAVAILABLE] if spec.get("hostNetwork") else [])
    for key, effect in defaults:
        if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    return tolerations


def pin_to_node(affinity: Mapping[str, Any] | None, node: str) -> dict[str, Any]:
    """`ReplaceDaemonSetPodNodeNameNodeAffinity`: every required term gets `metadata.name In [node]` as
    its only matchFields; no terms means one term with just that."""
    pinned = json.loads(json.dumps(affinity or {}))
    requirement = {"key": "metadata.name", "operator": "In", "values": [node]}
    node_affinity = pinned.setdefault("nodeAffinity", {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    terms = [{**term, "matchFields": [requirement]} for term in terms] or [{"matchFields": [requirement]}]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    return pinned


def target_node(pod: Mapping[str, Any]) -> str | None:
    """Go's `GetTargetNodeName`: the bound node, else the one its affinity pins it to."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and field.get("values"):
                return str(field["values"][0])
    return None


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    try:
        selector = LabelSelector.from_api({"matchExpressions": term.get("matchExpressions") or []})
    except SelectorError:
        return False
    fields_ok = all(
        field.get("key") != "metadata.name"
        or (name_of(node) in (field.get("values") or [])) == (field.get("operator") == "In")
        for field in term.get("matchFields") or []
    )
    return fields_ok and selector.matches(labels_of(node))


def _tolerates(tolerations: list[dict[str, Any]], taint: Mapping[str, Any]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint.get("effect")):
            continue
        if toleration.get("operator") == "Exists":
            if toleration.get("key") in (None, "", taint.get("key")):
                return True
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get(
            "value", ""
        ):
            return True
    return False


def should_run(spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """`NodeShouldRunDaemonPod` for a pod spec (tolerations already added) and a Node."""
    if not (spec.get("nodeSelector") or {}).items() <= labels_of(node).items():
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required and not any(_term_matches(term, node) for term in required.get("nodeSelectorTerms") or []):
        return False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = list(spec.get("tolerations") or [])
    return all(
        _tolerates(tolerations, taint)
        for taint in taints
        if taint.get("effect") in ("NoSchedule", "NoExecute")
    )


class DaemonSetController(PodOwnerController):
    """Keeps one pod of the current template on every eligible node, and a revision per template."""

    name = "daemonset-controller"
    watches = ("daemonsets.apps", "pods", "nodes", "controllerrevisions.apps")
    live = ("daemonsets.apps",)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "apps", "daemonsets")
        self.daemonsets = self.owners
        self.revisions = self.type("apps", "controllerrevisions")
        self.nodes = self.type("", "nodes")

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        """A Node's event wakes every DaemonSet: each may now want a pod there, or one fewer."""
        if event.rt == self.nodes:
            return [key_of(ds) for ds in self.store.iter(self.daemonsets)]
        return super().keys_for(event)

    def reconcile(self, key: Hashable) -> float | None:
        namespace, _ = cast(Key, key)
        ds = self.owner(key)
        if ds is None or is_terminating(ds):
            return None
        selector = selector_of(ds)
        if selector.is_empty():
            return None
        revisions = self._claim_revisions(ds, selector)
        current = self._current_revision(ds, revisions)
        if current is None:
            return None
        pods = claim(
            self.store,
            self.pods,
            ds,
            self.store.list(self.pods, namespace),
            lambda pod: selector.matches(labels_of(pod)),
        )
        nodes = self.store.list(self.nodes)
        by_node: dict[str, list[Obj]] = {}
        for pod in pods:
            by_node.setdefault(target_node(pod) or "", []).append(pod)
        if self.expectations.satisfied(key):
            self._manage(ds, nodes, by_node, labels_of(current)[REVISION_LABEL])
        self._truncate_history(ds, revisions, current, pods)
        self._write_status(ds, nodes, by_node, labels_of(current)[REVISION_LABEL])
        return None

    # ------------------------------------------------------------------------------------ revisions
    def _claim_revisions(self, ds: Obj, selector: LabelSelector) -> list[Obj]:
        candidates = self.store.list(self.revisions, namespace_of(ds))
        for revision in candidates:
            if controller_ref(revision) is None and selector.matches(labels_of(revision)):
                adopt(self.store, self.revisions, ds, revision)
        return [
            revision
            for revision in self.store.iter(self.revisions, namespace_of(ds))
            if (controller_ref(revision) or {}).get("uid") == uid_of(ds)
        ]

    def _current_revision(self, ds: Obj, owned: list[Obj]) -> Obj | None:
        """`constructHistory`/`snapshot`: the revision named by the template hash, created when missing;
        a name taken by another DaemonSet's revision bumps `collisionCount` (the write wakes a retry)."""
        status = ds.get("status") or {}
        collision_count = status.get("collisionCount")
        template_hash = pod_template_hash(ds["spec"]["template"], collision_count)
        name = f"{name_of(ds)}-{template_hash}"
        existing = next((r for r in owned if name_of(r) == name), None)
        if existing is not None:
            return existing
        taken = self.store.live_store.get(self.revisions, namespace_of(ds), name)
        if taken is not None:
            if (controller_ref(taken) or {}).get("uid") == uid_of(ds):
                return taken
            self.store.write_status(
                self.daemonsets, ds, {**status, "collisionCount": (collision_count or 0) + 1}
            )
            return None
        template_labels = (ds["spec"]["template"].get("metadata") or {}).get("labels") or {}
        metadata: dict[str, Any] = {
            "name": name,
            "labels": {**template_labels, REVISION_LABEL: template_hash},
            "ownerReferences": [owner_reference(ds)],
        }
        if annotations_of(ds):
            metadata["annotations"] = dict(annotations_of(ds))
        data = revision_data(ds, self.git_version)
        number = max((int(r.get("revision") or 0) for r in owned), default=0) + 1
        body = {"metadata": metadata, "data": json.loads(data), "revision": number}
        return self.store.create(self.revisions, body, namespace=namespace_of(ds), raw_data=data)

    def _truncate_history(self, ds: Obj, owned: list[Obj], current: Obj, pods: list[Obj]) -> None:
        live = {name_of(current)} | {f"{name_of(ds)}-{labels_of(pod).get(REVISION_LABEL)}" for pod in pods}
        history = sorted(
            (r for r in owned if name_of(r) not in live), key=lambda r: int(r.get("revision") or 0)
        )
        limit = int(ds["spec"].get("revisionHistoryLimit", 10))
        for revision in history[: max(len(history) - limit, 0)]:
            self.store.delete(self.revisions, namespace_of(revision), name_of(revision))

    # ----------------------------------------------------------------------------------------- pods
    def _template_spec(self, ds: Obj) -> dict[str, Any]:
        spec = dict(ds["spec"]["template"].get("spec") or {})
        spec["tolerations"] = pod_tolerations(spec)
        return spec

    def _manage(self, ds: Obj, nodes: list[Obj], by_node: dict[str, list[Obj]], current_hash: str) -> None:
        """`manage` then `rollingUpdate`: which nodes need a pod, which pods must go."""
        spec = self._template_spec(ds)
        node_names = {name_of(node) for node in nodes}
        create: list[str] = []
        delete: list[Obj] = []
        for node in nodes:
            pods = [pod for pod in by_node.get(name_of(node), []) if not is_terminating(pod)]
            failed = [pod for pod in pods if (pod.get("status") or {}).get("phase") == "Failed"]
            running = [pod for pod in pods if pod not in failed]
            if not should_run(spec, node):
                delete += pods
                continue
            delete += failed
            if not running and not failed:
                create.append(name_of(node))
            oldest_first = sorted(running, key=lambda pod: meta(pod).get("creationTimestamp", ""))
            delete += oldest_first[1:]
        for node_name, pods in by_node.items():
            if node_name not in node_names:
                delete += [pod for pod in pods if not is_terminating(pod)]
        if not create and not delete:
            delete = self._outdated_to_replace(ds, nodes, by_node, current_hash, spec)
        self.expectations.expect(
            key_of(ds), adds=len(create), deletes=[f"{namespace_of(p)}/{name_of(p)}" for p in delete]
        )
        for done, node_name in enumerate(create):
            try:
                self._create_pod(ds, node_name, current_hash)
            except ApiError:
                self.expectations.creation_observed(key_of(ds), len(create) - done)
                raise
        for pod in delete:
            self.pod_control.delete(ds, pod)

    def _outdated_to_replace(
        self,
        ds: Obj,
        nodes: list[Obj],
        by_node: dict[str, list[Obj]],
        current_hash: str,
        spec: dict[str, Any],
    ) -> list[Obj]:
        """RollingUpdate: outdated pods, not-ready ones first, while no more than maxUnavailable are
        unavailable (a deleted pod counts as unavailable until its replacement is Ready)."""
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return []
        eligible = [node for node in nodes if should_run(spec, node)]
        budget = _max_unavailable(strategy, len(eligible))
        unavailable = 0
        outdated: list[Obj] = []
        for node in eligible:
            pods = [pod for pod in by_node.get(name_of(node), []) if not is_terminating(pod)]
            if not pods or not is_pod_ready(pods[0]):
                unavailable += 1
            if pods and labels_of(pods[0]).get(REVISION_LABEL) != current_hash:
                outdated.append(pods[0])
        not_ready = [pod for pod in outdated if not is_pod_ready(pod)]
        ready = [pod for pod in outdated if is_pod_ready(pod)]
        return not_ready + ready[: max(budget - unavailable, 0)]

    def _create_pod(self, ds: Obj, node_name: str, current_hash: str) -> None:
        body = pod_from_template(ds, ds["spec"]["template"])
        body["metadata"]["generateName"] = f"{name_of(ds)}-"
        body["metadata"]["labels"] = {
            **body["metadata"].get("labels", {}),
            REVISION_LABEL: current_hash,
            GENERATION_LABEL: annotations_of(ds).get(GENERATION_ANNOTATION, "1"),
        }
        spec = body["spec"]
        spec["tolerations"] = pod_tolerations(spec)
        spec["affinity"] = pin_to_node(spec.get("affinity"), node_name)
        self.pod_control.create(ds, body)

    # --------------------------------------------------------------------------------------- status
    def _write_status(
        self, ds: Obj, nodes: list[Obj], by_node: dict[str, list[Obj]], current_hash: str
    ) -> None:
        spec = self._template_spec(ds)
        desired = scheduled = misscheduled = ready = updated = 0
        for node in nodes:
            pods = [pod for pod in by_node.get(name_of(node), []) if not is_terminating(pod)]
            if not should_run(spec, node):
                misscheduled += bool(pods)
                continue
            desired += 1
            if pods:
                scheduled += 1
                ready += is_pod_ready(pods[0])
                updated += labels_of(pods[0]).get(REVISION_LABEL) == current_hash
        previous = ds.get("status") or {}
        status = {
            "currentNumberScheduled": scheduled,
            "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": desired,
            "numberReady": ready,
            "observedGeneration": meta(ds).get("generation", 0),
            "updatedNumberScheduled": updated,
            "numberAvailable": ready,
            "numberUnavailable": desired - ready,
            "collisionCount": previous.get("collisionCount"),
        }
        status = omit_empty(
            status, "observedGeneration", "updatedNumberScheduled", "numberAvailable", "numberUnavailable"
        )
        self.store.write_status(self.daemonsets, ds, {k: v for k, v in status.items() if v is not None})


def _max_unavailable(strategy: Mapping[str, Any], eligible: int) -> int:
    """An int or a percentage of the eligible nodes, rounded up; at least 1."""
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    if isinstance(value, str) and value.endswith("%"):
        return max(-(-eligible * int(value[:-1]) // 100), 1)
    return max(int(value), 1)
