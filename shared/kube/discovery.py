"""Which resource types a cluster serves, and how a person's spelling of one maps to a type.

Policies and the command line name types as people type them for kubectl (`deploy`, `Deployment`,
`deployments.apps`); the rest of the product needs the exact group, version and plural to build URLs.
Discovery is read once per cluster and cached, because promote asks it for every object it touches.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.items import GroupResource, group_resource
from shared.kube.errors import KubeError

if TYPE_CHECKING:
    from shared.kube.client import Kube

log = logging.getLogger(__name__)

PREFERRED_GROUPS = ("", "apps")
"""Groups that win when a name is served by several groups, in kubectl's order (`events` is core)."""
LISTABLE_VERBS = frozenset({"list", "get", "create", "delete"})
"""What promote must be able to do with a namespaced type to move its objects."""
_FETCH_WORKERS = 8


@dataclass(frozen=True)
class ApiResource:
    """One served resource type at the group's preferred version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()
    short_names: tuple[str, ...] = ()
    singular: str = ""

    @property
    def group_resource(self) -> GroupResource:
        return group_resource(self.plural, self.group)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def spellings(self) -> tuple[str, ...]:
        """Lower-case names a person may use for this type, short names excluded (they rank lower)."""
        return (self.plural, self.singular or self.kind.lower(), self.kind.lower())

    def __str__(self) -> str:
        return self.group_resource


class UnknownResource(ValueError):
    """A resource name that no served type answers to; the message says what to type instead."""

    def __init__(self, name: str, *, cluster: str = "", suggestion: str | None = None) -> None:
        self.name = name
        self.suggestion = suggestion
        served_by = f'cluster "{cluster}"' if cluster else "the cluster"
        hint = (
            f'did you mean "{suggestion}"?'
            if suggestion
            else "check the spelling, or create its CustomResourceDefinition first"
        )
        super().__init__(f'unknown resource type "{name}": not served by {served_by} ({hint})')


class AmbiguousResource(UnknownResource):
    """A name served by several groups, none of which kubectl would prefer."""

    def __init__(self, name: str, choices: Iterable[ApiResource]) -> None:
        self.choices = tuple(choices)
        self.name = name
        self.suggestion = None
        names = ", ".join(f'"{choice.group_resource}"' for choice in self.choices)
        ValueError.__init__(
            self, f'resource type "{name}" is ambiguous: it is served as {names}; name one of them'
        )


class NotServed(LookupError):
    """A group-resource the cluster does not serve, even after discovery was reloaded."""

    def __init__(self, group_resource: str, cluster: str) -> None:
        self.group_resource = group_resource
        self.cluster = cluster
        super().__init__(f'{group_resource} is not served by cluster "{cluster}"')


@dataclass(frozen=True)
class _Index:
    resources: tuple[ApiResource, ...]
    by_group_resource: dict[str, ApiResource] = field(default_factory=dict)
    by_group_kind: dict[tuple[str, str], ApiResource] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Iterable[ApiResource]) -> _Index:
        index = cls(tuple(resources))
        for resource in index.resources:
            index.by_group_resource.setdefault(resource.group_resource, resource)
            index.by_group_kind.setdefault((resource.group, resource.kind), resource)
        return index


class Discovery:
    """A cached view of `/api/v1` and each group's preferred version under `/apis`.

    Thread-safe: the first caller loads it, `refresh()` swaps in a fresh copy (after a CRD was created).
    A group whose discovery fails (an aggregated API that is down, such as metrics.k8s.io) is skipped
    and recorded in `failed_groups`, as kubectl does, rather than making every other type unusable.
    """

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._lock = threading.Lock()
        self._index: _Index | None = None
        self._loaded_at = 0.0
        self.failed_groups: dict[str, str] = {}

    def refresh(self) -> None:
        with self._lock:
            self._loaded_at = time.time()
            self._index = self._load()

    def refresh_if_loaded_before(self, moment: float) -> None:
        """Reload unless the cached view was loaded after `moment` (epoch seconds): a run must see every
        type that existed when it started, a CRD created a minute before included, at the cost of one
        reload per run and process rather than one per namespace."""
        with self._lock:
            if self._index is None or self._loaded_at < moment:
                self._loaded_at = time.time()
                self._index = self._load()

    def all(self) -> list[ApiResource]:
        return list(self._current().resources)

    def namespaced_listable(self) -> list[ApiResource]:
        return [r for r in self._current().resources if r.namespaced and r.verbs >= LISTABLE_VERBS]

    def by_group_resource(self, gr: str) -> ApiResource | None:
        return self._current().by_group_resource.get(gr)

    def require(self, group_resource: str) -> ApiResource:
        """The served type of `group_resource` (as steps name types), reloading discovery once when the
        cached view lacks it (a CRD created since it was loaded); `NotServed` when even then it is not."""
        resource = self.by_group_resource(group_resource)
        if resource is None:
            self.refresh()
            resource = self.by_group_resource(group_resource)
        if resource is None:
            raise NotServed(group_resource, self._kube.name)
        return resource

    def by_kind(self, api_version: str, kind: str) -> ApiResource | None:
        """The type of objects written as `apiVersion`/`kind` (owner references, backups).

        Matched on group and kind only: the server converts between the versions of a group, and only
        the preferred one is loaded. The returned `api_version` may therefore differ from the argument.
        """
        group = api_version.rpartition("/")[0]
        return self._current().by_group_kind.get((group, kind))

    def resolve(self, name: str) -> ApiResource:
        """The type a person means by `name`: plural, singular, Kind, short name, or `resource.group`."""
        wanted = name.strip().lower()
        resource_name, _, group = wanted.partition(".")
        resources = [r for r in self._current().resources if not group or r.group == group]
        candidates = [r for r in resources if resource_name in r.spellings()] or [
            r for r in resources if resource_name in r.short_names
        ]
        if not candidates:
            raise UnknownResource(name, cluster=self._kube.name, suggestion=self._suggest(wanted))
        return _preferred(name, candidates)

    def _suggest(self, wanted: str) -> str | None:
        spellings: dict[str, str] = {}
        for resource in self._current().resources:
            for spelling in (*resource.spellings(), *resource.short_names, resource.group_resource):
                spellings.setdefault(spelling, resource.group_resource)
        close = difflib.get_close_matches(wanted, list(spellings), n=1)
        return spellings[close[0]] if close else None

    def _current(self) -> _Index:
        index = self._index
        if index is None:
            with self._lock:
                if self._index is None:
                    self._loaded_at = time.time()
                    self._index = self._load()
                index = self._index
        return index

    def _load(self) -> _Index:
        core = _parse_resource_list(self._kube.raw_get("/api/v1"))
        group_versions = [
            group["preferredVersion"]["groupVersion"] for group in self._kube.raw_get("/apis")["groups"]
        ]
        failed: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=_FETCH_WORKERS, thread_name_prefix="discovery") as pool:
            lists = list(pool.map(lambda gv: self._fetch_group(gv, failed), group_versions))
        self.failed_groups = failed
        return _Index.of([*core, *(resource for listed in lists for resource in listed)])

    def _fetch_group(self, group_version: str, failed: dict[str, str]) -> list[ApiResource]:
        try:
            return list(_parse_resource_list(self._kube.raw_get(f"/apis/{group_version}")))
        except KubeError as error:
            log.warning("skipping API group %s of %s: %s", group_version, self._kube.name, error)
            failed[group_version] = str(error)
            return []


def _preferred(name: str, candidates: list[ApiResource]) -> ApiResource:
    def rank(resource: ApiResource) -> int:
        group = resource.group
        return PREFERRED_GROUPS.index(group) if group in PREFERRED_GROUPS else len(PREFERRED_GROUPS)

    best = min(rank(resource) for resource in candidates)
    winners = [resource for resource in candidates if rank(resource) == best]
    if len(winners) > 1:
        raise AmbiguousResource(name, winners)
    return winners[0]


def _parse_resource_list(document: dict[str, Any]) -> Iterator[ApiResource]:
    group, _, version = document["groupVersion"].rpartition("/")
    for entry in document.get("resources", []):
        if "/" in entry["name"]:
            continue
        yield ApiResource(
            group=group,
            version=version,
            plural=entry["name"],
            kind=entry["kind"],
            namespaced=bool(entry.get("namespaced")),
            verbs=frozenset(entry.get("verbs", ())),
            short_names=tuple(entry.get("shortNames", ())),
            singular=entry.get("singularName") or entry["kind"].lower(),
        )
