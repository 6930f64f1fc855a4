"""Custom resources, their definitions, and every kind no other rule names.

The default rule copies an object as it is (generic strip, our annotation) and touches nothing in the
member: ingresses, PodDisruptionBudgets, HPAs and custom resources. A custom resource brings its CRD,
which the rebuild creates first (`shared.ordering`).

Custom resources that *own* workloads (an operator's CR owning a Deployment, or pods directly) are not
handled yet: the operator in the member would re-create what detach deletes, or go on managing the pods
the control plane's copies stand for. Until they are, the workload and pod rules keep whatever such an
owner controls in the member (`helpers.stays_with_its_controller`).
"""

from __future__ import annotations

from shared.items import GroupResource, ItemRef, Obj
from shared.kinds.registry import RULES, Catalog, KindRule

CRDS = GroupResource("customresourcedefinitions.apiextensions.k8s.io")


@RULES.register_default
class DefaultRule(KindRule):
    def related(self, obj: Obj, catalog: Catalog | None = None) -> list[ItemRef]:
        """The CRD serving this object's kind (`<plural>.<group>`, which only discovery knows: hence the
        catalog), None for built-in kinds. Raises without a catalog, rather than silently back up a custom
        resource without its definition (the original's backups could be silently incomplete:
        docs/design.md#original-kosmos-promote)."""
        if catalog is None:
            raise ValueError("the dependencies of a custom resource need a catalog of CRDs")
        name = catalog.crd_for(obj["apiVersion"], obj["kind"])
        return [ItemRef(CRDS, "", name)] if name else []


@RULES.register
class CustomResourceDefinitionRule(KindRule):
    """Plain copy; `status` (with `Established`) goes, and the control plane establishes it itself."""

    group_resources = (CRDS,)
