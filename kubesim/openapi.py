"""`/openapi/v3` and `/openapi/v2`: enough of the API's OpenAPI documents for kubectl.

`kubectl apply -f` (validation `strict`, its default) first asks the OpenAPI v3 document of the object's
group-version whether its PATCH operation takes the `fieldValidation` parameter; when it does, kubectl
leaves validation to the server, otherwise it downloads the schemas to validate itself, and without
either it stops with "failed to download openapi". So every served type gets its paths with the verbs,
`x-kubernetes-group-version-kind` and `x-kubernetes-action` extensions and that parameter, and a schema
named as kube-apiserver names it: a custom resource's is its CRD's `openAPIV3Schema`; a built-in kind's
is an open object (the simulator does not carry the Go types' schemas, so `kubectl explain` shows
little). The v2 document has the same content in Swagger 2.0 form, served as JSON only (kubectl asks
for v2 in protobuf, and only when v3 is missing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from kubesim.objects import Obj
from kubesim.resources import ResourceRegistry, ResourceType
from kubesim.store import Store

_API_GROUP_PREFIX = {"apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions"}
_WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation")


def definition_name(rt: ResourceType) -> str:
    """`io.k8s.api.core.v1.Pod`, `io.k8s.api.apps.v1.Deployment`, `com.example.v1.Widget` (a CRD's
    group reversed)."""
    if rt.custom:
        return ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])
    prefix = _API_GROUP_PREFIX.get(rt.group, f"io.k8s.api.{rt.group.split('.')[0] or 'core'}")
    return f"{prefix}.{rt.version}.{rt.kind}"


def group_version_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema(store: Store, rt: ResourceType) -> dict[str, Any]:
    gvk = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
    base: dict[str, Any] = {"type": "object", "x-kubernetes-group-version-kind": gvk}
    if rt.custom:
        crds = store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        crd = store.get(crds, "", f"{rt.plural}.{rt.group}") or {}
        for entry in (crd.get("spec") or {}).get("versions") or []:
            if entry.get("name") == rt.version:
                return {**((entry.get("schema") or {}).get("openAPIV3Schema") or {}), **base}
        return base
    return {
        **base,
        "description": f"{rt.kind} of {rt.api_version}.",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def _operation(rt: ResourceType, action: str, verb: str, ref: dict[str, Any], v3: bool) -> dict[str, Any]:
    parameters = []
    if verb in ("post", "put", "patch"):
        for name in _WRITE_PARAMETERS:
            parameter: dict[str, Any] = {"name": name, "in": "query", "uniqueItems": True}
            parameter |= {"schema": {"type": "string"}} if v3 else {"type": "string"}
            parameters.append(parameter)
    response = {"description": "OK"} | (
        {"content": {"application/json": {"schema": ref}}} if v3 else {"schema": ref}
    )
    return {
        "operationId": f"{action}{rt.kind}",
        "parameters": parameters,
        "responses": {"200": response},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "kind": rt.kind, "version": rt.version},
    }


def _paths(rt: ResourceType, ref: dict[str, Any], v3: bool) -> dict[str, Any]:
    root = "/" + group_version_path(rt.group, rt.version)
    collection = f"{root}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{root}/{rt.plural}"
    return {
        collection: {
            "get": _operation(rt, "list", "get", ref, v3),
            "post": _operation(rt, "post", "post", ref, v3),
            "delete": _operation(rt, "deletecollection", "delete", ref, v3),
        },
        f"{collection}/{{name}}": {
            "get": _operation(rt, "get", "get", ref, v3),
            "put": _operation(rt, "put", "put", ref, v3),
            "patch": _operation(rt, "patch", "patch", ref, v3),
            "delete": _operation(rt, "delete", "delete", ref, v3),
        },
    }


def _unique(types: Iterable[ResourceType]) -> list[ResourceType]:
    return sorted({(rt.group, rt.version, rt.plural): rt for rt in types}.values(), key=lambda rt: rt.plural)


def v3_document(store: Store, group: str, version: str) -> Obj:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in _unique(store.registry.in_group_version(group, version)):
        name = definition_name(rt)
        schemas[name] = _schema(store, rt)
        paths |= _paths(rt, {"$ref": f"#/components/schemas/{name}"}, v3=True)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def v3_index(store: Store) -> Obj:
    """The discovery document listing each group-version's document, with a content hash in its URL."""
    registry: ResourceRegistry = store.registry
    paths = {}
    for group, versions in sorted(registry.group_versions().items()):
        for version in versions:
            path = group_version_path(group, version)
            digest = hashlib.sha512(json.dumps(v3_document(store, group, version), sort_keys=True).encode())
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.hexdigest()[:128].upper()}"}
    return {"paths": paths}


def v2_document(store: Store, version: str) -> Obj:
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for rt in _unique(store.registry):
        name = definition_name(rt)
        definitions[name] = _schema(store, rt)
        paths |= _paths(rt, {"$ref": f"#/definitions/{name}"}, v3=False)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": paths,
        "definitions": definitions,
    }
