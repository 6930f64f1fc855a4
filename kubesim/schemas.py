"""Structural schemas of CustomResourceDefinitions, enforced on custom resources as kube-apiserver does.

A control plane that already holds a CRD with a stricter schema refuses a rebuilt custom resource with
422 Invalid, and silently drops fields its schema does not know; promote has to be tested against both.
On every create and update of a custom resource (main resource and status), in the apiserver's order:
unknown fields are pruned (except under `x-kubernetes-preserve-unknown-fields`, and `apiVersion`, `kind`,
`metadata` at the root and in embedded resources), nulls of non-nullable fields are dropped, `default`s
are applied, and the object is validated: `type` (with `x-kubernetes-int-or-string`), `required`,
`enum`, `minimum`/`maximum` (and their exclusive forms), `minLength`/`maxLength`, `minItems`/
`maxItems`, `pattern`. Unknown fields follow the request's `fieldValidation` (Strict: 400; Warn, the
default: a Warning header per field; Ignore). Errors are the field errors kube-openapi reports, converted
as apiextensions does (`Required value`, `Unsupported value`, `Too long`, `Too many`, else `Invalid
value`), under the qualified kind (`Widget.example.com "w1" is invalid: ...`).

The CEL rules (`x-kubernetes-validations`) run next (kubesim/cel_rules.py). Not emulated: `format`,
list-type/map-keys uniqueness, `oneOf`/`anyOf`/`allOf`/`not`, metadata validation, and the ratcheting of
these checks on unchanged fields (the CEL rules are ratcheted).
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Mapping
from typing import Any

from kubesim import errors
from kubesim.cel_rules import NOT_STORED, has_rules, rule_problems
from kubesim.objects import Obj, clone
from kubesim.store import AdmissionRequest

Schema = Mapping[str, Any]
Problem = tuple[str, str]

_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_GO_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return _GO_TYPES.get(type(value), "object")


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


field_validation: contextvars.ContextVar[str] = contextvars.ContextVar("kubesim_field_validation", default="")
"""The request's `fieldValidation` (Strict, Warn, Ignore; empty means Warn), set by the server."""
warnings: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("kubesim_warnings", default=None)
"""Warning headers the request's answer must carry (the server installs a list per request)."""


def unknown_fields(value: Any, schema: Schema, path: str = "", *, root: bool = False) -> list[str]:
    """The paths pruning would drop, as `strict decoding error: unknown field "..."` names them."""
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
        keep = root or schema.get("x-kubernetes-embedded-resource")
        properties: Mapping[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        found = []
        for key, item in value.items():
            if keep and key in _ROOT_FIELDS:
                continue
            if key in properties:
                found += unknown_fields(item, properties[key], _child(path, key))
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, _child(path, key))
            elif additional is not True and not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(_child(path, key))
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            p for i, item in enumerate(value) for p in unknown_fields(item, schema["items"], f"{path}[{i}]")
        ]
    return []


def prune_and_default(value: Any, schema: Schema, *, root: bool = False) -> Any:
    """The object with unknown fields and non-nullable nulls removed and defaults applied."""
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
        keep = root or schema.get("x-kubernetes-embedded-resource")
        properties: Mapping[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        result: dict[str, Any] = {}
        for key, item in value.items():
            if keep and key in _ROOT_FIELDS:
                result[key] = item
            elif key in properties:
                child = properties[key]
                if item is None and not child.get("nullable"):
                    continue
                result[key] = prune_and_default(item, child)
            elif isinstance(additional, dict):
                result[key] = prune_and_default(item, additional)
            elif additional is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                result[key] = item
        for key, child in properties.items():
            if key not in result and "default" in child:
                result[key] = prune_and_default(clone(child["default"]), child)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_and_default(item, schema["items"]) for item in value]
    return value


def validate(value: Any, schema: Schema, path: str = "") -> list[Problem]:
    """kube-openapi's checks of one value against one structural schema node, depth first."""
    if value is None:
        return [] if schema.get("nullable") else _type_problem(value, schema, path)
    problems = _type_problem(value, schema, path)
    if problems:
        return problems
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        return [(path, f"Unsupported value: {errors.shown(value)}: supported values: {allowed}")]
    if isinstance(value, int | float) and not isinstance(value, bool):
        problems += _bounds(value, schema, path)
    if isinstance(value, str):
        problems += _string(value, schema, path)
    if isinstance(value, list):
        problems += _array(value, schema, path)
    if isinstance(value, dict):
        problems += _object(value, schema, path)
    return problems


def _type_problem(value: Any, schema: Schema, path: str) -> list[Problem]:
    wanted = schema.get("type")
    actual = _type_name(value)
    if schema.get("x-kubernetes-int-or-string"):
        ok = actual in ("integer", "string")
        wanted = wanted or "integer-or-string"
    elif not wanted:
        return []
    else:
        ok = actual == wanted or (wanted == "number" and actual == "integer")
    if ok:
        return []
    detail = f"{path} in body must be of type {wanted}: {json.dumps(actual)}"
    return [(path, f"Invalid value: {errors.shown(value)}: {detail}")]


