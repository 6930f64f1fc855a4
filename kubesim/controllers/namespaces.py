"""Namespace lifecycle controllers: deletion of a namespace's content, its default SA and CA bundle.

`NamespaceController` is pkg/controller/namespace: a namespace being deleted has all its content deleted with
default options and is finalized only once nothing is left. Pods bound to a node keep their grace period
and, with no kubelet, stay Terminating, so they block the namespace until they are deleted with
`gracePeriodSeconds=0` (docs/control-plane-traps.md#pod-grace-period). kube-controller-manager starts on a
terminating namespace only `namespaceDeletionGracePeriod` (5 s) after it saw the deletion, so that API
servers and etcd members that have not seen it yet cannot add content behind its back: the control-plane
namespace was finalized about 6 s after a rollback started. `deletion_grace` is that wait (0 unless the
cluster is made with one: `SimulatedCluster(namespace_deletion_grace_s=5)`). `ServiceAccountController` and
`RootCAPublisher` give every Active namespace what pods need to be admitted and to mount their API access
volume (the default ServiceAccount appears 0.01 s after the namespace:
docs/control-plane-traps.md#default-serviceaccount).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

from kubesim.controllers.base import Controller
from kubesim.objects import Obj, clone, is_terminating, meta, name_of, namespace_of, now_rfc3339
from kubesim.resources import ResourceType
from kubesim.store import Store, WatchEvent

DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such "
    "as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions "
    "of Kubernetes clusters."
)
FAKE_ROOT_CA = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwprdWJlc2ltLWNh\n"
    "MB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAwMDAwMFowFTETMBEGA1UEAxMKa3ViZXNp\n"
    "bS1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAo0Iw\n"
    "QDAOBgNVHQ8BAf8EBAMCAqQwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUa3ViZXNp\n"
    "bS1mYWtlLXJvb3QtY2EwCgYIKoZIzj0EAwIDSAAwRQIgAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "AAAAAAAAAAAAAAAAAAACIQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n"
    "-----END CERTIFICATE-----\n"
)
"""A fixed, syntactically PEM, never-verified certificate: nothing in the simulator speaks TLS."""

#: (type, reason, message) of each condition when the deletion is going well, as status_condition_utils.go.
_OK_CONDITIONS = (
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered", "All resources successfully discovered"),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentRemoved", "All content successfully removed"),
)


def _is_active(namespace: Obj | None) -> bool:
    return (
        namespace is not None
        and not is_terminating(namespace)
        and (namespace.get("status") or {}).get("phase") == "Active"
    )


def _condition(kind: str, status: str, reason: str, message: str, previous: Obj) -> Obj:
    """A namespace condition; its lastTransitionTime moves only when its status does."""
    unchanged = previous.get("status") == status and previous.get("lastTransitionTime")
    since = previous["lastTransitionTime"] if unchanged else now_rfc3339()
    return {"type": kind, "status": status, "lastTransitionTime": since, "reason": reason, "message": message}


class NamespaceController(Controller):
    """Empties a terminating namespace, reports progress in its conditions, then finalizes it."""

    name = "namespace-controller"
    watches = ("*",)
    deletion_grace = 0.0
    """Seconds between seeing a namespace terminate and starting to delete its content."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._terminating_since: dict[str, float] = {}

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        if event.rt.plural == "namespaces" and not event.rt.group:
            return [name_of(event.obj)] if is_terminating(event.obj) else []
        if not event.rt.namespaced or not self._content_changed(event):
            return []
        namespace = self.store.get(self.store.namespaces, "", namespace_of(event.obj))
        return [name_of(namespace)] if namespace is not None and is_terminating(namespace) else []

    @staticmethod
    def _content_changed(event: WatchEvent) -> bool:
        """Only a removal or a finalizer change can move a namespace deletion forward."""
        if event.type == "DELETED":
            return True
        before = None if event.old is None else meta(event.old).get("finalizers")
        return event.old is not None and before != meta(event.obj).get("finalizers")

    def reconcile(self, key: Hashable) -> float | None:
        namespace = self.store.get(self.store.namespaces, "", str(key))
        if namespace is None or not is_terminating(namespace):
            self._terminating_since.pop(str(key), None)
            return None
        seen = self._terminating_since.setdefault(str(key), time.monotonic())
        if (wait := seen + self.deletion_grace - time.monotonic()) > 0:
            return wait
        remaining, finalizers = self._delete_content(str(key))
        status = self._status(namespace, remaining, finalizers)
        self.store.write_status(self.store.namespaces, namespace, status)
        if not remaining:
            self.store.finalize_namespace(str(key))
            self._terminating_since.pop(str(key), None)
        return None

    def _delete_content(self, namespace: str) -> tuple[Counter[str], Counter[str]]:
        """Delete everything still alive; count what remains per resource and per finalizer.

        Background propagation, as the namespace deleter's deleteCollection; no grace period is given,
        so pods bound to a node keep theirs and remain Terminating.
        """
        remaining: Counter[str] = Counter()
        finalizers: Counter[str] = Counter()
        for rt in self._namespaced_types():
            for obj in self.store.list(rt, namespace):
                if not is_terminating(obj):
                    self.store.delete(rt, namespace, name_of(obj), propagation="Background")
            for obj in self.store.iter(rt, namespace):
                remaining[f"{rt.plural}.{rt.group}"] += 1
                finalizers.update(meta(obj).get("finalizers") or [])
        return remaining, finalizers

    def _namespaced_types(self) -> list[ResourceType]:
        """One type per stored resource: the versions of a custom resource share their objects."""
        unique = {(rt.group, rt.plural): rt for rt in self.store.registry if rt.namespaced}
        return list(unique.values())

    @staticmethod
    def _status(namespace: Obj, remaining: Counter[str], finalizers: Counter[str]) -> dict[str, Any]:
        wanted = {kind: ("False", reason, message) for kind, reason, message in _OK_CONDITIONS}
        if remaining:
            counts = sorted(f"{resource} has {n} resource instances" for resource, n in remaining.items())
            wanted["NamespaceContentRemaining"] = (
                "True",
                "SomeResourcesRemain",
                f"Some resources are remaining: {', '.join(counts)}",
            )
        if finalizers:
            counts = sorted(f"{finalizer} in {n} resource instances" for finalizer, n in finalizers.items())
            wanted["NamespaceFinalizersRemaining"] = (
                "True",
                "SomeFinalizerRemain",
                f"Some finalizers are remaining: {', '.join(counts)}",
            )
        old = {c.get("type"): c for c in (namespace.get("status") or {}).get("conditions") or []}
        conditions = [_condition(kind, *values, old.get(kind) or {}) for kind, values in wanted.items()]
        return {"phase": "Terminating", "conditions": conditions}


