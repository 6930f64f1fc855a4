"""The per-kind rules, hook by hook, as tables of named cases (control-plane traps called out by name)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from shared.items import GroupResource, ItemRef, Obj
from shared.kinds import (
    CREATED_BY_CONTROL_PLANE,
    MANAGED_BY_CLUSTER,
    RULES,
    Context,
    Decision,
    DetachKind,
    DetachStep,
    KindRule,
    Move,
    RuleRegistry,
    StaticCatalog,
    decide_all,
    reclaim_restore_patch,
    retain_patch,
)
from shared.kinds.custom import DefaultRule
from shared.kinds.pods import tolerates_virtual_node
from shared.markers import (
    AUTO_CREATE_MCS,
    CLUSTER_OWNERS,
    KOSMOS_TOLERATION,
    POD_MARKER,
    PROMOTED_BY,
    PROMOTED_IN_RUN,
    SYNCED_LABEL,
    virtual_node,
)
from shared.sanitize import strip_for_rebuild
from tests.shared import kinds_builders as b

CTX = Context(cluster="member1", policy="p1", run="run-1")
OURS = {PROMOTED_BY: "p1", PROMOTED_IN_RUN: "run-1"}
"""The annotations every rebuilt object carries: who made it, and in which run."""
VNODE = "kosmos-member1"
CRB = GroupResource("clusterrolebindings.rbac.authorization.k8s.io")
CLUSTER_ROLES = GroupResource("clusterroles.rbac.authorization.k8s.io")


def case(*values: Any, id: str) -> Any:
    return pytest.param(*values, id=id)


# --- decide ---------------------------------------------------------------------------------------

STS_COLLISION_REASON = (
    "collisionCount 2 would give a new revision name in the control plane (a rollout); not promoted"
)

DECISIONS = [
    case("pods", b.pod(), Move.PROMOTE, "", id="running pod of a ReplicaSet"),
    case("pods", b.pod(owners=[]), Move.PROMOTE, "", id="bare pod"),
    case("pods", b.pod(phase="Succeeded"), Move.SKIP, "finished pod, not moved", id="succeeded pod skipped"),
    case("pods", b.pod(phase="Failed"), Move.SKIP, "finished pod, not moved", id="failed pod skipped"),
    case(
        "pods",
        b.pod(owners=[b.owner("DaemonSet", "agent")]),
        Move.STAY,
        "DaemonSet",
        id="DaemonSet pod stays",
    ),
    case("pods", b.pod(owners=[b.owner("Job", "migrate")]), Move.STAY, "Job", id="Job pod stays"),
    case(
        "pods",
        b.pod(owners=[b.owner("Widget", "w1")]),
        Move.STAY,
        "controlled by Widget w1, a kind that is not promoted",
        id="pod an operator's resource controls stays",
    ),
    case(
        "pods",
        b.pod(owners=[b.owner("Widget", "w1", controller=False)]),
        Move.PROMOTE,
        "",
        id="pod merely owned (no controller) by a custom resource",
    ),
    case(
        "pods",
        b.pod(annotations={"kubernetes.io/config.mirror": "abc"}, owners=[b.owner("Node", "n1")]),
        Move.STAY,
        "static pod",
        id="static pod stays",
    ),
    case("deployments.apps", b.deployment(), Move.PROMOTE, "", id="deployment"),
    case("replicasets.apps", b.replicaset(), Move.PROMOTE, "", id="replicaset of a deployment"),
    case(
        "replicasets.apps",
        b.replicaset(owners=[b.owner("Widget", "w1")]),
        Move.STAY,
        "controlled by Widget w1",
        id="replicaset of an operator stays",
    ),
    case("statefulsets.apps", b.statefulset(), Move.PROMOTE, "", id="statefulset"),
    case(
        "statefulsets.apps",
        b.statefulset(collision_count=2),
        Move.STAY,
        STS_COLLISION_REASON,
        id="statefulset with collisionCount stays",
    ),
    case(
        "statefulsets.apps",
        b.statefulset(owners=[b.owner("Widget", "w1")]),
        Move.STAY,
        "controlled by Widget w1",
        id="statefulset of an operator stays",
    ),
    case(
        "controllerrevisions.apps",
        b.controller_revision(),
        Move.SKIP,
        "re-creates the current revision under the same name",
        id="statefulset revision skipped",
    ),
    case(
        "controllerrevisions.apps",
        b.controller_revision(owner_kind="DaemonSet"),
        Move.STAY,
        "DaemonSet",
        id="daemonset revision stays",
    ),
    case("daemonsets.apps", b.daemonset(), Move.STAY, "duplicate pods", id="daemonset stays"),
    case("jobs.batch", b.job(), Move.STAY, "a running Job stays in the member", id="running job stays"),
    case(
        "jobs.batch",
        b.job(owners=[b.owner("CronJob", "nightly")]),
        Move.STAY,
        "a running Job stays in the member",
        id="running job of a cronjob stays",
    ),
    case(
        "jobs.batch",
        b.job(status={"completionTime": "2024-03-11T10:00:00Z", "succeeded": 1}),
        Move.SKIP,
        "finished Job, not moved",
        id="completed job skipped",
    ),
    case(
        "jobs.batch",
        b.job(status={"conditions": [{"type": "Failed", "status": "True"}]}),
        Move.SKIP,
        "finished Job, not moved",
        id="failed job skipped",
    ),
    case(
        "jobs.batch",
        b.job(status={"conditions": [{"type": "Complete", "status": "False"}]}),
        Move.STAY,
        "running",
        id="job with a false Complete condition stays",
    ),
    case("cronjobs.batch", b.cronjob(), Move.PROMOTE, "", id="cronjob"),
    case("services", b.service(), Move.PROMOTE, "", id="service"),
    case("endpoints", b.served("v1", "Endpoints", "web"), Move.SKIP, MANAGED_BY_CLUSTER, id="endpoints"),
    case(
        "endpointslices.discovery.k8s.io",
        b.served("discovery.k8s.io/v1", "EndpointSlice", "web-x"),
        Move.SKIP,
        MANAGED_BY_CLUSTER,
        id="endpointslice",
    ),
    case("events", b.served("v1", "Event", "e1"), Move.SKIP, MANAGED_BY_CLUSTER, id="core event"),
    case(
        "events.events.k8s.io",
        b.served("events.k8s.io/v1", "Event", "e1"),
        Move.SKIP,
        MANAGED_BY_CLUSTER,
        id="events.k8s.io event",
    ),
    case(
        "serviceaccounts",
        b.service_account("default"),
        Move.SKIP,
        CREATED_BY_CONTROL_PLANE,
        id="default SA skipped",
    ),
    case("serviceaccounts", b.service_account(), Move.PROMOTE, "", id="own SA"),
    case(
        "configmaps",
        b.configmap("kube-root-ca.crt"),
        Move.SKIP,
        CREATED_BY_CONTROL_PLANE,
        id="kube-root-ca.crt skipped",
    ),
    case("configmaps", b.configmap(), Move.PROMOTE, "", id="configmap"),
    case(
        "secrets",
        b.secret("app-sa-token-lj825", type_="kubernetes.io/service-account-token"),
        Move.SKIP,
        "issued by the cluster's token controller",
        id="token secret skipped",
    ),
    case("secrets", b.secret(), Move.PROMOTE, "", id="opaque secret"),
    case("persistentvolumeclaims", b.pvc(), Move.PROMOTE, "", id="pvc"),
    case("persistentvolumes", b.pv(), Move.PROMOTE, "", id="pv"),
    case(
        CLUSTER_ROLES,
        b.cluster_role("view", labels={"kubernetes.io/bootstrapping": "rbac-defaults"}),
        Move.SKIP,
        CREATED_BY_CONTROL_PLANE,
        id="bootstrap clusterrole skipped",
    ),
    case(CLUSTER_ROLES, b.cluster_role(), Move.PROMOTE, "", id="own clusterrole"),
    case(
        "priorityclasses.scheduling.k8s.io",
        b.served("scheduling.k8s.io/v1", "PriorityClass", "system-node-critical", None, value=2000001000),
        Move.SKIP,
        CREATED_BY_CONTROL_PLANE,
        id="system priorityclass skipped",
    ),
    case("widgets.example.com", b.widget(), Move.PROMOTE, "", id="custom resource"),
]


@pytest.mark.parametrize(("group_resource", "obj", "move", "reason"), DECISIONS)
def test_decide(group_resource: str, obj: Obj, move: Move, reason: str) -> None:
    decision = RULES.for_(group_resource).decide(obj)
    assert decision.move is move
    assert reason in decision.reason
    assert (decision.reason == "") is (move is Move.PROMOTE)


def test_decide_all_keeps_dependents_with_a_controller_that_stays() -> None:
    sts = b.statefulset(collision_count=1)
    sts_pod = b.pod("db-0", owners=[b.owner("StatefulSet", "db", sts["metadata"]["uid"])])
    widget = b.widget()
    operated = b.deployment("operated")
    operated["metadata"]["ownerReferences"] = [b.owner("Widget", "w1", widget["metadata"]["uid"])]
    operated_rs = b.replicaset(
        "operated-1", owners=[b.owner("Deployment", "operated", operated["metadata"]["uid"])]
    )
    operated_pod = b.pod(
        "operated-1-x", owners=[b.owner("ReplicaSet", "operated-1", operated_rs["metadata"]["uid"])]
    )
    web = b.deployment()
    web_rs = b.replicaset(owners=[b.owner("Deployment", "web", web["metadata"]["uid"])])
    web_pod = b.pod(owners=[b.owner("ReplicaSet", "web-5c5fb89585", web_rs["metadata"]["uid"])])
    items = [
        ("statefulsets.apps", sts),
        ("pods", sts_pod),
        ("widgets.example.com", widget),
        ("deployments.apps", operated),
        ("replicasets.apps", operated_rs),
        ("pods", operated_pod),
        ("deployments.apps", web),
        ("replicasets.apps", web_rs),
        ("pods", web_pod),
    ]

    decisions = decide_all(items)

    def move(obj: Obj) -> Move:
        return decisions[obj["metadata"]["uid"]].move

    assert [move(o) for o in (sts, sts_pod, operated, operated_rs, operated_pod)] == [Move.STAY] * 5
    assert decisions[sts_pod["metadata"]["uid"]].reason == "its StatefulSet db stays in the member"
    assert (
        decisions[operated_pod["metadata"]["uid"]].reason == "its ReplicaSet operated-1 stays in the member"
    )
    assert [move(o) for o in (widget, web, web_rs, web_pod)] == [Move.PROMOTE] * 4


# --- related --------------------------------------------------------------------------------------


def sa_catalog() -> StaticCatalog:
    return StaticCatalog(
        bindings=(
            b.cluster_role_binding("crb-app", "reader", ("ServiceAccount", "app", "app-sa")),
            b.cluster_role_binding("crb-other-sa", "cluster-admin", ("ServiceAccount", "app", "other-sa")),
            b.cluster_role_binding("crb-other-ns", "edit", ("ServiceAccount", "other", "app-sa")),
            b.cluster_role_binding("crb-user", "view", ("User", "app", "app-sa")),
            b.cluster_role_binding(
                "crb-both",
                "reader",
                ("ServiceAccount", "app", "other-sa"),
                ("ServiceAccount", "app", "app-sa"),
            ),
        ),
        crds={("example.com/v1", "Widget"): "widgets.example.com"},
    )


def ref(group_resource: str, name: str, namespace: str = "") -> ItemRef:
    return ItemRef(GroupResource(group_resource), namespace, name)


RELATED = [
    case("pods", b.pod(), [], id="pod without priority class"),
    case(
        "pods",
        b.pod(priorityClassName="high"),
        [ref("priorityclasses.scheduling.k8s.io", "high")],
        id="pod brings its priority class",
    ),
    case(
        "persistentvolumeclaims",
        b.pvc(),
        [ref("persistentvolumes", "pv-0"), ref("storageclasses.storage.k8s.io", "local")],
        id="bound pvc brings its pv and class",
    ),
    case(
        "persistentvolumeclaims",
        b.pvc(phase="Pending"),
        [ref("storageclasses.storage.k8s.io", "local")],
        id="pending pvc brings no pv",
    ),
    case(
        "serviceaccounts",
        b.service_account(),
        [ref(CLUSTER_ROLES, "reader"), ref(CRB, "crb-app"), ref(CRB, "crb-both")],
        id="SA brings exactly the bindings naming it",
    ),
    case("serviceaccounts", b.service_account("lonely"), [], id="SA without bindings"),
    case(
        "widgets.example.com",
        b.widget(),
        [ref("customresourcedefinitions.apiextensions.k8s.io", "widgets.example.com")],
        id="custom resource brings its CRD",
    ),
    case("ingresses.networking.k8s.io", b.served("networking.k8s.io/v1", "Ingress", "web"), [], id="ingress"),
    case("deployments.apps", b.deployment(), [], id="deployment"),
]


@pytest.mark.parametrize(("group_resource", "obj", "expected"), RELATED)
def test_related(group_resource: str, obj: Obj, expected: list[ItemRef]) -> None:
    assert RULES.for_(group_resource).related(obj, sa_catalog()) == expected


@pytest.mark.parametrize(
    ("group_resource", "obj"), [("serviceaccounts", b.service_account()), ("widgets.example.com", b.widget())]
)
def test_related_that_needs_a_catalog_refuses_to_guess(group_resource: str, obj: Obj) -> None:
    with pytest.raises(ValueError, match="catalog"):
        RULES.for_(group_resource).related(obj)


# --- detach ---------------------------------------------------------------------------------------


def marked(**annotations: str) -> Obj:
    return {"metadata": {"annotations": annotations, "ownerReferences": None}}


def already(obj: Obj, **changes: Any) -> Obj:
    """`obj` as detach leaves it: markers set, ownerReferences gone."""
    obj = copy.deepcopy(obj)
    for field, values in changes.items():
        obj["metadata"].setdefault(field, {}).update(values)
    obj["metadata"].pop("ownerReferences", None)
    return obj


DETACHES = [
    case("deployments.apps", b.deployment(), DetachKind.ORPHAN_DELETE, None, id="deployment orphan-deleted"),
    case("replicasets.apps", b.replicaset(), DetachKind.ORPHAN_DELETE, None, id="replicaset orphan-deleted"),
    case(
        "statefulsets.apps", b.statefulset(), DetachKind.ORPHAN_DELETE, None, id="statefulset orphan-deleted"
    ),
    case("cronjobs.batch", b.cronjob(), DetachKind.ORPHAN_DELETE, None, id="cronjob orphan-deleted"),
    case(
        "pods",
        b.pod(),
        DetachKind.MARK,
        {"metadata": {"labels": {POD_MARKER: "true"}}},
        id="pod labelled, owners left to the GC",
    ),
    case(
        "pods",
        already(b.pod(), labels={POD_MARKER: "true"}),
        DetachKind.NONE,
        None,
        id="pod already labelled",
    ),
    case(
        "services",
        b.service(owners=[b.owner("Widget", "w1")]),
        DetachKind.MARK,
        marked(**{AUTO_CREATE_MCS: "true"}),
        id="owned service marked and released",
    ),
    case(
        "services",
        b.service(),
        DetachKind.MARK,
        {"metadata": {"annotations": {AUTO_CREATE_MCS: "true"}}},
        id="service without owners only marked",
    ),
    case("persistentvolumeclaims", b.pvc(), DetachKind.MARK, marked(**{CLUSTER_OWNERS: "member1"}), id="pvc"),
    case(
        "configmaps",
        b.configmap(),
        DetachKind.MARK,
        {"metadata": {"annotations": {CLUSTER_OWNERS: "member1"}}},
        id="configmap",
    ),
    case(
        "configmaps",
        already(b.configmap(), annotations={CLUSTER_OWNERS: "member1"}),
        DetachKind.NONE,
        None,
        id="configmap already marked",
    ),
    case(
        "secrets",
        b.secret(),
        DetachKind.MARK,
        {"metadata": {"annotations": {CLUSTER_OWNERS: "member1"}}},
        id="secret",
    ),
    case(
        "serviceaccounts",
        b.service_account(),
        DetachKind.MARK,
        {"metadata": {"annotations": {CLUSTER_OWNERS: "member1"}}},
        id="service account",
    ),
    case(
        "roles.rbac.authorization.k8s.io",
        b.role(),
        DetachKind.MARK,
        {"metadata": {"annotations": {CLUSTER_OWNERS: "member1"}}},
        id="role",
    ),
    case(
        "rolebindings.rbac.authorization.k8s.io",
        b.role("RoleBinding"),
        DetachKind.MARK,
        {"metadata": {"annotations": {CLUSTER_OWNERS: "member1"}}},
        id="rolebinding",
    ),
    case("persistentvolumes", b.pv(), DetachKind.NONE, None, id="pv (Retain switch is its own step)"),
    case(CLUSTER_ROLES, b.cluster_role(), DetachKind.NONE, None, id="clusterrole"),
    case("widgets.example.com", b.widget(), DetachKind.NONE, None, id="custom resource"),
]


@pytest.mark.parametrize(("group_resource", "obj", "kind", "patch"), DETACHES)
def test_detach(group_resource: str, obj: Obj, kind: DetachKind, patch: Obj | None) -> None:
    step = RULES.for_(group_resource).detach(obj, CTX)
    assert (step.kind, step.patch) == (kind, patch)
    assert step.reason


@pytest.mark.parametrize(
    ("kind", "patch"), [(DetachKind.MARK, None), (DetachKind.MARK, {}), (DetachKind.NONE, {"metadata": {}})]
)
def test_detach_step_patch_goes_with_mark_only(kind: DetachKind, patch: Obj | None) -> None:
    with pytest.raises(ValueError, match="patch"):
        DetachStep(kind, patch)


# --- rebuild --------------------------------------------------------------------------------------

PROMOTABLE = [
    case("pods", b.pod(), id="pod"),
    case("deployments.apps", b.deployment(), id="deployment"),
    case("replicasets.apps", b.replicaset(), id="replicaset"),
    case("statefulsets.apps", b.statefulset(), id="statefulset"),
    case("cronjobs.batch", b.cronjob(), id="cronjob"),
    case("services", b.service(), id="service"),
    case("persistentvolumeclaims", b.pvc(), id="pvc"),
    case("persistentvolumes", b.pv(), id="pv"),
    case("serviceaccounts", b.service_account(), id="service account"),
    case("configmaps", b.configmap(owners=[b.owner("Widget", "w1")]), id="configmap"),
    case("secrets", b.secret(), id="secret"),
    case("roles.rbac.authorization.k8s.io", b.role(), id="role"),
    case(CLUSTER_ROLES, b.cluster_role(), id="clusterrole"),
    case(CRB, b.cluster_role_binding("crb-app", "reader", ("ServiceAccount", "app", "app-sa")), id="crb"),
    case("widgets.example.com", b.widget(), id="custom resource"),
]

MEMBER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "managedFields",
    "ownerReferences",
    "finalizers",
    "generateName",
)


def annotation_paths(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of every `annotations` map holding PROMOTED_BY, anywhere in a body."""
    if isinstance(value, dict):
        if PROMOTED_BY in (value.get("annotations") or {}):
            yield path
        for key, item in value.items():
            yield from annotation_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from annotation_paths(item, (*path, str(index)))