def _bounds(value: float, schema: Schema, path: str) -> list[Problem]:
    problems = []
    if "minimum" in schema:
        low, exclusive = schema["minimum"], schema.get("exclusiveMinimum", False)
        if value < low or (exclusive and value == low):
            relation = "greater than" if exclusive else "greater than or equal to"
            problems.append(
                (path, f"Invalid value: {errors.shown(value)}: {path} in body should be {relation} {low}")
            )
    if "maximum" in schema:
        high, exclusive = schema["maximum"], schema.get("exclusiveMaximum", False)
        if value > high or (exclusive and value == high):
            relation = "less than" if exclusive else "less than or equal to"
            problems.append(
                (path, f"Invalid value: {errors.shown(value)}: {path} in body should be {relation} {high}")
            )
    return problems


def _string(value: str, schema: Schema, path: str) -> list[Problem]:
    problems = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append((path, f"Too long: may not be longer than {schema['maxLength']}"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        detail = f"{path} in body should be at least {schema['minLength']} chars long"
        problems.append((path, f"Invalid value: {errors.shown(value)}: {detail}"))
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        detail = f"{path} in body should match '{schema['pattern']}'"
        problems.append((path, f"Invalid value: {errors.shown(value)}: {detail}"))
    return problems


def _array(value: list[Any], schema: Schema, path: str) -> list[Problem]:
    problems = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append((path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
    if "minItems" in schema and len(value) < schema["minItems"]:
        detail = f"{path} in body should have at least {schema['minItems']} items"
        problems.append((path, f"Invalid value: {errors.shown(value)}: {detail}"))
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            problems += validate(item, items, f"{path}[{index}]")
    return problems


def _object(value: dict[str, Any], schema: Schema, path: str) -> list[Problem]:
    problems = [
        (_child(path, name), "Required value") for name in schema.get("required") or [] if name not in value
    ]
    properties: Mapping[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if not path and key in _ROOT_FIELDS:
            continue
        if key in properties:
            problems += validate(item, properties[key], _child(path, key))
        elif isinstance(additional, dict):
            problems += validate(item, additional, _child(path, key))
    return problems


def version_schema(crd: Obj, version: str) -> Schema | None:
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version:
            return ((entry.get("schema") or {}).get("openAPIV3Schema")) or None
    return None


class CustomResourceSchemas:
    """Admission for custom resources: prune, default, validate against the served version's schema, then
    run its CEL validation rules (kubesim/cel_rules.py).

    On by default, as on every real server; per cluster, both can be switched off
    (`SimulatedCluster(crd_schemas=False)`, `PUT /_sim/crd-schemas`), the rules alone to play a server
    older than Kubernetes 1.25."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.validation_rules = True

    def __call__(self, request: AdmissionRequest) -> None:
        rt = request.rt
        if not self.enabled or not rt.custom or request.subresource not in (None, "status"):
            return
        crds = request.store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        crd = request.store.get(crds, "", f"{rt.plural}.{rt.group}")
        schema = version_schema(crd, rt.version) if crd is not None else None
        if schema is None:
            return
        self._unknown_fields(request, schema)
        pruned = prune_and_default(request.obj, schema, root=True)
        request.obj.clear()
        request.obj.update(pruned)
        problems = validate(request.obj, schema)
        if self.validation_rules:
            problems += _rule_problems(request, schema, problems)
        if problems:
            name = (request.obj.get("metadata") or {}).get("name", "")
            raise errors.invalid_kind(f"{rt.kind}.{rt.group}", name, problems, rt.group, details_kind=rt.kind)

    @staticmethod
    def _unknown_fields(request: AdmissionRequest, schema: Schema) -> None:
        """`fieldValidation`: Strict refuses unknown fields with 400, Warn (the default) names each one
        in a Warning header, Ignore drops them silently; all three prune them."""
        mode = field_validation.get() or "Warn"
        unknown = [] if mode == "Ignore" else unknown_fields(request.obj, schema, root=True)
        if not unknown:
            return
        rt = request.rt
        if mode == "Strict":
            listed = ", ".join(f'unknown field "{path}"' for path in unknown)
            why = f"strict decoding error: {listed}"
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {why}'
            )
        pending = warnings.get()
        if pending is not None:
            pending += [f'unknown field "{path}"' for path in unknown]


_BLOCKING = ("Unsupported value", "Required value", "Too long", "Too many")
_RULES_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; correct the existing errors to "
    "complete validation"
)


def _rule_problems(request: AdmissionRequest, schema: Schema, found: list[Problem]) -> list[Problem]:
    """The CEL rules' field errors; none are run on an object whose type errors or missing fields the
    schema already found (their rules would misjudge it), as the apiserver says."""
    if not has_rules(schema):
        return []
    if any(m.startswith(_BLOCKING) or " in body must be of type " in m for _, m in found):
        return [("<nil>", f"Invalid value: null: {_RULES_NOT_CHECKED}")]
    old = request.old if request.operation == "UPDATE" and request.old is not None else NOT_STORED
    return rule_problems(request.obj, schema, old=old)
