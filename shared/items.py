"""How the core names one Kubernetes object: by group-resource, namespace and name.

Group-resources are spelled as kubectl and Velero spell them (`pods`, `deployments.apps`,
`clusterroles.rbac.authorization.k8s.io`), so backup paths, policy fields and logs all agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NewType

GroupResource = NewType("GroupResource", str)
Obj = dict[str, Any]


def group_resource(plural: str, group: str) -> GroupResource:
    return GroupResource(f"{plural}.{group}" if group else plural)


@dataclass(frozen=True, order=True, slots=True)
class ItemRef:
    group_resource: GroupResource
    namespace: str
    """Empty for cluster-scoped objects."""
    name: str

    @classmethod
    def of(cls, group_resource: str, obj: Obj) -> ItemRef:
        metadata = obj["metadata"]
        return cls(GroupResource(group_resource), metadata.get("namespace", ""), metadata["name"])

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.group_resource} {where}{self.name}"