@pytest.mark.parametrize(("group_resource", "obj"), PROMOTABLE)
def test_rebuild_is_a_stripped_copy_marked_as_ours_at_the_top_only(group_resource: str, obj: Obj) -> None:
    before = copy.deepcopy(obj)
    body = RULES.for_(group_resource).rebuild(obj, CTX)
    assert obj == before, "the input must not be mutated"
    assert list(annotation_paths(body)) == [("metadata",)]
    assert body["metadata"]["annotations"][PROMOTED_BY] == "p1"
    assert not set(MEMBER_METADATA) & body["metadata"].keys()
    assert "status" not in body
    assert (body["apiVersion"], body["kind"], body["metadata"]["name"]) == (
        obj["apiVersion"],
        obj["kind"],
        obj["metadata"]["name"],
    )
    assert body["metadata"].get("namespace") == obj["metadata"].get("namespace")


def test_pod_rebuild_binds_to_the_virtual_node_and_changes_nothing_else_in_spec() -> None:
    pod = b.pod()
    body = RULES.for_("pods").rebuild(pod, CTX)
    rest = {k: v for k, v in body["spec"].items() if k not in ("nodeName", "tolerations")}
    original = {k: v for k, v in pod["spec"].items() if k not in ("nodeName", "tolerations")}
    assert json.dumps(rest) == json.dumps(original)
    assert body["spec"]["nodeName"] == VNODE
    assert body["spec"]["tolerations"] == [*b.DEFAULT_TOLERATIONS, dict(KOSMOS_TOLERATION)]
    assert body["metadata"]["labels"] == {
        **pod["metadata"]["labels"],
        POD_MARKER: "true",
        SYNCED_LABEL: "true",
    }
    assert "ownerReferences" not in body["metadata"]


