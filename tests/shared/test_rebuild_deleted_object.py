"""A rebuild that finds an object of its namespace being deleted (a shared cluster-scoped object another
namespace's rollback removes) waits it out and makes it anew instead of accepting what is about to go."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from kubesim import SimulatedCluster
from shared.errors import NotInTime
from shared.kinds import RULES
from shared.kube import Kube
from shared.steps.rebuild import _create_or_accept

STORAGE_CLASSES = "storageclasses.storage.k8s.io"
HOLD = "example.com/hold"


@pytest.fixture
def kube(cluster: SimulatedCluster) -> Iterator[Kube]:
    with Kube.from_kubeconfig(cluster.kubeconfig()) as connected:
        yield connected


def _storage_class(finalizers: list[str] | None = None) -> dict[str, object]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "fast", **({"finalizers": finalizers} if finalizers else {})},
        "provisioner": "example.com/disk",
    }


def _terminating(kube: Kube) -> str:
    """A StorageClass held in deletion by a finalizer; its uid."""
    classes = kube.discovery.require(STORAGE_CLASSES)
    kube.create(classes, _storage_class([HOLD]))
    kube.delete(classes, "", "fast")
    live = kube.get(classes, "", "fast")
    assert live is not None and live["metadata"].get("deletionTimestamp")
    return str(live["metadata"]["uid"])


def test_an_object_being_deleted_is_waited_out_and_made_anew(kube: Kube) -> None:
    classes = kube.discovery.require(STORAGE_CLASSES)
    old_uid = _terminating(kube)

    def release() -> None:
        time.sleep(0.5)
        kube.patch(classes, "", "fast", {"metadata": {"finalizers": None}})

    releasing = threading.Thread(target=release)
    releasing.start()
    outcome = _create_or_accept(kube, classes, RULES.for_(STORAGE_CLASSES), _storage_class(), "run-1", 10.0)
    releasing.join()

    live = kube.get(classes, "", "fast")
    assert outcome is None
    assert live is not None and not live["metadata"].get("deletionTimestamp")
    assert live["metadata"]["uid"] != old_uid


def test_an_object_that_stays_in_deletion_fails_the_rebuild_naming_it(kube: Kube) -> None:
    classes = kube.discovery.require(STORAGE_CLASSES)
    _terminating(kube)

    with pytest.raises(NotInTime, match="fast was still being deleted"):
        _create_or_accept(kube, classes, RULES.for_(STORAGE_CLASSES), _storage_class(), "run-1", 0.5)
