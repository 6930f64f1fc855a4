"""What `kubectl apply -k deploy/` puts in a control plane before any process starts: the PromotePolicy
CRD and the installation namespace (where the namespace claims live). The embedded default, the tests and
the benchmark install a simulated control plane with it."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client

CRD = Path(__file__).resolve().parents[1] / "shared" / "crds" / "promotepolicies.kosmos.io.yaml"


def install(api: client.ApiClient, namespace: str) -> None:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(yaml.safe_load(CRD.read_text()))
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace.model_validate({"metadata": {"name": namespace}})
    )