def test_pod_rebuild_adds_the_toleration_when_the_list_is_absent() -> None:
    body = RULES.for_("pods").rebuild(b.pod(tolerations=None), CTX)
    assert body["spec"]["tolerations"] == [dict(KOSMOS_TOLERATION)]


def test_pod_rebuild_does_not_repeat_a_toleration_already_there() -> None:
    tolerations = [{"key": "kosmos.io/node", "operator": "Exists", "effect": "NoSchedule"}]
    body = RULES.for_("pods").rebuild(b.pod(tolerations=tolerations), CTX)
    assert body["spec"]["tolerations"] == tolerations


@pytest.mark.parametrize(
    ("toleration", "tolerates"),
    [
        case(dict(KOSMOS_TOLERATION), True, id="ours"),
        case({"key": "kosmos.io/node", "operator": "Exists"}, True, id="key exists, any effect"),
        case({"operator": "Exists"}, True, id="tolerate everything"),
        case({"key": "kosmos.io/node", "value": "true"}, True, id="default operator Equal"),
        case({"key": "kosmos.io/node", "operator": "Equal", "value": "false"}, False, id="other value"),
        case(
            {"key": "kosmos.io/node", "operator": "Exists", "effect": "NoExecute"}, False, id="other effect"
        ),
        case({"key": "node.kubernetes.io/not-ready", "operator": "Exists"}, False, id="other key"),
    ],
)
def test_tolerates_virtual_node(toleration: Obj, tolerates: bool) -> None:
    assert tolerates_virtual_node(toleration) is tolerates


