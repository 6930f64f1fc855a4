"""The log context of a worker's Celery tasks: which policy, namespace, run and step a line is about.

Here rather than in `shared/logs.py`, which knows nothing of Celery: a worker installs it once, and its
task threads (Celery's current task), the threads a task fans its API calls out to (the context the
task set when it started) and the worker's "Task … received" lines (the message's kwargs) are attributed.
"""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

from celery import Task, current_task
from celery.signals import setup_logging, task_postrun, task_prerun

from shared import logs

SHADOW = re.compile(r"^\w+\.\w+ [^ /]+/[^ /]+")
"""A message's shadow name, "backup.run promote-shop/shop-1 …" (services/pipeline.py): step first."""


def install() -> None:
    """Attribute task lines from now on, and keep Celery from replacing the root handlers."""
    if _task_record not in logs.CONTEXT_SOURCES:
        logs.CONTEXT_SOURCES[:0] = [_task_record, _received_record]
    setup_logging.connect(_keep_ours)
    task_prerun.connect(_task_started)
    task_postrun.connect(_task_ended)


def _task_record(record: logging.LogRecord) -> dict[str, str] | None:
    """Celery's current task in this thread (the threads pool keeps one task stack per thread)."""
    if current_task and current_task.name and current_task.name.startswith("kosmos_promote."):
        return logs.task_context(current_task.name, current_task.request.kwargs)
    return None


def _received_record(record: logging.LogRecord) -> dict[str, str] | None:
    """Celery's "Task … received" line carries the message: its (shadow) name and kwargs, as a repr."""
    data = getattr(record, "data", None)
    if not isinstance(data, dict):
        return None
    name = str(data.get("name", ""))
    if name.startswith("kosmos_promote.") or SHADOW.match(name):
        return logs.task_context(name.split(" ")[0], _literal(data.get("kwargs")))
    return None


def _literal(text: Any) -> Any:
    """A message's kwargs repr (references and scalars only, as every task takes) back to a dict."""
    try:
        return ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _task_started(task: Task | None = None, kwargs: Any = None, **_: Any) -> None:
    if task is not None and task.name and task.name.startswith("kosmos_promote."):
        logs.set_task(logs.task_context(task.name, kwargs))


def _task_ended(**_: Any) -> None:
    logs.set_task(None)


def _keep_ours(**_: Any) -> None:
    """A receiver of Celery's `setup_logging` tells the worker not to replace the root handlers with its
    own format; ours are in place already."""