class ServiceAccountController(Controller):
    """Creates ServiceAccount `default` in every Active namespace, again whenever it is deleted.

    Pod admission refuses a pod whose ServiceAccount does not exist (403), so a tool restoring pods
    into a fresh namespace must wait for this account
    (docs/control-plane-traps.md#default-serviceaccount).
    """

    name = "service-account-controller"
    watches = ("namespaces", "serviceaccounts")

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        if event.rt.plural == "namespaces":
            return [name_of(event.obj)]
        return [namespace_of(event.obj)] if name_of(event.obj) == DEFAULT_SERVICE_ACCOUNT else []

    def reconcile(self, key: Hashable) -> float | None:
        namespace = str(key)
        if not _is_active(self.store.get(self.store.namespaces, "", namespace)):
            return None
        accounts = self.type("", "serviceaccounts")
        if self.store.get(accounts, namespace, DEFAULT_SERVICE_ACCOUNT) is None:
            self.store.create(accounts, {"metadata": {"name": DEFAULT_SERVICE_ACCOUNT}}, namespace=namespace)
        return None


class NamespaceProvisioner(Controller):
    """Creates `objects` in every Active namespace that lacks them, as a platform's policy engine does
    (Kyverno generate rules, Capsule): a default ResourceQuota, say, that a promoted namespace did not
    bring. None unless set (`SimulatedCluster.provision_namespaces`)."""

    name = "namespace-provisioner"
    watches = ("namespaces",)

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.objects: list[tuple[str, str, Obj]] = []
        """(group, plural, body) of each object a new namespace gets."""

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        return [name_of(event.obj)] if self.objects else []

    def reconcile(self, key: Hashable) -> float | None:
        namespace = str(key)
        if not _is_active(self.store.get(self.store.namespaces, "", namespace)):
            return None
        for group, plural, body in self.objects:
            rt = self.type(group, plural)
            if self.store.get(rt, namespace, body["metadata"]["name"]) is None:
                self.store.create(rt, clone(body), namespace=namespace)
        return None


class RootCAPublisher(Controller):
    """Keeps ConfigMap `kube-root-ca.crt` in every Active namespace, as certificates/rootcacertpublisher.

    Every pod's projected `kube-api-access-*` volume reads `ca.crt` from it; the publisher re-creates
    it when deleted and rewrites its data and description annotation when changed.
    """

    name = "root-ca-cert-publisher"
    watches = ("namespaces", "configmaps")

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        if event.rt.plural == "namespaces":
            return [name_of(event.obj)]
        return [namespace_of(event.obj)] if name_of(event.obj) == ROOT_CA_CONFIGMAP else []

    def reconcile(self, key: Hashable) -> float | None:
        namespace = str(key)
        if not _is_active(self.store.get(self.store.namespaces, "", namespace)):
            return None
        configmaps = self.type("", "configmaps")
        current = self.store.get(configmaps, namespace, ROOT_CA_CONFIGMAP)
        if current is None:
            body = {"metadata": {"name": ROOT_CA_CONFIGMAP}}
            self.store.create(configmaps, self._published(body), namespace=namespace)
        elif self._published(clone(current)) != current:
            self.store.update(configmaps, self._published(clone(current)))
        return None

    @staticmethod
    def _published(configmap: Obj) -> Obj:
        """`configmap` (a copy) with the CA bundle and description the publisher insists on."""
        configmap["data"] = {"ca.crt": FAKE_ROOT_CA}
        annotations = configmap["metadata"].get("annotations") or {}
        configmap["metadata"]["annotations"] = {**annotations, DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}
        return configmap
