"""Reaching a member cluster the way Kosmos does: through the kubeconfig its Cluster object holds.

Inside a Kosmos installation the control plane is the only thing promote is configured with; each
member's credentials live base64-encoded in `clusters.kosmos.io/<name>` `spec.kubeconfig`. Outside one
(development, or a member whose stored credentials are not usable from here) a local kubeconfig path
given for the cluster name takes precedence.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import yaml
from kubernetes.config.config_exception import ConfigException

from shared.kube.client import Kube
from shared.kube.discovery import ApiResource
from shared.kube.limits import ClusterLimits

KOSMOS_CLUSTERS = ApiResource(
    group="kosmos.io",
    version="v1alpha1",
    plural="clusters",
    kind="Cluster",
    namespaced=False,
    verbs=frozenset({"get", "list", "watch"}),
    singular="cluster",
)
"""Fixed rather than discovered: it is Kosmos' own API, and discovery would cost a round of requests."""


class MemberUnavailable(Exception):
    """The control plane does not say how to reach the member cluster (no object, or unusable kubeconfig)."""


def member_kubeconfig(control_plane: Kube, cluster_name: str) -> dict[str, Any]:
    """The member's kubeconfig, decoded from its Kosmos Cluster object in the control plane."""
    cluster = control_plane.get(KOSMOS_CLUSTERS, "", cluster_name)
    if cluster is None:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}" not found in the control plane {control_plane.name} '
            f"(see: kubectl get clusters.kosmos.io)"
        )
    encoded = (cluster.get("spec") or {}).get("kubeconfig")
    if not encoded or not isinstance(encoded, str):
        raise MemberUnavailable(f'Kosmos cluster "{cluster_name}" has no spec.kubeconfig')
    return _decode(cluster_name, encoded)


def connect_member(
    control_plane: Kube,
    cluster_name: str,
    local_kubeconfigs: Mapping[str, str] | None = None,
    *,
    pool_size: int = 32,
    limits: ClusterLimits | None = None,
) -> Kube:
    """A Kube for the member: from a local kubeconfig path given for its name, else from Kosmos."""
    local = (local_kubeconfigs or {}).get(cluster_name)
    if local:
        return Kube.from_kubeconfig(local, name=cluster_name, pool_size=pool_size, limits=limits)
    document = member_kubeconfig(control_plane, cluster_name)
    try:
        return Kube.from_kubeconfig(document, name=cluster_name, pool_size=pool_size, limits=limits)
    except ConfigException as error:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": spec.kubeconfig is not a usable kubeconfig: {error}'
        ) from error


def _decode(cluster_name: str, encoded: str) -> dict[str, Any]:
    """base64 of YAML or JSON (JSON is YAML); line breaks in the base64 are tolerated, as in Go."""
    try:
        text = base64.b64decode("".join(encoded.split()), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": spec.kubeconfig is not valid base64: {error}'
        ) from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": spec.kubeconfig is not a valid kubeconfig: {error}'
        ) from error
    if not isinstance(document, dict) or not document.get("clusters"):
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": spec.kubeconfig is not a valid kubeconfig (it has no clusters)'
        )
    return document
