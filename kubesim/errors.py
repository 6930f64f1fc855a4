"""API errors with the `Status` bodies kube-apiserver sends, so clients branch on them unchanged."""

from __future__ import annotations

import json
from typing import Any

from kubesim.resources import ResourceType


class ApiError(Exception):
    """An error the server answers with a `metav1.Status` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found', details=_details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.group_resource} "{name}" already exists', details=_details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str | None = None) -> ApiError:
    message = (
        why or "the object has been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {message}',
        details=_details(rt, name),
    )


_CAUSE_REASONS = (
    ("Required value", "FieldValueRequired"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Duplicate value", "FieldValueDuplicate"),
    ("Not found", "FieldValueNotFound"),
    ("Forbidden", "FieldValueForbidden"),
    ("Too long", "FieldValueTooLong"),
    ("Too many", "FieldValueTooMany"),
)
"""field.ErrorType strings and the StatusCause reasons they become; anything else is "Invalid value"."""


def shown(value: Any) -> str:
    """A value as field errors print it: strings quoted, scalars bare, the rest as JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def causes(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """`status.details.causes` of (field, message) pairs, each reason read from its message's prefix as
    apimachinery's field errors write it ("Required value", "Unsupported value: ..."), default Invalid."""
    return [
        {
            "reason": next(
                (r for prefix, r in _CAUSE_REASONS if message.startswith(prefix)), "FieldValueInvalid"
            ),
            "message": message,
            "field": path,
        }
        for path, message in pairs
    ]


def invalid_kind(
    kind: str, name: str, pairs: list[tuple[str, str]], group: str = "", *, details_kind: str = ""
) -> ApiError:
    """422 Invalid as `errors.NewInvalid` words it: one error inline, several as a bracketed list.
    Custom resources are named by qualified kind in the message (`Widget.example.com`), by kind in
    the details (`details_kind`)."""
    texts = [f"{path}: {message}" for path, message in pairs]
    text = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details |= {"kind": details_kind or kind, "causes": causes(pairs)}
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details=details)


def invalid(rt: ResourceType, name: str, pairs: list[tuple[str, str]]) -> ApiError:
    """422 Invalid; `pairs` are (field, message) pairs as the apiserver's field errors."""
    return invalid_kind(rt.kind, name, pairs, rt.group)


def forbidden(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        403, "Forbidden", f'{rt.group_resource} "{name}" is forbidden: {why}', details=_details(rt, name)
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def request_entity_too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def etcd_request_too_large() -> ApiError:
    """What kube-apiserver passes on when etcd refuses to store an object: a 500, not a 4xx (kubernetes
    issue 112152), so a client that retries server errors retries this one in vain."""
    return ApiError(500, "InternalError", "etcdserver: request is too large")


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
