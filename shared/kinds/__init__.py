"""Per-kind promote rules: what happens to each kind of object in backup, detach, rebuild and rollback.

Importing this package imports every module in it, and so registers every rule in `RULES`: adding a kind
is adding one module with its rule (see `coordination.py`). `RULES.for_(group_resource)` returns the rule
for a type (the default rule for types no module names, custom resources included). Pure: no I/O.
"""

import importlib
import pkgutil

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

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

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
