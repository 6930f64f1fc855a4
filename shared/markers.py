"""The labels, annotations and toleration that tell Kosmos (and people) what an object is.

Values are those of Kosmos clustertree (`pkg/utils/constants.go@923bddf6`); what each one makes Kosmos
do is in docs/control-plane-traps.md#kosmos-markers. They are only ever set or removed through the
kind rules in `shared.kinds`, so that every place that sets a marker has a matching revert.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

POD_MARKER: Final = "kosmos-io/pod"
"""Label "true": Kosmos syncs the member pod's status up, and deletes it with its control-plane twin."""

SYNCED_LABEL: Final = "kosmos-io/synced"
"""Label, value "true": set on control-plane pods by the rebuild, as Kosmos' own restore
does; nothing reads it (docs/control-plane-traps.md#kosmos-pods)."""

CLUSTER_OWNERS: Final = "kosmos-io/cluster-owners"
"""Annotation, comma-separated clusters: deleting the control-plane ConfigMap/Secret/PVC deletes the twins."""

AUTO_CREATE_MCS: Final = "kosmos.io/auto-create-mcs"
"""Annotation, value "true": Kosmos creates ServiceExport/ServiceImport for the Service in every cluster."""

KOSMOS_NODE_KEY: Final = "kosmos.io/node"
"""Taint key of every virtual node; the toleration below tolerates it."""

KOSMOS_TOLERATION: Final[Mapping[str, str]] = MappingProxyType(
    {"key": KOSMOS_NODE_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
)
"""Lets a pod sit on the tainted virtual node. Read-only: copy it (`dict(KOSMOS_TOLERATION)`) into a body."""

PROMOTED_BY: Final = "promote.kosmos.io/policy"
"""Our annotation, value = policy name, on every object we create in the control plane, so that a person
and the rollback can tell what this tool created from what existed before."""

PROMOTED_IN_RUN: Final = "promote.kosmos.io/run"
"""Our annotation, value = run id, beside PROMOTED_BY: a rollback deletes only what its own run created,
never what a later run of a policy of the same name created in the same namespace."""


def virtual_node(cluster: str) -> str:
    """The node that stands for a member cluster in Kosmos "ALL" leaf mode, the only mode supported
    (docs/control-plane-traps.md#virtual-node)."""
    return f"kosmos-{cluster}"
