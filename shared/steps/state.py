"""The durable state of one namespace's run, kept beside its backup on the shared volume.

Redis holds live progress and can be lost; this file survives it and any worker crash. It records the
one fact forward steps must respect: once a namespace is being rolled back, a late or redelivered
forward task must not rebuild what the rollback is removing.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from celery.exceptions import Ignore

from shared.backup import write_atomically

FILE = "state.json"
ROLLING_BACK = "rolling-back"
ROLLED_BACK = "rolled-back"


def write(root: Path, phase: str, **details: str) -> None:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(root / FILE, orjson.dumps({"phase": phase, **details}))


def read(root: Path) -> dict[str, str]:
    path = root / FILE
    return orjson.loads(path.read_bytes()) if path.exists() else {}


def rolling_back(root: Path) -> bool:
    return read(root).get("phase") in (ROLLING_BACK, ROLLED_BACK)


def halt_if_rolling_back(root: Path) -> None:
    """Called first by every forward task: a redelivered or late task must not rebuild what a rollback
    is removing. Celery's Ignore ends the task without a result or an errback."""
    if rolling_back(root):
        raise Ignore()