@pytest.mark.parametrize(
    ("group_resource", "obj", "template_path"),
    [
        case("deployments.apps", b.deployment(), ("spec", "template"), id="deployment"),
        case("replicasets.apps", b.replicaset(), ("spec", "template"), id="replicaset"),
        case("statefulsets.apps", b.statefulset(), ("spec", "template"), id="statefulset"),
        case("cronjobs.batch", b.cronjob(), ("spec", "jobTemplate"), id="cronjob"),
    ],
)
def test_workload_rebuild_keeps_the_template_byte_identical(
    group_resource: str, obj: Obj, template_path: tuple[str, ...]
) -> None:
    body = RULES.for_(group_resource).rebuild(obj, CTX)
    built, original = body, obj
    for key in template_path:
        built, original = built[key], original[key]
    assert json.dumps(built) == json.dumps(original)
    assert json.dumps(body["spec"]) == json.dumps(obj["spec"])


def test_replicaset_rebuild_keeps_the_deployment_revision() -> None:
    body = RULES.for_("replicasets.apps").rebuild(b.replicaset(), CTX)
    assert body["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


def port(name: str | None = None, node_port: int = 30080, number: int = 80) -> Obj:
    value: Obj = {"port": number, "protocol": "TCP", "targetPort": 8080, "nodePort": node_port}
    return {"name": name, **value} if name else value


SERVICES = [
    case(
        b.service(), {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}, id="cluster IP dropped"
    ),
    case(
        b.service(cluster_ip="None"),
        {"clusterIP": "None", "clusterIPs": ["None"]},
        id="headless stays headless",
    ),
    case(
        b.service(type_="NodePort", ports=[port("http")]),
        {"ports": [{**port("http"), "nodePort": None}]},
        id="allocated node port dropped",
    ),
    case(
        b.service(
            type_="NodePort",
            ports=[port("http")],
            applied_spec={"ports": [{"name": "http", "nodePort": 30080}]},
        ),
        {"ports": [port("http")]},
        id="applied named node port kept",
    ),
    case(
        b.service(
            type_="NodePort", ports=[port()], applied_spec={"ports": [{"port": 80, "nodePort": 30080}]}
        ),
        {"ports": [port()]},
        id="applied unnamed node port kept",
    ),
    case(
        b.service(
            type_="NodePort", ports=[port()], applied_spec={"ports": [{"port": 80, "nodePort": 31000}]}
        ),
        {"ports": [{**port(), "nodePort": None}]},
        id="applied unnamed node port with another value dropped",
    ),
    case(
        b.service(
            type_="NodePort", ports=[port("http")], applied_spec={"ports": [{"name": "http", "port": 80}]}
        ),
        {"ports": [{**port("http"), "nodePort": None}]},
        id="applied port without node port dropped",
    ),
    case(
        b.service(
            type_="LoadBalancer",
            ports=[port("http"), port("admin", 30443, 443)],
            managed_spec={"f:ports": {'k:{"port":443,"protocol":"TCP"}': {".": {}, "f:nodePort": {}}}},
        ),
        {"ports": [{**port("http"), "nodePort": None}, port("admin", 30443, 443)]},
        id="node port owned in managedFields kept",
    ),
    case(
        b.service(
            type_="LoadBalancer",
            externalTrafficPolicy="Local",
            healthCheckNodePort=32000,
            applied_spec={"healthCheckNodePort": 32000},
        ),
        {"healthCheckNodePort": 32000},
        id="applied health check node port kept",
    ),
    case(
        b.service(type_="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=32000),
        {"healthCheckNodePort": None},
        id="allocated health check node port dropped",
    ),
    case(
        b.service(
            type_="ClusterIP", ports=[port("http")], applied_spec={"ports": [{"name": "http", "nodePort": 1}]}
        ),
        {"ports": [{**port("http"), "nodePort": None}]},
        id="node port on a ClusterIP service dropped",
    ),
]


@pytest.mark.parametrize(("service", "expected"), SERVICES)
def test_service_rebuild_leaves_allocations_to_the_control_plane(service: Obj, expected: Obj) -> None:
    """`expected`: spec fields that must read so (None = absent; ports compared with None = absent)."""
    body = RULES.for_("services").rebuild(service, CTX)
    spec = body["spec"]
    if expected.get("clusterIP") != "None":
        assert "clusterIP" not in spec and "clusterIPs" not in spec
    for key, value in expected.items():
        if key == "ports":
            assert spec["ports"] == [{k: v for k, v in p.items() if v is not None} for p in value]
        else:
            assert spec.get(key) == value
    assert body["metadata"]["annotations"][AUTO_CREATE_MCS] == "true"


def test_pvc_rebuild_drops_the_binding_annotations_and_keeps_the_volume() -> None:
    body = RULES.for_("persistentvolumeclaims").rebuild(b.pvc(), CTX)
    assert body["metadata"]["annotations"] == {"team": "db", CLUSTER_OWNERS: "member1", **OURS}
    assert body["spec"]["volumeName"] == "pv-0"


def test_pv_rebuild_drops_the_member_claim_uid_and_gets_no_cluster_owners() -> None:
    pv = b.pv()
    body = RULES.for_("persistentvolumes").rebuild(pv, CTX)
    assert body["spec"]["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "app",
        "name": "data-db-0",
    }
    assert body["metadata"]["annotations"] == {"pv.kubernetes.io/provisioned-by": "local", **OURS}
    assert body["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["claimRef"]["uid"] == "uid-member-claim"


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        case(
            [{"name": "app-sa-token-lj825"}, {"name": "registry-pull"}],
            [{"name": "registry-pull"}],
            id="mixed",
        ),
        case([{"name": "app-sa-token-lj825"}], None, id="only the token"),
        case(None, None, id="none"),
    ],
)
def test_service_account_rebuild_drops_its_token_secrets(
    secrets: list[Obj] | None, expected: list[Obj] | None
) -> None:
    account = b.service_account()
    account.pop("secrets")
    if secrets is not None:
        account["secrets"] = secrets
    body = RULES.for_("serviceaccounts").rebuild(account, CTX)
    assert body.get("secrets") == expected
    assert body["imagePullSecrets"] == [{"name": "registry-pull"}]


@pytest.mark.parametrize(
    ("group_resource", "obj", "annotated"),
    [
        case("configmaps", b.configmap(), True, id="configmap"),
        case("secrets", b.secret(), True, id="secret"),
        case("persistentvolumeclaims", b.pvc(), True, id="pvc"),
        case("serviceaccounts", b.service_account(), False, id="service account"),
        case("roles.rbac.authorization.k8s.io", b.role(), False, id="role"),
        case("rolebindings.rbac.authorization.k8s.io", b.role("RoleBinding"), False, id="rolebinding"),
        case("persistentvolumes", b.pv(), False, id="pv"),
    ],
)
def test_cluster_owners_in_the_control_plane_only_where_kosmos_acts_on_it(
    group_resource: str, obj: Obj, annotated: bool
) -> None:
    body = RULES.for_(group_resource).rebuild(obj, CTX)
    assert (body["metadata"]["annotations"].get(CLUSTER_OWNERS) == "member1") is annotated


def test_custom_resource_rebuild_is_the_generic_strip() -> None:
    widget = b.widget()
    body = RULES.for_("widgets.example.com").rebuild(widget, CTX)
    assert body == {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "app", "annotations": dict(OURS)},
        "spec": {"size": 3},
    }


