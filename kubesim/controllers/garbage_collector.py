"""The garbage collector of kube-controller-manager: cascading deletion through ownerReferences.

It is the reason promote must strip ownerReferences before restoring pods: an object whose owner UID does not
exist in this cluster is deleted at once (docs/control-plane-traps.md#stale-ownerreferences), and the reason a
detach must delete owners with `propagationPolicy=Orphan`: the dependents are released within 0.04-0.07 s and
keep running (docs/control-plane-traps.md#orphan-deletion).

The logic follows pkg/controller/garbagecollector: an owner-uid -> dependents index kept up to date
from every store event (the "dependency graph"), `attemptToDeleteItem` with its classification of
references into solid / dangling / waiting-for-dependents, orphaning for the `orphan` finalizer and
`processDeletingDependentsItem` for `foregroundDeletion`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any, NamedTuple

from kubesim.controllers.base import Controller
from kubesim.objects import Obj, clone, is_terminating, meta, name_of, namespace_of, owner_refs, uid_of
from kubesim.resources import ResourceType
from kubesim.store import Store, WatchEvent

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
IGNORED = frozenset({"events", "events.events.k8s.io"})
"""kube-controller-manager's default `--gc-ignored-resources`: events are never collected."""

ATTEMPT_TO_DELETE = "attempt-to-delete"
"""Key kind: decide whether a dependent still has a live owner (`attemptToDeleteItem`)."""
PROCESS_OWNER = "process-owner"
"""Key kind: an owner being deleted with the `orphan` or `foregroundDeletion` finalizer."""

Ref = Mapping[str, Any]


class Key(NamedTuple):
    kind: str
    """ATTEMPT_TO_DELETE or PROCESS_OWNER."""
    uid: str


def _finalizers(obj: Obj) -> list[str]:
    return list(meta(obj).get("finalizers") or [])


def _is_deleting_dependents(obj: Obj) -> bool:
    return is_terminating(obj) and FOREGROUND in _finalizers(obj)


