"""CEL validation rules (`x-kubernetes-validations`) of CRD schemas, run on custom resources as
kube-apiserver runs them (on by default since Kubernetes 1.25).

A control plane whose CRD carries rules refuses a rebuilt custom resource that breaks one, and the
PromotePolicy CRD's own transition rules refuse an edit of a running policy's spec; promote has to be
tested against both. Each rule is evaluated with `self` bound to the value at its schema node and, on an
update, `oldSelf` to the value at the same place in the stored object. As in the apiserver:

- a transition rule (one naming `oldSelf`) runs only on an update whose stored object has the value;
- a rule not naming `oldSelf` is skipped where the value is unchanged (validation ratcheting, on by
  default since 1.30), so an object stored before a rule existed can still be updated elsewhere;
- a rule that is false is a field error at its node, or at its `fieldPath`, worded by its
  `messageExpression`, else its `message`, else `failed rule: <rule>`, and typed by its `reason`; a rule
  whose evaluation fails refuses the object too; a null value is not validated.

Rules are compiled when their CRD is written (a rule that does not parse refuses the CRD) and evaluated
by the `cel` package (the Rust cel-interpreter: standard CEL and its macros). Not emulated: Kubernetes'
own CEL libraries (lists, regex `find`, `url`, `quantity`, `ip`/`cidr`, `format`, the extended string
functions): a rule calling one is not evaluated and the simulator logs it once; the cost budget;
`optionalOldSelf`; correlation of list items, so a transition rule under `items` never runs.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import cel

from kubesim import errors

Schema = Mapping[str, Any]
Problem = tuple[str, str]

log = logging.getLogger(__name__)

NOT_STORED = object()
"""The old value where there is none: a create, or a field the stored object lacks."""

_NAMES_OLD_SELF = re.compile(r"\boldSelf\b")
_UNKNOWN_FUNCTION = "Undefined variable or function"
_REASONS = {"FieldValueForbidden": "Forbidden", "FieldValueRequired": "Required value"}
"""How a rule's `reason` words its field error (FieldValueDuplicate prints the value alone)."""


@functools.lru_cache(maxsize=4096)
def _program(rule: str) -> cel.Program:
    return cel.compile(rule)


def rule_problems(value: Any, schema: Schema, path: str = "", old: Any = NOT_STORED) -> list[Problem]:
    """The field errors of every rule in `schema` and below it, depth first; `old` is the stored object on
    an update."""
    if value is None:
        return []
    problems = [
        problem
        for rule in schema.get("x-kubernetes-validations") or []
        if (problem := _check(rule, value, old, schema, path)) is not None
    ]
    if isinstance(value, dict):
        properties: Mapping[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key) or (additional if isinstance(additional, dict) else None)
            if child is not None:
                before = old.get(key, NOT_STORED) if isinstance(old, dict) else NOT_STORED
                problems += rule_problems(item, child, f"{path}.{key}" if path else key, before)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems += rule_problems(item, schema["items"], f"{path}[{index}]")
    return problems


def compile_problems(schema: Schema, path: str) -> list[Problem]:
    """The rules in a CRD version's schema that do not compile, as the CRD's field errors."""
    problems = []
    for where, rule in _rules(schema, path):
        try:
            _program(rule)
        except ValueError as error:
            problems.append((where, f"Invalid value: {errors.shown(rule)}: compilation failed: {error}"))
    return problems


def has_rules(schema: Schema) -> bool:
    return next(_rules(schema, ""), None) is not None


def _rules(schema: Schema, path: str) -> Iterator[tuple[str, str]]:
    for index, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        yield f"{path}.x-kubernetes-validations[{index}].rule", str(rule.get("rule", ""))
    for name, child in (schema.get("properties") or {}).items():
        yield from _rules(child, f"{path}.properties[{name}]")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _rules(schema[key], f"{path}.{key}")


def _check(rule: Mapping[str, Any], value: Any, old: Any, schema: Schema, path: str) -> Problem | None:
    text = str(rule.get("rule", ""))
    transition = _NAMES_OLD_SELF.search(text) is not None
    if transition and old is NOT_STORED:
        return None  # nothing to compare with: a create, or a field the stored object lacks
    if not transition and old == value:
        return None  # ratcheting: an unchanged value is not judged again
    context = {"self": value, "oldSelf": old} if transition else {"self": value}
    where = f"{path}.{rule['fieldPath'].lstrip('.')}" if rule.get("fieldPath") else path
    # Objects and lists are named by their type in the error, as the apiserver omits their value.
    shown = f'"{schema["type"]}"' if schema.get("type") in ("object", "array") else errors.shown(value)
    try:
        passed = _program(text).execute(context)
    except Exception as error:  # the interpreter raises KeyError, TypeError, RuntimeError, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if reason.startswith(_UNKNOWN_FUNCTION):
            _not_evaluated(text, reason)
            return None
        return where, f"Invalid value: {shown}: {_message(rule)}: {reason}"
    if passed is True:
        return None
    detail = _expressed(rule, context) or _message(rule)
    if rule.get("reason") == "FieldValueDuplicate":
        return where, f"Duplicate value: {shown}"
    prefix = _REASONS.get(str(rule.get("reason")))
    return where, f"{prefix}: {detail}" if prefix else f"Invalid value: {shown}: {detail}"


def _message(rule: Mapping[str, Any]) -> str:
    return str(rule.get("message") or "").strip() or f"failed rule: {rule.get('rule', '')}"


def _expressed(rule: Mapping[str, Any], context: dict[str, Any]) -> str:
    """The rule's `messageExpression`; empty (the `message` is used) when it fails or is not a string."""
    expression = rule.get("messageExpression")
    if not expression:
        return ""
    try:
        message = _program(str(expression)).execute(context)
    except Exception:  # the apiserver falls back to the static message
        return ""
    return message.strip() if isinstance(message, str) else ""


@functools.lru_cache(maxsize=256)
def _not_evaluated(rule: str, reason: str) -> None:
    """Logged once per rule: the simulator lacks a Kubernetes CEL library function it calls."""
    log.warning("CEL rule not evaluated (%s; kubesim lacks Kubernetes' CEL libraries): %s", reason, rule)