# --- revert_detach --------------------------------------------------------------------------------


def test_pod_revert_detach_restores_labels_and_annotations_exactly() -> None:
    backed_up = b.pod(annotations={"note": "kept"})
    live = copy.deepcopy(backed_up)
    live["metadata"]["labels"].update({POD_MARKER: "true", SYNCED_LABEL: "true", "app": "changed"})
    live["metadata"]["annotations"][PROMOTED_BY] = "p1"
    live["metadata"]["ownerReferences"] = []
    patch = RULES.for_("pods").revert_detach(backed_up, live, CTX, {"uid-replicaset-web-5c5fb89585": "new"})
    assert patch == {
        "metadata": {
            "labels": {"app": "web", POD_MARKER: None, SYNCED_LABEL: None},
            "annotations": {PROMOTED_BY: None},
        }
    }


def test_pod_revert_detach_is_none_when_nothing_changed() -> None:
    assert RULES.for_("pods").revert_detach(b.pod(), b.pod(), CTX) is None


def detached(obj: Obj, **annotations: str) -> Obj:
    return already(obj, annotations=annotations)


REVERT_DETACHES = [
    case(
        "configmaps",
        b.configmap(owners=[b.owner("Widget", "w1", "old")]),
        {"old": "new"},
        {
            "metadata": {
                "annotations": {CLUSTER_OWNERS: None},
                "ownerReferences": [b.owner("Widget", "w1", "new")],
            }
        },
        id="owner re-created: reference restored with its new uid",
    ),
    case(
        "configmaps",
        b.configmap(owners=[b.owner("Widget", "w1", "old")]),
        {},
        {"metadata": {"annotations": {CLUSTER_OWNERS: None}}},
        id="owner unknown: reference not restored (the GC would delete the object)",
    ),
    case(
        "services",
        b.service(owners=[b.owner("Widget", "w1", "old")]),
        {"old": "old"},
        {
            "metadata": {
                "annotations": {AUTO_CREATE_MCS: None},
                "ownerReferences": [b.owner("Widget", "w1", "old")],
            }
        },
        id="service: marker off, surviving owner restored",
    ),
    case(
        "persistentvolumeclaims",
        b.pvc(),
        {},
        {"metadata": {"annotations": {CLUSTER_OWNERS: None}}},
        id="pvc: marker off",
    ),
    case("deployments.apps", b.deployment(), {}, None, id="deployment: re-created instead"),
    case("statefulsets.apps", b.statefulset(), {}, None, id="statefulset: re-created instead"),
    case("persistentvolumes", b.pv(), {}, None, id="pv: reclaim policy restored separately"),
]


