"""Precheck: everything that can be known before touching anything, reported all at once.

Read-only on both clusters. A policy that fails any check gets its problems listed in its status and
nothing else happens: no backup is written, no object is changed. The list is capped (the first
`MAX_LISTED` and "... and N more"), so that a policy naming thousands of missing namespaces cannot grow
its status towards etcd's object size limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shared.fan_out import FanOut, one_by_one
from shared.kinds.rbac import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, wildcard_bindings
from shared.kube import ApiResource, ClusterLimits, Kube, KubeError
from shared.kube.connect import MemberUnavailable, connect_member, member_identity
from shared.markers import virtual_node
from shared.models import PromotePolicySpec
from shared.selection import select_namespaces, select_types

MAX_LISTED = 50
"""Problems (and warnings) listed in a policy's status; the rest are counted in a last line."""


_MINOR_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


@dataclass
class PrecheckResult:
    namespaces: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    member_id: str | None = None
    """The member's identity (its kube-system namespace UID), recorded with the run."""
    warnings: list[str] = field(default_factory=list)
    """Let through, but worth a person's attention (status.precheckWarnings)."""
    error_count: int = 0
    """How many problems were found: `errors` lists at most `MAX_LISTED` of them, then a line counting
    the others."""

    @property
    def ok(self) -> bool:
        return not self.errors


def capped(lines: list[str], limit: int = MAX_LISTED) -> list[str]:
    """The first `limit` lines, then one saying how many more there are."""
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit], f"… and {len(lines) - limit} more"]


def precheck(
    control_plane: Kube,
    spec: PromotePolicySpec,
    protected: list[str],
    local_kubeconfigs: dict[str, str] | None = None,
    member_limits: ClusterLimits | None = None,
    fan_out: FanOut = one_by_one,
) -> PrecheckResult:
    """Read-only checks; the member is connected afresh (its Cluster object may have changed since a
    worker cached a connection), under the installation's limits when the watcher passes them. The
    control plane is asked about every chosen namespace through `fan_out`: one request each, so a
    policy of a thousand namespaces waits for a thousand round trips unless they run at once.

    `errors` and `warnings` come back capped for the status; `error_count` is the full count."""
    result = _precheck(control_plane, spec, protected, local_kubeconfigs, member_limits, fan_out)
    result.error_count = len(result.errors)
    result.errors, result.warnings = capped(result.errors), capped(result.warnings)
    return result


def _precheck(
    control_plane: Kube,
    spec: PromotePolicySpec,
    protected: list[str],
    local_kubeconfigs: dict[str, str] | None,
    member_limits: ClusterLimits | None,
    fan_out: FanOut,
) -> PrecheckResult:
    result = PrecheckResult()
    cluster = spec.cluster_name
    nodes = control_plane.discovery.resolve("nodes")
    if control_plane.get(nodes, "", virtual_node(cluster)) is None:
        result.errors.append(
            f'virtual node "{virtual_node(cluster)}" not found in the control plane: is '
            f'cluster "{cluster}" joined to Kosmos in "ALL" leaf mode?'
        )
    try:
        member = connect_member(control_plane, cluster, local_kubeconfigs, limits=member_limits)
    except (MemberUnavailable, KubeError, OSError) as exc:
        result.errors.append(f'cannot reach member cluster "{cluster}": {exc}')
        return result
    with member:
        try:
            member_version = member.version().get("gitVersion", "")
            result.member_id = member_identity(member)
        except (KubeError, OSError) as exc:
            result.errors.append(f'cannot reach member cluster "{cluster}": {exc}')
            return result
        control_plane_version = control_plane.version().get("gitVersion", "")
        result.warnings += version_skew_warnings(member_version, control_plane_version)
        return _check_member(control_plane, member, spec, protected, result, fan_out)


def version_skew_warnings(member_version: str, control_plane_version: str) -> list[str]:
    """Clusters of different minor versions may encode or default pod templates otherwise, so a
    StatefulSet's revision could get another name in the control plane: its pods would be rolled. The
    backup step checks each StatefulSet and refuses those; said here so that nobody is surprised."""
    member_minor, control_plane_minor = _minor(member_version), _minor(control_plane_version)
    if member_minor is None or control_plane_minor is None or member_minor == control_plane_minor:
        return []
    return [
        f"the member runs Kubernetes {member_version}, the control plane {control_plane_version}: a "
        f"StatefulSet whose revision the control plane would name otherwise (its pods would be rolled) "
        f"fails its namespace, nothing changed"
    ]


def _minor(git_version: str) -> tuple[str, str] | None:
    match = _MINOR_VERSION.match(git_version)
    return (match.group(1), match.group(2)) if match else None


def _check_member(
    control_plane: Kube,
    member: Kube,
    spec: PromotePolicySpec,
    protected: list[str],
    result: PrecheckResult,
    fan_out: FanOut,
) -> PrecheckResult:
    namespaces = [ns["metadata"]["name"] for ns in member.list(member.discovery.resolve("namespaces"))]
    chosen, errors = select_namespaces(spec, namespaces, protected)
    result.errors += errors
    control_namespaces = control_plane.discovery.resolve("namespaces")
    # A protected namespace is refused already; that the control plane has one too is not a problem.
    candidates = [ns for ns in chosen if ns not in protected]
    found = fan_out(lambda namespace: control_plane.get(control_namespaces, "", namespace), candidates)
    for namespace, existing in zip(candidates, found, strict=True):
        if existing is not None and existing["metadata"].get("deletionTimestamp"):
            result.errors.append(
                f'namespace "{namespace}" is still being deleted in the control plane (a rollback deletes '
                f"the namespace it promoted, and the namespace controller removes it a few seconds later); "
                f"create the policy again once it is gone"
            )
        elif existing is not None:
            result.errors.append(
                f'namespace "{namespace}" already exists in the control plane; promote moves '
                f"a namespace that only the member has"
            )
    selected, type_errors = select_types(spec, member.discovery)
    result.errors += type_errors
    _check_wildcard_roles(member, spec, chosen, selected, result)
    result.namespaces = chosen
    return result


def _check_wildcard_roles(
    member: Kube,
    spec: PromotePolicySpec,
    namespaces: list[str],
    types: list[ApiResource],
    result: PrecheckResult,
) -> None:
    """A ServiceAccount bound cluster-wide to an all-powerful ClusterRole would be just as powerful in the
    control plane once backup copies its bindings: refused unless spec.allowWildcardRoles, then a warning."""
    if not namespaces or not any(t.group_resource == "serviceaccounts" for t in types):
        return  # no ServiceAccount is promoted, so no binding is copied
    try:
        bindings = member.list(member.discovery.resolve(CLUSTER_ROLE_BINDINGS))
        roles = member.discovery.resolve(CLUSTER_ROLES)
        accounts = member.discovery.resolve("serviceaccounts")
        found = wildcard_bindings(set(namespaces), bindings, lambda name: member.get(roles, "", name))
        found = [f for f in found if member.get(accounts, f.namespace, f.account) is not None]
    except (KubeError, OSError) as exc:
        result.errors.append(f"cannot read the member's ClusterRoleBindings and ClusterRoles: {exc}")
        return
    if spec.allow_wildcard_roles:
        result.warnings += [f.warning() for f in found]
    else:
        result.errors += [f.problem() for f in found]