class GarbageCollector(Controller):
    """Cascading deletion: Orphan, Foreground and Background propagation, and dangling owners."""

    name = "garbage-collector-controller"
    watches = ("*",)
    live = ()

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._dependents: dict[str, set[str]] = {}
        """Owner uid -> uids of the objects naming it in their ownerReferences (the dependency graph)."""
        self._owners: dict[str, frozenset[str]] = {}
        """Dependent uid -> the owner uids it names, to update the index when its references change."""

    # --------------------------------------------------------------------------- the dependency graph
    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        if event.rt.group_resource in IGNORED:
            return []
        uid = uid_of(event.obj)
        old_owners = self._owners.get(uid, frozenset())
        if event.type == "DELETED":
            self._link(uid, old_owners, frozenset())
            dependents = [Key(ATTEMPT_TO_DELETE, d) for d in self._dependents.get(uid, ())]
            return dependents + [Key(PROCESS_OWNER, o) for o in old_owners]
        keys: list[Key] = []
        refs_changed = event.old is None or owner_refs(event.old) != owner_refs(event.obj)
        if refs_changed:
            new_owners = frozenset(str(ref.get("uid")) for ref in owner_refs(event.obj) if ref.get("uid"))
            self._link(uid, old_owners, new_owners)
            # A new reference may dangle; a removed or unblocked one may release a foreground owner.
            keys += [Key(ATTEMPT_TO_DELETE, uid)] if new_owners else []
            keys += [Key(PROCESS_OWNER, o) for o in old_owners]
        if is_terminating(event.obj) and {ORPHAN, FOREGROUND} & set(_finalizers(event.obj)):
            keys.append(Key(PROCESS_OWNER, uid))
        return keys

    def _link(self, uid: str, old_owners: frozenset[str], new_owners: frozenset[str]) -> None:
        for owner in old_owners - new_owners:
            dependents = self._dependents.get(owner)
            if dependents is not None:
                dependents.discard(uid)
                if not dependents:
                    del self._dependents[owner]
        for owner in new_owners - old_owners:
            self._dependents.setdefault(owner, set()).add(uid)
        if new_owners:
            self._owners[uid] = new_owners
        else:
            self._owners.pop(uid, None)

    def _live_dependents(self, owner_uid: str) -> list[tuple[ResourceType, Obj]]:
        found = (self.store.by_uid(uid) for uid in sorted(self._dependents.get(owner_uid, ())))
        return [entry for entry in found if entry is not None]

    # ------------------------------------------------------------------------------------ reconcile
    def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, Key)
        found = self.store.by_uid(key.uid)
        if found is None:
            return None
        rt, obj = found
        if key.kind == PROCESS_OWNER:
            self._process_owner(rt, obj)
        else:
            self._attempt_to_delete(rt, obj)
        return None

    def _process_owner(self, rt: ResourceType, owner: Obj) -> None:
        if not is_terminating(owner):
            return
        if ORPHAN in _finalizers(owner):
            self._orphan_dependents(uid_of(owner))
            self._remove_finalizer(rt, owner, ORPHAN)
        elif FOREGROUND in _finalizers(owner):
            self._delete_dependents_first(rt, owner)

    def _orphan_dependents(self, owner_uid: str) -> None:
        """Release every dependent before the owner goes: how a detach keeps its pods
        (docs/control-plane-traps.md#orphan-deletion)."""
        for rt, dependent in self._live_dependents(owner_uid):
            self._remove_refs(rt, dependent, {owner_uid})

    def _delete_dependents_first(self, rt: ResourceType, owner: Obj) -> None:
        """Foreground deletion: the owner stays until no dependent blocks it (blockOwnerDeletion).

        A bound pod deleted with its default grace period stays Terminating here (there is no kubelet),
        so it blocks its owner exactly as it would on a control plane without nodes. Dependents that are
        themselves deleting theirs are left to their own key, which also keeps ownership cycles finite.
        """
        owner_uid = uid_of(owner)
        for dep_rt, dependent in self._live_dependents(owner_uid):
            if not _is_deleting_dependents(dependent):
                self._attempt_to_delete(dep_rt, dependent)
        if not any(self._blocks(dependent, owner_uid) for _, dependent in self._live_dependents(owner_uid)):
            latest = self.store.by_uid(owner_uid)
            if latest is not None:
                self._remove_finalizer(rt, latest[1], FOREGROUND)

    @staticmethod
    def _blocks(dependent: Obj, owner_uid: str) -> bool:
        refs = owner_refs(dependent)
        return any(ref.get("uid") == owner_uid and ref.get("blockOwnerDeletion") for ref in refs)

    def _attempt_to_delete(self, rt: ResourceType, obj: Obj) -> None:
        """Delete `obj` when none of its owners is alive; drop the references to dead owners otherwise."""
        if _is_deleting_dependents(obj):
            self._delete_dependents_first(rt, obj)
            return
        refs = owner_refs(obj)
        if is_terminating(obj) or not refs:
            return
        classified = self._classify(obj, refs)
        if classified is None:
            return
        solid, dangling, waiting = classified
        if solid:
            self._remove_refs(rt, obj, {str(ref.get("uid")) for ref in dangling + waiting})
            return
        policy = self._propagation(obj, waiting_owner=bool(waiting))
        uid = uid_of(obj)
        self.store.delete(rt, namespace_of(obj), name_of(obj), propagation=policy, precondition_uid=uid)

    def _propagation(self, obj: Obj, *, waiting_owner: bool) -> str:
        """Foreground down a chain of foreground owners; else the policy of a finalizer already set."""
        finalizers = _finalizers(obj)
        if waiting_owner and self._live_dependents(uid_of(obj)):
            return "Foreground"
        if ORPHAN in finalizers:
            return "Orphan"
        return "Foreground" if FOREGROUND in finalizers else "Background"

    def _classify(self, obj: Obj, refs: list[Ref]) -> tuple[list[Ref], list[Ref], list[Ref]] | None:
        """Solid, dangling and waiting-for-dependents references, as `classifyReferences` sorts them.

        None when a reference cannot be judged: its kind is not served (the real collector retries until
        discovery knows it) or a cluster-scoped object names a namespaced owner (invalid, left alone).
        """
        solid: list[Ref] = []
        dangling: list[Ref] = []
        waiting: list[Ref] = []
        for ref in refs:
            owner_rt = self._owner_type(ref)
            if owner_rt is None or (owner_rt.namespaced and not namespace_of(obj)):
                return None
            namespace = namespace_of(obj) if owner_rt.namespaced else ""
            owner = self.store.get(owner_rt, namespace, ref.get("name", ""))
            if owner is None or uid_of(owner) != ref.get("uid"):
                dangling.append(ref)
            elif _is_deleting_dependents(owner):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    def _owner_type(self, ref: Ref) -> ResourceType | None:
        """The served type an ownerReference names; any served version of its group and kind will do."""
        api_version, kind = str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
        exact = self.store.registry.by_kind(api_version, kind)
        if exact is not None:
            return exact
        group = api_version.rpartition("/")[0]
        return next((rt for rt in self.store.registry if rt.group == group and rt.kind == kind), None)

    # -------------------------------------------------------------------------------------- writes
    def _remove_refs(self, rt: ResourceType, obj: Obj, owner_uids: set[str]) -> None:
        refs = owner_refs(obj)
        kept = [ref for ref in refs if ref.get("uid") not in owner_uids]
        if len(kept) == len(refs):
            return
        updated = clone(obj)
        if kept:
            updated["metadata"]["ownerReferences"] = kept
        else:
            updated["metadata"].pop("ownerReferences", None)
        self.store.update(rt, updated)

    def _remove_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        updated = clone(obj)
        remaining = [f for f in _finalizers(obj) if f != finalizer]
        if remaining:
            updated["metadata"]["finalizers"] = remaining
        else:
            updated["metadata"].pop("finalizers", None)
        self.store.update(rt, updated)