@pytest.mark.parametrize(("group_resource", "backed_up", "owner_uids", "expected"), REVERT_DETACHES)
def test_revert_detach(
    group_resource: str, backed_up: Obj, owner_uids: dict[str, str], expected: Obj | None
) -> None:
    rule = RULES.for_(group_resource)
    step = rule.detach(backed_up, CTX)
    live = copy.deepcopy(backed_up)
    if step.kind is DetachKind.MARK:
        assert step.patch is not None
        live["metadata"]["annotations"] = {
            **(live["metadata"].get("annotations") or {}),
            **step.patch["metadata"]["annotations"],
        }
        live["metadata"].pop("ownerReferences", None)
    before = copy.deepcopy(live)
    assert rule.revert_detach(backed_up, live, CTX, owner_uids) == expected
    assert live == before


def test_revert_detach_never_adds_a_second_controller() -> None:
    backed_up = b.configmap(owners=[b.owner("Widget", "w1", "old")])
    live = detached(backed_up, **{CLUSTER_OWNERS: "member1"})
    live["metadata"]["ownerReferences"] = [b.owner("Widget", "w2", "other")]
    patch = RULES.for_("configmaps").revert_detach(backed_up, live, CTX, {"old": "new"})
    assert patch == {"metadata": {"annotations": {CLUSTER_OWNERS: None}}}


# --- revert_rebuild -------------------------------------------------------------------------------


def live_rebuilt(group_resource: str, obj: Obj) -> Obj:
    return RULES.for_(group_resource).rebuild(obj, CTX)


REVERT_REBUILDS = [
    case("pods", live_rebuilt("pods", b.pod()), {"metadata": {"labels": {POD_MARKER: None}}}, id="pod"),
    case(
        "services",
        live_rebuilt("services", b.service()),
        {"metadata": {"annotations": {AUTO_CREATE_MCS: None}}},
        id="service",
    ),
    case(
        "persistentvolumeclaims",
        live_rebuilt("persistentvolumeclaims", b.pvc()),
        {"metadata": {"annotations": {CLUSTER_OWNERS: None}}},
        id="pvc",
    ),
    case(
        "configmaps",
        live_rebuilt("configmaps", b.configmap()),
        {"metadata": {"annotations": {CLUSTER_OWNERS: None}}},
        id="configmap",
    ),
    case(
        "secrets",
        live_rebuilt("secrets", b.secret()),
        {"metadata": {"annotations": {CLUSTER_OWNERS: None}}},
        id="secret",
    ),
    case(
        "persistentvolumes",
        live_rebuilt("persistentvolumes", b.pv()),
        {"spec": {"persistentVolumeReclaimPolicy": "Retain"}},
        id="pv set to Retain before its claim goes",
    ),
    case(
        "persistentvolumes",
        live_rebuilt("persistentvolumes", b.pv(policy="Retain")),
        None,
        id="pv already Retain",
    ),
    case(
        "persistentvolumes",
        already(
            live_rebuilt("persistentvolumes", b.pv(policy="Retain")), annotations={CLUSTER_OWNERS: "member1"}
        ),
        {"metadata": {"annotations": {CLUSTER_OWNERS: None}}},
        id="pv annotated by Kosmos",
    ),
    case("serviceaccounts", live_rebuilt("serviceaccounts", b.service_account()), None, id="service account"),
    case("deployments.apps", live_rebuilt("deployments.apps", b.deployment()), None, id="deployment"),
    case(
        "pods", live_rebuilt("pods", b.pod(labels={})) | {"metadata": {}}, None, id="pod without the marker"
    ),
]


