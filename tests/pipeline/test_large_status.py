"""A policy's status stays storable end to end: the simulated control plane refuses, as etcd does, a
custom resource over 1.5 MiB, and a namespace whose objects left behind would list more than that
still reaches Completed, its status shortened."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client

from kubesim.store import MAX_STORED_BYTES
from tests.pipeline.conftest import Installation

NAMESPACE = "many-tokens"
TOKENS = 6500
LONG_NAME = "x" * 200
"""Names near the 253-character limit make each listed object ~300 bytes: 6,500 exceed 1.5 MiB."""


def _token_secret(index: int) -> dict[str, object]:
    return {
        "metadata": {
            "name": f"token-{index:05d}-{LONG_NAME}",
            "annotations": {"kubernetes.io/service-account.name": "default"},
        },
        "type": "kubernetes.io/service-account-token",
    }


def test_a_namespace_leaving_thousands_of_objects_behind_completes_with_a_shortened_status(
    installation: Installation,
) -> None:
    core = client.CoreV1Api(installation.member_api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: core.create_namespaced_secret(NAMESPACE, _token_secret(i)), range(TOKENS)))
    listed_whole = TOKENS * len(json.dumps({"resource": "secrets", "name": f"token-00000-{LONG_NAME}"}))
    assert listed_whole > MAX_STORED_BYTES, "the case needs a status etcd would refuse"

    installation.apply("promote-tokens", includedNamespaces=[NAMESPACE])
    status = installation.wait_done("promote-tokens", timeout=120)

    assert status["phase"] == "Completed", status.get("message")
    [entry] = status["namespaces"]
    assert entry["counts"]["skipped"] >= TOKENS
    assert len(entry["skipped"]) == 20
    assert entry["backupLocation"] and entry["message"], "only the list is shortened"
