"""CustomResourceDefinitions: names accepted, Established, served; deleted CRDs take their objects along."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from kubesim import errors
from kubesim.cel_rules import compile_problems
from kubesim.controllers.base import Controller
from kubesim.objects import Obj, clone, is_terminating, now_rfc3339
from kubesim.resources import ResourceType
from kubesim.store import AdmissionRequest, WatchEvent

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def served_types(crd: Obj) -> list[ResourceType]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                has_status="status" in (version.get("subresources") or {}),
                custom=True,
                categories=tuple(names.get("categories") or ()),
            )
        )
    return types


def validate_crd(request: AdmissionRequest) -> None:
    """The checks that make a CRD usable at all, and its CEL rules compiled; the full structural-schema
    validation is not emulated."""
    if request.rt.plural != "customresourcedefinitions" or request.subresource:
        return
    crd = request.obj
    name = crd.get("metadata", {}).get("name", "")
    spec: dict[str, Any] = crd.get("spec") or {}
    names = spec.get("names") or {}
    problems = [(f"spec.{field}", "Required value") for field in ("group", "scope") if not spec.get(field)]
    problems += [
        (f"spec.names.{field}", "Required value") for field in ("plural", "kind") if not names.get(field)
    ]
    if spec.get("scope") not in (None, "", "Namespaced", "Cluster"):
        problems.append(("spec.scope", f'Unsupported value: "{spec.get("scope")}"'))
    if not problems and name != f"{names['plural']}.{spec['group']}":
        problems.append(
            ("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        )
    versions = spec.get("versions") or []
    if not versions:
        problems.append(("spec.versions", "Required value"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        problems.append(
            ("spec.versions", "Invalid value: must have exactly one version marked as storage version")
        )
    for index, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if isinstance(schema, dict):
            problems += compile_problems(schema, f"spec.versions[{index}].schema.openAPIV3Schema")
    if problems:
        raise errors.invalid(request.rt, name, problems)
    if request.operation == "CREATE":
        finalizers = crd["metadata"].setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)


class CustomResourceDefinitionController(Controller):
    name = "apiextensions-controller"
    watches = ("customresourcedefinitions.apiextensions.k8s.io",)

    def keys_for(self, event: WatchEvent) -> Iterable[Hashable]:
        return [event.obj["metadata"]["name"]]

    def reconcile(self, key: Hashable) -> float | None:
        crds = self.type("apiextensions.k8s.io", "customresourcedefinitions")
        crd = self.store.get(crds, "", str(key))
        registry = self.store.registry
        if crd is None:
            return None
        types = served_types(crd)
        if is_terminating(crd):
            for rt in types:
                for obj in self.store.list(rt):
                    meta = obj["metadata"]
                    if not is_terminating(obj):
                        self.store.delete(rt, meta.get("namespace", ""), meta["name"])
                if self.store.count(rt):
                    return 0.05
                registry.remove(rt)
            updated = clone(crd)
            updated["metadata"]["finalizers"] = [
                f for f in updated["metadata"].get("finalizers", []) if f != CLEANUP_FINALIZER
            ]
            self.store.update(crds, updated)
            return None
        for rt in types:
            registry.add(rt)
        names = crd["spec"]["names"]
        accepted = {
            "plural": names["plural"],
            "singular": names.get("singular") or names["kind"].lower(),
            "kind": names["kind"],
            "listKind": names.get("listKind") or f"{names['kind']}List",
        }
        for optional in ("shortNames", "categories"):
            if names.get(optional):
                accepted[optional] = names[optional]
        now = now_rfc3339()
        status = {
            "acceptedNames": accepted,
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
        }
        current = crd.get("status") or {}
        if current.get("acceptedNames") != accepted or not current.get("conditions"):
            self.store.write_status(crds, crd, status)
        return None