@pytest.mark.parametrize(("group_resource", "live", "expected"), REVERT_REBUILDS)
def test_revert_rebuild(group_resource: str, live: Obj, expected: Obj | None) -> None:
    assert RULES.for_(group_resource).revert_rebuild(live, CTX) == expected


# --- reclaim policy -------------------------------------------------------------------------------


def test_retain_patch() -> None:
    assert retain_patch(b.pv()) == {"spec": {"persistentVolumeReclaimPolicy": "Retain"}}
    assert retain_patch(b.pv(policy="Retain")) is None
    assert reclaim_restore_patch("Delete") == {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}


# --- registry -------------------------------------------------------------------------------------


def test_registry_rejects_a_group_resource_registered_twice() -> None:
    registry = RuleRegistry()

    @registry.register
    class First(KindRule):
        group_resources: ClassVar[tuple[str, ...]] = ("pods", "services")

    class Second(KindRule):
        group_resources: ClassVar[tuple[str, ...]] = ("configmaps", "services")

    with pytest.raises(ValueError, match="already registered for services"):
        registry.register(Second)
    assert "configmaps" not in registry
    assert type(registry.for_("services")) is First


def test_registry_rejects_a_rule_without_group_resources_and_a_second_default() -> None:
    registry = RuleRegistry()
    with pytest.raises(ValueError, match="names no group_resources"):
        registry.register(KindRule)
    registry.register_default(KindRule)
    with pytest.raises(ValueError, match="default rule is already registered"):
        registry.register_default(KindRule)


def test_unknown_kinds_get_the_default_rule() -> None:
    assert type(RULES.for_("widgets.example.com")) is DefaultRule
    assert type(RULES.for_("ingresses.networking.k8s.io")) is DefaultRule
    assert RULES.for_("widgets.example.com").decide(b.widget()) == Decision(Move.PROMOTE)
    assert type(RuleRegistry().for_("pods")) is KindRule


def test_every_built_in_rule_is_registered() -> None:
    assert set(RULES) >= {
        "pods", "deployments.apps", "replicasets.apps", "statefulsets.apps", "controllerrevisions.apps",
        "daemonsets.apps", "jobs.batch", "cronjobs.batch", "services", "endpoints",
        "endpointslices.discovery.k8s.io", "events", "events.events.k8s.io", "persistentvolumeclaims",
        "persistentvolumes", "storageclasses.storage.k8s.io", "priorityclasses.scheduling.k8s.io",
        "serviceaccounts", "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io",
        CLUSTER_ROLES, CRB, "configmaps", "secrets", "customresourcedefinitions.apiextensions.k8s.io",
    }  # fmt: skip


def test_context_names_the_virtual_node() -> None:
    assert CTX.virtual_node == virtual_node("member1") == VNODE


def test_the_kosmos_toleration_cannot_be_changed_by_accident() -> None:
    with pytest.raises(TypeError):
        KOSMOS_TOLERATION["value"] = "false"  # type: ignore[index]


# --- sanitize -------------------------------------------------------------------------------------


def test_strip_for_rebuild_removes_member_bookkeeping_and_keeps_the_rest() -> None:
    pvc = b.pvc()
    pvc["metadata"].update(deletionTimestamp="2024-03-12T00:00:00Z", deletionGracePeriodSeconds=0)
    body = strip_for_rebuild(pvc)
    assert body["metadata"] == {
        "name": "data-db-0",
        "namespace": "app",
        "annotations": pvc["metadata"]["annotations"],
    }
    assert body["spec"] == pvc["spec"] and "status" not in body
    assert pvc["metadata"]["uid"], "the input must not be mutated"


def test_strip_for_rebuild_keeps_generate_name_without_a_name() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}}
    assert strip_for_rebuild(obj)["metadata"] == {"generateName": "web-"}


def existing_in_control_plane(obj: Obj, **changes: Any) -> Obj:
    """`obj` as the control plane would serve its own copy: its own bookkeeping, `changes` at the top."""
    twin = copy.deepcopy(obj)
    twin["metadata"].update(uid="cp-uid", resourceVersion="1", creationTimestamp="2024-01-01T00:00:00Z")
    twin["metadata"].pop("managedFields", None)
    return twin | changes


AGGREGATED = {"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "x"}}]}}
SERVICE = b.service()
PV = b.pv()

NORMALIZED = [
    case(b.cluster_role(), existing_in_control_plane(b.cluster_role()), True, id="same clusterrole"),
    case(b.cluster_role(), existing_in_control_plane(b.cluster_role(), rules=[]), False, id="other rules"),
    case(
        b.cluster_role() | AGGREGATED,
        existing_in_control_plane(b.cluster_role(), rules=[], **AGGREGATED),
        True,
        id="aggregated clusterrole, rules filled per cluster",
    ),
    case(
        SERVICE,
        existing_in_control_plane(
            SERVICE,
            spec=SERVICE["spec"] | {"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"], "ports": [port()]},
        ),
        True,
        id="service with its own cluster IP and node port",
    ),
    case(
        SERVICE,
        existing_in_control_plane(SERVICE, spec=SERVICE["spec"] | {"selector": {"app": "other"}}),
        False,
        id="service with another selector",
    ),
    case(
        b.service_account(),
        existing_in_control_plane(b.service_account(), secrets=[{"name": "app-sa-token-jgjbf"}]),
        True,
        id="service account with its own token",
    ),
    case(
        PV,
        existing_in_control_plane(PV, spec=PV["spec"] | {"claimRef": PV["spec"]["claimRef"] | {"uid": "cp"}}),
        True,
        id="pv bound to the control plane's claim",
    ),
    case(
        b.pvc(),
        existing_in_control_plane(b.pvc(), metadata=b.pvc()["metadata"] | {"annotations": {"team": "db"}}),
        True,
        id="pvc without binding annotations",
    ),
    case(
        b.configmap(),
        existing_in_control_plane(b.configmap(), data={}),
        False,
        id="configmap with other data",
    ),
]


