"""Times as Kubernetes writes them (metav1.Time: UTC, whole seconds, 'Z'), for every model we serialise."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer


def as_utc(value: datetime) -> datetime:
    """Treat naive times as UTC: Kubernetes times are UTC, and local time would shift on every host."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


Rfc3339Time = Annotated[
    datetime, AfterValidator(as_utc), PlainSerializer(rfc3339, return_type=str, when_used="json")
]


def parse_rfc3339(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
