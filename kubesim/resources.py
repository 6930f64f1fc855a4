"""The resource types the simulator serves, as data.

Discovery documents, URL routing and per-type behaviour (status subresource, whether SMP is allowed)
all derive from this one table, so adding a type is adding one row. Custom resources get rows at run
time when their CustomResourceDefinition is created.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    verbs: tuple[str, ...] = ALL_VERBS
    custom: bool = False
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_resource(self) -> str:
        """`resource.group` as kubectl and Velero spell it (`pods`, `deployments.apps`)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def _core(plural: str, kind: str, namespaced: bool = True, **kw: object) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, **kw)  # type: ignore[arg-type]


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _core("namespaces", "Namespace", False, short_names=("ns",), has_status=True),
    _core("pods", "Pod", short_names=("po",), has_status=True, categories=("all",)),
    _core("services", "Service", short_names=("svc",), has_status=True, categories=("all",)),
    _core("endpoints", "Endpoints", short_names=("ep",)),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("secrets", "Secret"),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core("persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",), has_status=True),
    _core("persistentvolumes", "PersistentVolume", False, short_names=("pv",), has_status=True),
    _core("events", "Event", short_names=("ev",)),
    _core("resourcequotas", "ResourceQuota", short_names=("quota",), has_status=True),
    _core("limitranges", "LimitRange", short_names=("limits",)),
    _core("nodes", "Node", False, short_names=("no",), has_status=True),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), True, categories=("all",)),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), True, categories=("all",)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), True, categories=("all",)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), True, categories=("all",)),
    ResourceType("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    ResourceType("batch", "v1", "jobs", "Job", True, (), True, categories=("all",)),
    ResourceType("batch", "v1", "cronjobs", "CronJob", True, ("cj",), True, categories=("all",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ResourceType("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), True),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), True),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        True,
    ),
)


@dataclass
class ResourceRegistry:
    """The set of types currently served; custom resources come and go with their CRDs."""

    _by_path: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    @classmethod
    def with_builtins(cls) -> ResourceRegistry:
        registry = cls()
        for rt in BUILTIN_TYPES:
            registry.add(rt)
        return registry

    def add(self, rt: ResourceType) -> None:
        self._by_path[(rt.group, rt.version, rt.plural)] = rt

    def remove(self, rt: ResourceType) -> None:
        self._by_path.pop((rt.group, rt.version, rt.plural), None)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self._by_path.values():
            if rt.kind == kind and rt.group == group and rt.version == version:
                return rt
        return None

    def group_versions(self) -> dict[str, list[str]]:
        versions: dict[str, list[str]] = {}
        for group, version, _ in self._by_path:
            if version not in versions.setdefault(group, []):
                versions[group].append(version)
        return versions

    def in_group_version(self, group: str, version: str) -> Iterable[ResourceType]:
        return [rt for (g, v, _), rt in self._by_path.items() if g == group and v == version]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_path.values()))
