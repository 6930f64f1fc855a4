"""Logging of every process: JSON lines for log collectors, readable text on a terminal.

Each line says which policy, namespace, run and step it is about when that is known, so one namespace's
story can be pulled out of many workers' logs: inside a Celery task these come from the task's own
arguments (every task carries the references policy, namespace, run id), in the watcher from the
PromotePolicy kopf is handling. Secret values must never reach a log: messages carry references only,
and as a last line of defence the data of any Secret body that does end up in a message is masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from celery import current_task
from celery.signals import setup_logging

CONTEXT = ("policy", "namespace", "run", "step")
CONTEXT_KWARGS = (("policy", "policy"), ("namespace", "namespace"), ("run", "run_id"))
"""Log field -> the task keyword argument it comes from (every task takes its references by keyword)."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"

_SECRET_KIND = re.compile(r"""["']kind["']\s*:\s*["']Secret["']""")
_SECRET_DATA = re.compile(r"""(["'])(data|stringData)\1\s*:\s*\{[^{}]*\}""")
_STRING_VALUE = re.compile(r"""(:\s*)(["'])(?:\\.|(?!\2).)*\2""")
_installed: list[logging.Handler] = []


class TaskContext(logging.Filter):
    """Adds policy, namespace, run and step to each record, from the Celery task running in this thread
    (the threads pool keeps one task stack per thread) or from kopf's reference to the object."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context(record).items():
            setattr(record, key, value)
        return True


def _context(record: logging.LogRecord) -> dict[str, str]:
    if current_task and current_task.name and current_task.name.startswith("kosmos_promote."):
        kwargs = current_task.request.kwargs or {}
        context = {key: str(kwargs[arg]) for key, arg in CONTEXT_KWARGS if arg in kwargs}
        return {**context, "step": current_task.name.removeprefix("kosmos_promote.")}
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict) and ref.get("kind") == "PromotePolicy" and ref.get("name"):
        return {"policy": ref["name"]}
    return {}


class RedactSecrets(logging.Filter):
    """Masks the values under `data`/`stringData` when a message (or its traceback) holds a Secret body,
    whether printed as JSON or as a Python dict. Keys stay, so the line still says what was there."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed call: the handler reports it as a logging error, not the caller
        if _SECRET_KIND.search(message):
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and _SECRET_KIND.search(record.exc_text):
            record.exc_text = redact(record.exc_text)
        return True


def redact(text: str) -> str:
    def mask(block: re.Match[str]) -> str:
        return _STRING_VALUE.sub(lambda value: f"{value[1]}{value[2]}{MASK}{value[2]}", block[0])

    return _SECRET_DATA.sub(mask, text)


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, component, then the context."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "component": self.component,
        }
        line.update({key: getattr(record, key) for key in CONTEXT if hasattr(record, key)})
        if record.exc_info or record.exc_text:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class Text(logging.Formatter):
    """The usual one-line format, with the context in brackets when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{key}={getattr(record, key)}" for key in CONTEXT if hasattr(record, key))
        text = super().format(record)
        return f"{text} [{context}]" if context else text


def configure(component: str, stream: TextIO | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send every log record of this process to `stream` (stderr by default): JSON lines unless it is a
    terminal. Calling it again (the CLI first, then the service it starts) replaces the handler, which
    is returned so that a caller (a test) can take it away again."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskContext())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(Text(TEXT_FORMAT) if stream.isatty() else JsonLines(component))
    root = logging.getLogger()
    for previous in _installed:
        root.removeHandler(previous)
    _installed[:] = [handler]
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings (Celery's, say) as records, so as JSON too
    setup_logging.connect(_keep_ours)
    return handler


def _keep_ours(**_: Any) -> None:
    """A receiver of Celery's `setup_logging` tells the worker not to replace the root handlers with its
    own format; ours are in place already."""
