"""The Kubernetes version a simulated cluster plays, and what in its behaviour depends on it.

Promote copies objects between two clusters that need not run the same version. Where a version changes
what a controller computes from the same object, the simulator follows it, so that a migration across
that change meets what it would meet on real clusters.
"""

from __future__ import annotations

import re

GIT_VERSION = "v1.30.0-kubesim"
"""What `/version` answers unless a cluster is given another."""

_MINOR = re.compile(r"^v?(\d+)\.(\d+)")


def minor_version(git_version: str) -> tuple[int, int]:
    """(major, minor) of a `gitVersion` such as `v1.34.1-eks-d96d92f`."""
    match = _MINOR.match(git_version)
    if match is None:
        raise ValueError(f"not a Kubernetes version: {git_version!r}")
    return int(match.group(1)), int(match.group(2))


def writes_null_template_timestamps(git_version: str) -> bool:
    """Whether the controller manager encodes a pod template's unset `metadata.creationTimestamp` as
    `null` in the ControllerRevisions of StatefulSets and DaemonSets, as Go's encoding/json did for every
    release before 1.34; 1.34 omits it. The revision bytes, and so the revision name every pod is
    labelled with, differ between the two, and a StatefulSet whose revision changes rolls its pods
    (kubernetes/kubernetes#134773)."""
    return minor_version(git_version) < (1, 34)
