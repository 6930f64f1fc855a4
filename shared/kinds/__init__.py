"""Per-kind promote rules: what happens to each kind of object in backup, detach, rebuild and rollback.

Importing this package registers every rule in `RULES`; `RULES.for_(group_resource)` returns the rule
for a type (the default rule for types no module names, custom resources included). Pure: no I/O.
"""

from shared.kinds import batch, config, custom, pods, rbac, services, storage, workloads  # noqa: F401 (registers)
from shared.kinds.decisions import decide_all
from shared.kinds.registry import (
    CREATED_BY_CONTROL_PLANE,
    MANAGED_BY_CLUSTER,
    RULES,
    Catalog,
    Context,
    Decision,
    DetachKind,
    DetachStep,
    KindRule,
    Move,
    RuleRegistry,
    StaticCatalog,
)
from shared.kinds.storage import reclaim_restore_patch, retain_patch

__all__ = [
    "CREATED_BY_CONTROL_PLANE",
    "MANAGED_BY_CLUSTER",
    "RULES",
    "Catalog",
    "Context",
    "Decision",
    "DetachKind",
    "DetachStep",
    "KindRule",
    "Move",
    "RuleRegistry",
    "StaticCatalog",
    "decide_all",
    "reclaim_restore_patch",
    "retain_patch",
]