RESOURCE_OF_KIND = {
    "ClusterRole": CLUSTER_ROLES,
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "PersistentVolume": "persistentvolumes",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ConfigMap": "configmaps",
}


@pytest.mark.parametrize(("member", "existing", "same"), NORMALIZED)
def test_each_rule_compares_what_two_clusters_agree_on(member: Obj, existing: Obj, same: bool) -> None:
    rule = RULES.for_(RESOURCE_OF_KIND[member["kind"]])
    assert (rule.comparable(existing) == rule.comparable(member)) is same
    assert rule.conflicts(existing, member, "another-run") is not same


def test_a_rebuilt_body_normalizes_like_the_identical_object_that_already_exists() -> None:
    role = b.cluster_role()
    rule = RULES.for_(CLUSTER_ROLES)
    body = rule.rebuild(role, CTX)
    assert rule.comparable(body) == rule.comparable(existing_in_control_plane(role))
    assert rule.comparable(body) != rule.comparable(existing_in_control_plane(role, rules=[]))


def test_rebuild_copes_with_explicit_nulls() -> None:
    pod = b.pod(tolerations=None)
    pod["spec"]["tolerations"] = None
    pod["metadata"].update(labels=None, annotations=None)
    body = RULES.for_("pods").rebuild(pod, CTX)
    assert body["spec"]["tolerations"] == [dict(KOSMOS_TOLERATION)]
    assert body["metadata"]["labels"] == {POD_MARKER: "true", SYNCED_LABEL: "true"}
    assert body["metadata"]["annotations"] == OURS


@pytest.mark.parametrize(
    ("group_resource", "marker"),
    [("configmaps", CLUSTER_OWNERS), ("secrets", CLUSTER_OWNERS), ("services", AUTO_CREATE_MCS)],
)
def test_unmark_patch_removes_what_revert_rebuild_removes_without_the_live_object(
    group_resource: str, marker: str
) -> None:
    rule = RULES.for_(group_resource)
    live = {"metadata": {"name": "x", "annotations": {marker: "member1", "team": "shop"}}}
    assert (
        rule.unmark_patch() == rule.revert_rebuild(live, CTX) == {"metadata": {"annotations": {marker: None}}}
    )


def test_kinds_whose_unmarking_needs_the_live_object_have_no_unmark_patch() -> None:
    assert RULES.for_("persistentvolumes").unmark_patch() is None  # Retain only when it is not already
    assert RULES.for_("deployments.apps").unmark_patch() is None  # nothing to unmark


def test_verify_checks_the_adoption_of_pods_and_replicasets_by_the_controllers_promoted_with_them() -> None:
    """A rebuilt pod must end up owned by its ReplicaSet or StatefulSet in the control plane, a rebuilt
    ReplicaSet by its Deployment; any other pod or ReplicaSet there was made by a controller."""
    adopted = {gr: RULES.for_(gr).promoted_with for gr in RULES if RULES.for_(gr).promoted_with}
    assert adopted == {"pods": ("ReplicaSet", "StatefulSet"), "replicasets.apps": ("Deployment",)}


def _with(obj: Obj, **fields: Any) -> Obj:
    """`obj` with `spec.` / `status.` fields set, written `spec__paused=True`."""
    changed = copy.deepcopy(obj)
    for path, value in fields.items():
        part, key = path.split("__")
        changed[part][key] = value
    return changed


UNSETTLED = [
    case("deployments.apps", b.deployment(), None, id="deployment rolled out"),
    case(
        "deployments.apps",
        _with(b.deployment(), status__updatedReplicas=1, status__replicas=3),
        "rolling out: 1 of 2 replicas updated, 3 in all",
        id="deployment rolling out",
    ),
    case(
        "deployments.apps",
        _with(b.deployment(), status__replicas=3),
        "rolling out: 2 of 2 replicas updated, 3 in all",
        id="deployment with old pods still terminating",
    ),
    case(
        "deployments.apps",
        _with(b.deployment(), status__observedGeneration=2),
        "its controller has not yet seen its latest spec",
        id="deployment spec not yet observed",
    ),
    case(
        "deployments.apps",
        _with(b.deployment(), spec__paused=True, status__updatedReplicas=0),
        None,
        id="paused deployment mid-rollout: its copy is paused too",
    ),
    case("statefulsets.apps", b.statefulset(), None, id="statefulset rolled out"),
    case(
        "statefulsets.apps",
        _with(b.statefulset(), status__updateRevision="db-7f8", status__updatedReplicas=1),
        "rolling out: 1 of 2 pods on the new revision",
        id="statefulset rolling out",
    ),
    case(
        "statefulsets.apps",
        _with(
            b.statefulset(),
            status__updateRevision="db-7f8",
            status__updatedReplicas=1,
            spec__updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
        ),
        None,
        id="statefulset staged by its partition",
    ),
    case(
        "statefulsets.apps",
        _with(b.statefulset(), status__updateRevision="db-7f8", spec__updateStrategy={"type": "OnDelete"}),
        None,
        id="statefulset OnDelete replaces nothing itself",
    ),
    case("replicasets.apps", b.replicaset(), None, id="replicasets are judged through their deployment"),
]


@pytest.mark.parametrize(("group_resource", "obj", "why"), UNSETTLED)
def test_unsettled(group_resource: str, obj: Obj, why: str | None) -> None:
    assert RULES.for_(group_resource).unsettled(obj) == why
