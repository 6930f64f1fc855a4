"""The per-kind rule registry: what promote does with one object of one kind, in each phase.

Shaped after Velero's item actions: one small rule per kind family,
keyed by group-resource, registered with a decorator into a registry that rejects duplicates. A rule
only adds its kind's *delta*; what every kind shares (decide → promote, nothing to detach, generic
`strip_for_rebuild`, our PROMOTED_BY annotation) lives here once, so a subclass overrides only what
differs. Each phase hook has its revert beside it, as the Execute/Revert pairs of the Kosmos code.

Everything here is pure: plain dicts in (raw Kubernetes JSON as served, never mutated), plain dicts or
small frozen values out. The steps in `shared.steps` do the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar, Protocol, TypeVar, final

from shared.items import ItemRef, Obj
from shared.markers import PROMOTED_BY, PROMOTED_IN_RUN, virtual_node
from shared.sanitize import normalized, strip_for_rebuild

CREATED_BY_CONTROL_PLANE = "created by the control plane itself"
MANAGED_BY_CLUSTER = "managed by the cluster"
NO_OWNERS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Context:
    """Who promotes: the member cluster (as Kosmos names it) and the PromotePolicy doing it."""

    cluster: str
    policy: str
    run: str

    @property
    def virtual_node(self) -> str:
        return virtual_node(self.cluster)


class Move(StrEnum):
    PROMOTE = "promote"
    """Detached in the member, re-created in the control plane."""
    STAY = "stay"
    """Left running in the member, untouched: a control-plane copy would duplicate or restart its pods."""
    SKIP = "skip"
    """Not moved at all: finished, or the control plane already has (or makes) its own."""


@dataclass(frozen=True)
class Decision:
    move: Move
    reason: str = ""


PROMOTE = Decision(Move.PROMOTE)


class DetachKind(StrEnum):
    ORPHAN_DELETE = "orphan-delete"
    """DELETE with propagationPolicy=Orphan: the owner goes, its dependents keep running
    (docs/control-plane-traps.md#orphan-deletion)."""
    MARK = "mark"
    """Apply `DetachStep.patch`: set Kosmos markers, drop ownerReferences."""
    NONE = "none"
    """Nothing to do in the member."""


@dataclass(frozen=True)
class DetachStep:
    kind: DetachKind
    patch: Obj | None = None
    """JSON merge patch, for MARK only: just the keys that change, so a re-run sends nothing."""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind is DetachKind.MARK and not self.patch:
            raise ValueError("a mark step needs a non-empty patch")
        if self.kind is not DetachKind.MARK and self.patch is not None:
            raise ValueError(f"only mark steps take a patch, not {self.kind}")


NOTHING_TO_DETACH = DetachStep(DetachKind.NONE, reason="not changed in the member")


class Catalog(Protocol):
    """Cluster-wide facts a rule may ask about while finding related objects; the backup lists them
    once per run, not once per object, as Velero does for ClusterRoleBindings."""

    def cluster_role_bindings(self) -> Iterable[Obj]: ...

    def crd_for(self, api_version: str, kind: str) -> str | None:
        """Name of the CRD that serves this apiVersion/kind in the member, or None for built-in kinds."""
        ...


@dataclass(frozen=True)
class StaticCatalog:
    """A Catalog over values already in hand (tests, or a backup that listed them itself)."""

    bindings: tuple[Obj, ...] = ()
    crds: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """CRD name by (apiVersion, kind)."""

    def cluster_role_bindings(self) -> Iterable[Obj]:
        return self.bindings

    def crd_for(self, api_version: str, kind: str) -> str | None:
        return self.crds.get((api_version, kind))


class KindRule:
    """The default behaviour of every kind; subclasses override only the hooks whose behaviour differs.

    `detach`, `rebuild` and the reverts are only called for objects whose `decide` says PROMOTE.
    """

    group_resources: ClassVar[tuple[str, ...]] = ()
    owner_level: ClassVar[int] = 0
    """For kinds detach deletes as owners: how many owner levels sit below (a ReplicaSet owns pods: 1; a
    Deployment owns ReplicaSets: 2). Detach deletes the highest first, a rollback re-creates the lowest
    first (`shared.plan`)."""
    dependents: ClassVar[tuple[str, ...]] = ()
    """For owner kinds: the group-resources they own, which detach waits for the garbage collector to
    release after deleting the owners."""

    promoted_with: ClassVar[tuple[str, ...]] = ()
    """Kinds of controller promoted too that may own this kind (a ReplicaSet's Deployment). In the control
    plane they must adopt what was rebuilt of it, and create nothing of it themselves: verify checks both
    (`shared.steps.verify`)."""

    delete_grace_seconds: ClassVar[int | None] = None
    """The grace period a rollback deletes the control-plane copy with (None: the kind's default). Kinds
    that set one are deleted before all others."""
    checked_when_skipped: ClassVar[bool] = False
    """Whether a rollback also checks objects the plan skipped against the backup (they must be
    untouched; most skipped kinds are rewritten by the cluster itself, so checking them proves nothing)."""

    def decide(self, obj: Obj) -> Decision:
        """Whether `obj` (as backed up) is promoted, stays in the member or is not moved at all."""
        return PROMOTE

    def related(self, obj: Obj, catalog: Catalog | None = None) -> list[ItemRef]:
        """Cluster-scoped objects `obj` needs in the control plane, to back up with it."""
        return []

    def unsettled(self, obj: Obj) -> str | None:
        """Why `obj` (as backed up, and promoted) must not be promoted now, though it may be later: a
        rollout in progress, which the control plane's controller would carry on by deleting pods it
        cannot replace on the virtual node; None when it is settled."""
        return None

    def detach(self, obj: Obj, ctx: Context) -> DetachStep:
        """What to do to `obj` in the member so that Kosmos treats it as a copy of the control plane's."""
        return NOTHING_TO_DETACH

    def revert_detach(
        self, backed_up: Obj, live: Obj, ctx: Context, owner_uids: Mapping[str, str] = NO_OWNERS
    ) -> Obj | None:
        """Merge patch that puts the live member object back as it was backed up, or None if there is
        nothing to patch (owner kinds are re-created from the backup instead). `owner_uids` maps each
        backed-up owner UID to the UID of that owner as it exists now (see `helpers.restore_metadata`)."""
        return None

    @final
    def rebuild(self, obj: Obj, ctx: Context) -> Obj:
        """Body to create in the control plane: stripped (`shared.sanitize`), the kind's delta, and our
        PROMOTED_BY annotation on the top-level metadata only: never on a pod template, where any change
        is a rollout (docs/control-plane-traps.md#template-changes)."""
        body = strip_for_rebuild(obj)
        self.tailor(body, obj, ctx)
        metadata = body["metadata"]
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            PROMOTED_BY: ctx.policy,
            PROMOTED_IN_RUN: ctx.run,
        }
        return body

    def tailor(self, body: Obj, original: Obj, ctx: Context) -> None:
        """The kind's delta, applied in place to `body`, an already stripped deep copy of `original`."""

    @final
    def conflicts(self, existing: Obj, body: Obj, run: str) -> bool:
        """Whether an object already in the control plane blocks the `body` that `run` would create: not
        when this run made it (a re-run) and not when it is the same once each cluster's own values are
        ignored. Never take over someone else's
        (docs/control-plane-traps.md#shared-cluster-scoped-objects)."""
        if ((existing.get("metadata") or {}).get("annotations") or {}).get(PROMOTED_IN_RUN) == run:
            return False
        return self.comparable(existing) != self.comparable(body)

    @final
    def comparable(self, obj: Obj) -> Obj:
        """`obj` as two clusters agree on it: generic (`shared.sanitize.normalized`), then this kind's."""
        body = normalized(obj)
        self.drop_allocated(body)
        return body

    def drop_allocated(self, body: Obj) -> None:
        """Remove, in place, values each cluster allocates for itself (a Service's cluster IP), so the
        same object read from two clusters compares equal."""

    def rollback_differences(self, backed_up: Obj, live: Obj) -> list[str]:
        """How the live member object differs from its backup after a rollback, beyond the metadata every
        kind is compared on (labels, annotations, owners, UID); empty when it does not."""
        return []

    def revert_rebuild(self, live: Obj, ctx: Context) -> Obj | None:
        """Merge patch that takes the Kosmos markers off the live control-plane object before the rollback
        deletes it, so that Kosmos does not delete the member twin
        (docs/control-plane-traps.md#kosmos-twin-deletion), or None."""
        return None

    def unmark_patch(self) -> Obj | None:
        """The same as `revert_rebuild` for a kind whose markers are fixed keys: a merge patch that removes
        them whatever the live object holds (removing an absent key changes nothing), so the rollback can
        send it without reading the object first. None when the kind needs the live object."""
        return None


R = TypeVar("R", bound=type[KindRule])


class RuleRegistry:
    """Rules by group-resource. Unknown group-resources (custom resources included) get the default."""

    def __init__(self) -> None:
        self._rules: dict[str, KindRule] = {}
        self._default: KindRule = KindRule()
        self._default_set = False

    def register(self, cls: R) -> R:
        """Class decorator: one instance of `cls` serves each of its group_resources."""
        if not cls.group_resources:
            raise ValueError(f"{cls.__name__} names no group_resources")
        taken = sorted(set(cls.group_resources) & self._rules.keys())
        if taken:
            raise ValueError(f"{cls.__name__}: already registered for {', '.join(taken)}")
        rule = cls()
        self._rules.update(dict.fromkeys(cls.group_resources, rule))
        return cls

    def register_default(self, cls: R) -> R:
        """Class decorator: the rule for every group-resource no other rule names."""
        if self._default_set:
            raise ValueError(f"{cls.__name__}: a default rule is already registered")
        self._default, self._default_set = cls(), True
        return cls

    def for_(self, group_resource: str) -> KindRule:
        return self._rules.get(group_resource, self._default)

    def __contains__(self, group_resource: object) -> bool:
        return group_resource in self._rules

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._rules))


RULES = RuleRegistry()
