"""Every request each component makes to the CONTROL PLANE, with the code that makes it.

This is the table the shipped RBAC is tested against (tests/deploy/test_rbac_requests.py), and that the
pipeline test tests/pipeline/test_rbac_enforced.py checks is complete: every request the watcher and each
worker send during a whole promote and rollback, each with its own ServiceAccount's token on a control
plane that enforces the shipped RBAC and told apart by User-Agent, must be a row here (or in REFUSED).

Requests to the member cluster are not here: they are made with the credentials of the member's Kosmos
`Cluster` object, not with these accounts (deploy/README.md lists what those credentials must allow).
Discovery (GET /api, /apis/...) is not here either: non-resource URLs every authenticated user may read.

Namespaces: APP is any promoted namespace (its name is not known in advance: the grant must be
cluster-wide), INSTALL the installation's own (KPROMOTE_NAMESPACE, where the claims live), "" a
cluster-scoped object or a request across all namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.deploy.rbac import NAMESPACE, Request

APP = "shop"
"""Stands for any promoted namespace."""
INSTALL = NAMESPACE
EVENTS_OF_CLUSTER_OBJECTS = "default"
"""Where Events about a cluster-scoped object (a PromotePolicy) are written, by kopf and client-go alike."""

COMPONENTS = ("watcher", "backup-worker", "detach-worker", "rebuild-worker", "rollback-worker")


@dataclass(frozen=True)
class Kind:
    group: str
    resource: str
    namespaced: bool = True
    custom: bool = False
    """A custom resource: its group is unknown in advance (the scenario's is example.com)."""

    @property
    def group_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


def _kind(group_resource: str, namespaced: bool = True, custom: bool = False) -> Kind:
    resource, _, group = group_resource.partition(".")
    return Kind(group, resource, namespaced, custom)


PROMOTED: tuple[Kind, ...] = (
    # cluster-scoped: the namespace itself and the dependencies backup pulls in
    _kind("namespaces", namespaced=False),
    _kind("customresourcedefinitions.apiextensions.k8s.io", namespaced=False),
    _kind("storageclasses.storage.k8s.io", namespaced=False),
    _kind("priorityclasses.scheduling.k8s.io", namespaced=False),
    _kind("persistentvolumes", namespaced=False),
    _kind("clusterroles.rbac.authorization.k8s.io", namespaced=False),
    _kind("clusterrolebindings.rbac.authorization.k8s.io", namespaced=False),
    # namespaced, in rebuild order (shared/ordering.py)
    _kind("persistentvolumeclaims"),
    _kind("serviceaccounts"),
    _kind("roles.rbac.authorization.k8s.io"),
    _kind("rolebindings.rbac.authorization.k8s.io"),
    _kind("secrets"),
    _kind("configmaps"),
    _kind("pods"),
    _kind("replicasets.apps"),
    _kind("deployments.apps"),
    _kind("statefulsets.apps"),
    _kind("cronjobs.batch"),
    _kind("services"),
    # the "rest" tier: whatever else a namespace holds that no rule keeps out
    _kind("ingresses.networking.k8s.io"),
    _kind("networkpolicies.networking.k8s.io"),
    _kind("poddisruptionbudgets.policy"),
    _kind("horizontalpodautoscalers.autoscaling"),
    _kind("leases.coordination.k8s.io"),
    _kind("limitranges"),
    _kind("resourcequotas"),
    _kind("widgets.example.com", custom=True),
)
"""What promote creates in the control plane (and rollback deletes). Never created: events, endpoints,
endpoint slices, ControllerRevisions (the StatefulSet controller makes its own), DaemonSets and Jobs
(they stay in the member)."""

BACKED_UP_ONLY: tuple[Kind, ...] = (
    _kind("daemonsets.apps"),
    _kind("jobs.batch"),
    _kind("controllerrevisions.apps"),
    _kind("endpoints"),
    _kind("endpointslices.discovery.k8s.io"),
    _kind("events"),
    _kind("events.events.k8s.io"),
)
"""Backed up but never created by promote. Rollback still reads each backed-up object by name in the
control plane (it acts only on what carries the run's annotation), and deletes the ControllerRevisions
the control plane's StatefulSet controller made from a promoted StatefulSet."""

REVERTED_BEFORE_DELETE = (
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "persistentvolumes",
    "serviceaccounts",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
)
"""Kinds whose rule has a `revert_rebuild` patch (markers off, PV to Retain) that rollback applies before
deleting (shared/kinds: PodRule, ServiceRule, ClusterOwnedRule kinds, PersistentVolumeRule)."""


@dataclass(frozen=True)
class Row:
    component: str
    request: Request
    why: str


def _on(kind: Kind, verb: str, name: str = "x") -> Request:
    return Request(verb, kind.group, kind.resource, "", APP if kind.namespaced else "", name)


def _rows() -> list[Row]:
    rows: list[Row] = []

    def add(component: str, why: str, *requests: Request) -> None:
        rows.extend(Row(component, request, why) for request in requests)

    policy = "kosmos.io", "promotepolicies"
    # Workers never read the policy: what a run acts on is frozen in its claim and its backup.
    add("watcher", "kopf: the policy", Request("get", *policy, name="p"))
    for component in COMPONENTS:
        add(
            component,
            "connect_member: the member's kubeconfig",
            Request("get", "kosmos.io", "clusters", name="m"),
        )

    # ---- watcher
    add(
        "watcher",
        "kopf: every policy, cluster-wide; annotations (progress, diff base), spec.rollback reset, finalizer",
        Request("list", *policy),
        Request("watch", *policy),
        Request("patch", *policy, name="p"),
        Request("update", *policy, name="p"),
    )
    add(
        "watcher",
        "handlers: precheck result, run id and progress",
        Request("get", *policy, "status", name="p"),
        Request("patch", *policy, "status", name="p"),
    )
    add(
        "watcher", "precheck: the virtual node kosmos-<cluster>", Request("get", "", "nodes", name="kosmos-m")
    )
    add(
        "watcher",
        "precheck: the namespace must not exist in the control plane",
        Request("get", "", "namespaces", name=APP),
    )
    add(
        "watcher",
        "kopf: waits for CRDs to be established",
        Request("list", "apiextensions.k8s.io", "customresourcedefinitions"),
        Request("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
    )
    add(
        "watcher",
        "kopf and the watcher: Events about a policy (cluster-scoped: in default)",
        Request("create", "", "events", namespace=EVENTS_OF_CLUSTER_OBJECTS),
        Request("patch", "", "events", namespace=EVENTS_OF_CLUSTER_OBJECTS, name="e"),
    )
    lease = "coordination.k8s.io", "leases"
    add(
        "watcher",
        "claims: acquire, list to resume and report, change state, release a deleted policy's",
        Request("get", *lease, namespace=INSTALL, name="c"),
        Request("list", *lease, namespace=INSTALL),
        Request("watch", *lease, namespace=INSTALL),
        Request("create", *lease, namespace=INSTALL),
        Request("update", *lease, namespace=INSTALL, name="c"),
        Request("patch", *lease, namespace=INSTALL, name="c"),
        Request("delete", *lease, namespace=INSTALL, name="c"),
    )

    # ---- forward workers: their claim
    for component in ("backup-worker", "detach-worker", "rebuild-worker"):
        add(
            component,
            "claims: read before acting, record the step",
            Request("get", *lease, namespace=INSTALL, name="c"),
            Request("update", *lease, namespace=INSTALL, name="c"),
            Request("patch", *lease, namespace=INSTALL, name="c"),
        )
    add(
        "backup-worker",
        "claims: the rollbacks that may be deleting a cluster-scoped object this namespace uses",
        Request("list", *lease, namespace=INSTALL),
    )
    add(
        "backup-worker",
        "statefulset_revisions: the revision probe of a promoted StatefulSet, made, read and removed",
        Request("create", "apps", "statefulsets", namespace=INSTALL),
        Request("get", "apps", "statefulsets", namespace=INSTALL, name="kpromote-probe-0123456789ab"),
        Request("delete", "apps", "statefulsets", namespace=INSTALL, name="kpromote-probe-0123456789ab"),
    )

    # ---- rebuild
    for kind in PROMOTED:
        add("rebuild-worker", "rebuild_batch: create each promoted object", _on(kind, "create", name=""))
        add("rebuild-worker", "_create_or_accept: AlreadyExists, read it back", _on(kind, "get"))
    add(
        "rebuild-worker",
        "tier_done: CRD Established, the namespace's default ServiceAccount",
        Request("get", "apiextensions.k8s.io", "customresourcedefinitions", name="widgets.example.com"),
        Request("get", "", "serviceaccounts", namespace=APP, name="default"),
    )
    add(
        "rebuild-worker",
        "barrier: the informer-lag barrier's pod and ReplicaSet, created then deleted by their one name",
        Request("create", "", "pods", namespace=APP),
        Request("create", "apps", "replicasets", namespace=APP),
        Request("get", "", "pods", namespace=APP, name="kpromote-barrier"),
        Request("delete", "", "pods", namespace=APP, name="kpromote-barrier"),
        Request("delete", "apps", "replicasets", namespace=APP, name="kpromote-barrier"),
    )
    add(
        "rebuild-worker",
        "verify: adoption, nothing new; events: which controller made a pod",
        Request("list", "", "pods", namespace=APP),
        Request("list", "apps", "replicasets", namespace=APP),
        Request("list", "", "events", namespace=APP),
    )
    add(
        "rebuild-worker",
        "copying the application's RBAC as it is (authorizer checks on role create and binding create)",
        Request("escalate", "rbac.authorization.k8s.io", "roles", namespace=APP, name="r"),
        Request("escalate", "rbac.authorization.k8s.io", "clusterroles", name="r"),
        Request("bind", "rbac.authorization.k8s.io", "roles", namespace=APP, name="r"),
        Request("bind", "rbac.authorization.k8s.io", "clusterroles", name="admin"),
    )

    # ---- rollback
    for kind in PROMOTED:
        add(
            "rollback-worker",
            "_clear_control_plane: is it ours? then delete it",
            _on(kind, "get"),
            _on(kind, "delete"),
        )
        if kind.group_resource in REVERTED_BEFORE_DELETE:
            add(
                "rollback-worker",
                "_clear_control_plane: revert_rebuild before the delete",
                _on(kind, "patch"),
            )
    for kind in BACKED_UP_ONLY:
        add(
            "rollback-worker",
            "_clear_control_plane: is it ours? (never, unless made from ours)",
            _on(kind, "get"),
        )
    add(
        "rollback-worker",
        "_clear_control_plane: the StatefulSet controller's revision, annotated like its StatefulSet",
        _on(_kind("controllerrevisions.apps"), "delete"),
    )
    add(
        "rollback-worker",
        "_clear_control_plane: is the control-plane namespace this run's?",
        Request("get", "", "namespaces", name=APP),
    )
    add(
        "rollback-worker",
        "claims: read, find the run's, record the state, release once rolled back",
        Request("get", *lease, namespace=INSTALL, name="c"),
        Request("list", *lease, namespace=INSTALL),
        Request("update", *lease, namespace=INSTALL, name="c"),
        Request("patch", *lease, namespace=INSTALL, name="c"),
        Request("delete", *lease, namespace=INSTALL, name="c"),
    )
    return rows


ROWS: tuple[Row, ...] = tuple(_rows())

REFUSED: tuple[Row, ...] = (
    Row(
        "rollback-worker",
        Request("list", "example.com", "widgets"),
        "rollback (_custom_resources_elsewhere): lists a CRD's custom resources in every namespace before "
        "deleting the CRD. A cluster-wide list of an unknown group cannot be granted without `list` on "
        "everything, Secrets included; on 403 the rollback keeps the CRD and reports it",
    ),
)
"""Requests the code makes (or is about to) that the shipped RBAC refuses on purpose."""


def rows_of(component: str) -> list[Row]:
    return [row for row in ROWS if row.component == component]
