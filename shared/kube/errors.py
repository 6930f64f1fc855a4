"""Errors of the Kubernetes API as exceptions callers can branch on without parsing HTTP.

kube-apiserver answers failures with a `metav1.Status` body; its `reason` separates cases that share a
status code (409 is both AlreadyExists and a resourceVersion Conflict), so the class is chosen from both.
Every message names the object and the cluster, because promote talks to two clusters at once and a bare
"not found" does not say which side is missing what.
"""

from __future__ import annotations

from typing import Any

import orjson


class KubeError(Exception):
    """A request the API server refused, or could not be sent at all (`status` 0)."""

    def __init__(self, status: int, reason: str, message: str, *, target: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.target = target
        """What was addressed, e.g. `deployments.apps shop/web on member1`."""
        super().__init__(f"{target}: {message}" if target else message)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its fields: Celery hands a failed task's exception on only if it pickles, and
        otherwise wraps it, so a status would name `UnpickleableExceptionWrapper` instead of the error."""
        return _restore, (type(self), self.status, self.reason, self.message, self.target)


class NotFound(KubeError):
    """404: the object (or its whole type) does not exist."""


class AlreadyExists(KubeError):
    """409 AlreadyExists: a create met an object of the same name."""


class Conflict(KubeError):
    """409 for anything else (stale resourceVersion, failed uid precondition): re-read and decide again."""


class Invalid(KubeError):
    """422: the server's validation rejected the object."""


class Forbidden(KubeError):
    """403: the credentials lack RBAC permission (or admission forbade the request)."""


class Unreachable(KubeError):
    """No answer after every retry: connection refused or reset, or the request timed out."""

    def __init__(self, message: str, *, target: str = "") -> None:
        super().__init__(0, "Unreachable", message, target=target)


def _restore(cls: type[KubeError], status: int, reason: str, message: str, target: str) -> KubeError:
    error = cls.__new__(cls)
    KubeError.__init__(error, status, reason, message, target=target)
    return error


_BY_STATUS: dict[int, type[KubeError]] = {404: NotFound, 422: Invalid, 403: Forbidden}


def error_from_response(status: int, http_reason: str, body: bytes, *, target: str) -> KubeError:
    """The exception for a failed response, from its Status body when it has one (proxies send HTML)."""
    status_body = _status_body(body)
    reason = str(status_body.get("reason") or http_reason or "Unknown")
    message = str(status_body.get("message") or _excerpt(body) or f"HTTP {status} {http_reason}")
    if status == 409:
        cls: type[KubeError] = AlreadyExists if reason == "AlreadyExists" else Conflict
    else:
        cls = _BY_STATUS.get(status, KubeError)
    return cls(status, reason, message, target=target)


def _status_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) and parsed.get("kind") == "Status" else {}


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."
