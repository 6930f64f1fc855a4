"""Logging of every process: JSON lines for log collectors, readable text on a terminal.

Each line says which policy, namespace, run and step it is about when that is known, so one namespace's
story can be pulled out of many workers' logs: inside a Celery task these come from the task's own
arguments (every task carries the references policy, namespace, run id), also on the API threads a task
fans its requests out to and on the worker's "received" line; in the watcher from the PromotePolicy kopf
is handling. Secret values must never reach a log: messages carry references only, and as a last line of
defence the data of any Secret body that does end up in a message is masked.

`KPROMOTE_LOG_FORMAT` (json, text; unset: text on a terminal) and `KPROMOTE_LOG_LEVEL` choose the rest.
kopf's "Timer 'report' succeeded." (twice a second per policy) is a DEBUG line here, not INFO.

A worker also keeps each run's own log beside its backup (`RunLog`): every line about one namespace of
one run, and every write it sent to an API server, in `<backup dir>/<policy>/<namespace>/<run>/run.log`,
which `kpromote logs` reads as `velero backup logs` reads a backup's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

import orjson

CONTEXT = ("policy", "namespace", "run", "step")
CONTEXT_KWARGS = (("policy", "policy"), ("namespace", "namespace"), ("run", "run_id"))
"""Log field -> the task keyword argument it comes from (every task takes its references by keyword)."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"
RUN_LOG_NAME = "run.log"
WRITES = "kpromote.writes"
"""The logger of every write sent to an API server (`shared.kube.client`), at DEBUG: kept in the run
logs, on stderr only with KPROMOTE_LOG_LEVEL=DEBUG."""
RUN_LOG_LINE_MAX = 4000
"""Bytes per run-log line at most, newline included: below PIPE_BUF (4096), so that each line is one
`write` with O_APPEND, which several threads and worker processes appending to one file never split."""

_SECRET_KIND = re.compile(r"""["']kind["']\s*:\s*["']Secret["']""")
_SECRET_DATA = re.compile(r"""(["'])(data|stringData)\1\s*:\s*\{[^{}]*\}""")
_STRING_VALUE = re.compile(r"""(:\s*)(["'])(?:\\.|(?!\2).)*\2""")
_KOPF_TIMER = re.compile(r"^Timer '[^']*' succeeded\.$")
_installed: list[logging.Handler] = []
_format: list[str] = []
_task: ContextVar[dict[str, str] | None] = ContextVar("kpromote_task", default=None)
"""The running task's context, set when it starts: read by the threads its API calls fan out to (they
run in a copy of the task thread's context, `Runtime.fan_out`), where Celery has no current task."""


class TaskContext(logging.Filter):
    """Adds policy, namespace, run and step to each record: from the task running in this thread (see
    CONTEXT_SOURCES) or the one that fanned this thread's work out, or from kopf's reference to the
    object."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context(record).items():
            setattr(record, key, value)
        return True


ContextSource = Callable[[logging.LogRecord], "dict[str, str] | None"]
CONTEXT_SOURCES: list[ContextSource] = []
"""Where a process finds the task a record belongs to, asked in order (a worker adds its Celery task's:
services/task_logs.py); then the context a task set for its API threads, then kopf's object."""


def _context(record: logging.LogRecord) -> dict[str, str]:
    for source in CONTEXT_SOURCES:
        found = source(record)
        if found:
            return found
    running = _task.get()
    if running is not None:
        return running
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict) and ref.get("kind") == "PromotePolicy" and ref.get("name"):
        return {"policy": ref["name"]}
    return {}


def set_task(context: dict[str, str] | None) -> None:
    """The running task's context (None when it ends), for its lines and those of its API threads."""
    _task.set(context)


def task_context(name: str, kwargs: Any) -> dict[str, str]:
    """The log context of a task: its references (keyword arguments) and its step."""
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    context = {key: str(kwargs[arg]) for key, arg in CONTEXT_KWARGS if arg in kwargs}
    return {**context, "step": name.removeprefix("kosmos_promote.")}


class QuietTimers(logging.Filter):
    """kopf logs "Timer 'report' succeeded." at INFO twice a second for every policy: that line becomes
    DEBUG, shown only when the handler's level lets DEBUG through. Other kopf lines are untouched."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.INFO
            and record.name.startswith("kopf")
            and isinstance(record.msg, str)
            and _KOPF_TIMER.match(record.msg)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.level <= logging.DEBUG
        return True


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
        return json.dumps(self.fields(record), default=str)

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "component": self.component,
        }
        line.update({key: getattr(record, key) for key in CONTEXT if hasattr(record, key)})
        if record.exc_text:
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return line


class Text(logging.Formatter):
    """The usual one-line format, with the context in brackets when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{key}={getattr(record, key)}" for key in CONTEXT if hasattr(record, key))
        text = super().format(record)
        return f"{text} [{context}]" if context else text


def configure(
    component: str, stream: TextIO | None = None, level: int | str | None = None, format: str | None = None
) -> logging.Handler:
    """Send every log record of this process to `stream` (stderr by default), in `format` ("json" or
    "text"; by default KPROMOTE_LOG_FORMAT, else text on a terminal and JSON lines otherwise) from `level`
    up (by default KPROMOTE_LOG_LEVEL). Calling it again (the CLI first, then the service it starts)
    replaces the handler, which is returned so that a caller (a test) can take it away again."""
    stream = stream or sys.stderr
    # No caller lookup per record: no format here shows file, line or function, and a worker logs every
    # write it sends (the run log), where the lookup was a quarter of a line's CPU. The Logging HOWTO's
    # own advice ("Optimization": set logging._srcfile to None).
    logging._srcfile = None
    configured = _configured()
    format = format or configured.get("format") or ("text" if _isatty(stream) else "json")
    if not isinstance(level, int):
        level = logging.getLevelNamesMapping()[(level or configured.get("level") or "INFO").upper()]
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)  # the writes logger (WRITES) sends DEBUG lines for the run logs only
    handler.addFilter(QuietTimers(level))
    handler.addFilter(TaskContext())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(Text(TEXT_FORMAT) if format == "text" else JsonLines(component))
    root = logging.getLogger()
    for previous in _installed:
        root.removeHandler(previous)
    _installed[:] = [handler]
    _format[:] = [format]
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings (Celery's, say) as records, so as JSON too
    return handler


def current_format() -> str:
    """ "json" or "text": what `configure` chose last (json before it is called)."""
    return _format[0] if _format else "json"


def _configured() -> dict[str, str]:
    """KPROMOTE_LOG_FORMAT and KPROMOTE_LOG_LEVEL; nothing when the settings do not read (the process then
    stops with one line about them, written with the defaults)."""
    from pydantic import ValidationError

    from shared.settings import settings

    try:
        current = settings()
    except ValidationError:
        return {}
    return {"format": current.log_format or "", "level": current.log_level}


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class RunLog(logging.Handler):
    """Appends every record about one namespace of one run (a task's line, a retry on its API threads, a
    write it sent, a "does nothing") as a JSON line to `<base>/<policy>/<namespace>/<run>/run.log`.

    The file (mode 0600, in a run folder of mode 0700 as the backup makes it) is opened with O_APPEND for
    each line and the whole line written in one `os.write`, so threads and processes sharing the volume
    interleave only at line boundaries, and a run folder deleted meanwhile (`kpromote backups prune`) is
    not written to through a stale descriptor. Records without all three references are not run lines.
    Secrets are masked as on stderr; names that are not path segments are never turned into a path.

    A worker writes a line for every write it sends to an API server, so a line must cost little: the
    file's path is worked out once per run and namespace (building it with pathlib was a quarter of a
    line's CPU), and the line is encoded once, by orjson."""

    def __init__(self, base: Path, component: str) -> None:
        super().__init__(logging.DEBUG)
        self.base = Path(base)
        self._lines = RunLogLine(component)
        self.setFormatter(self._lines)
        self.addFilter(TaskContext())
        self.addFilter(RedactSecrets())

    def handle(self, record: logging.LogRecord) -> bool:
        """As `Handler.handle`, without the handler's lock: each line is one atomic append already."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        policy, namespace, run = (getattr(record, key, None) for key in ("policy", "namespace", "run"))
        if not (isinstance(policy, str) and isinstance(namespace, str) and isinstance(run, str)):
            return
        path = _run_log_path(str(self.base), policy, namespace, run)
        if path is None:
            return
        try:
            data = self._lines.line(record)
            try:
                descriptor = _open_append(path)
            except FileNotFoundError:
                _make_run_folder(Path(path).parent)
                descriptor = _open_append(path)
            try:
                os.write(descriptor, data)
            finally:
                os.close(descriptor)
        except Exception:
            self.handleError(record)


class RunLogLine(JsonLines):
    """A `JsonLines` line cut to RUN_LOG_LINE_MAX bytes: the message's start and the traceback's end (where
    the error is) are kept."""

    def format(self, record: logging.LogRecord) -> str:
        return self.line(record)[:-1].decode()

    def line(self, record: logging.LogRecord) -> bytes:
        """The line as written, newline included."""
        fields = self.fields(record)
        line = _dumps(fields)
        if len(line) < RUN_LOG_LINE_MAX:
            return line
        for budget in (1500, 400):
            if "exception" in fields:
                fields["exception"] = _cut(str(fields["exception"]), budget, keep_end=True)
            fields["message"] = _cut(str(fields["message"]), budget, keep_end=False)
            line = _dumps(fields)
            if len(line) < RUN_LOG_LINE_MAX:
                return line
        fields.pop("exception", None)
        fields["message"] = _cut(str(fields["message"]), 100, keep_end=False)
        return _dumps(fields)


def _dumps(fields: dict[str, Any]) -> bytes:
    return orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)


def _cut(text: str, budget: int, *, keep_end: bool) -> str:
    if len(text) <= budget:
        return text
    return f"...[cut] {text[-budget:]}" if keep_end else f"{text[:budget]} ...[cut]"


@lru_cache(maxsize=1024)
def _run_log_path(base: str, policy: str, namespace: str, run: str) -> str | None:
    """The run log's path, or None when a name is not a path segment (then it is no run line)."""
    try:
        return str(run_folder(Path(base), policy, namespace, run) / RUN_LOG_NAME)
    except ValueError:
        return None


def run_folder(base: Path, policy: str, namespace: str, run: str) -> Path:
    """`<base>/<policy>/<namespace>/<run>`, the backup's folder; ValueError for a name that is not a path
    segment (as `shared.backup.backup_root`, whose layout this is)."""
    from shared.backup import backup_root

    return backup_root(base, policy, namespace, run)


def _open_append(path: str | Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _make_run_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) != 0o700:
        os.chmod(folder, 0o700)


def install_run_log(base: Path, component: str) -> RunLog:
    """Keep each run's log beside its backup (see `RunLog`), writes included; returns the handler so that
    a caller (a test) can take it away again."""
    handler = RunLog(base, component)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h, RunLog)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    logging.getLogger(WRITES).setLevel(logging.DEBUG)
    return handler
