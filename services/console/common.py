"""What every command shares: exit codes, one-sentence errors, the control-plane connection, the policy file.

Errors a person can fix (a missing kubeconfig, a typo in the policy, an unknown policy name) end the
command with one line on stderr saying what to do next and a documented exit code, never a traceback:
`guarded` turns them, and the API errors `shared.kube` raises, into that line.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec

import typer
import yaml
from kubernetes.config.config_exception import ConfigException
from pydantic import ValidationError
from rich.console import Console

from shared.backup import BackupDir, working_copy
from shared.kube import ApiResource, Forbidden, Kube, KubeError, MemberUnavailable, RetryPolicy, Unreachable
from shared.models import PromotePolicy
from shared.models.policy import GROUP, PLURAL
from shared.settings import Settings

OK = 0
FAILED = 1
"""The operation ran and failed: a promote or rollback that did not succeed, a backup that does not
verify, an API server that refused or could not be reached."""
USAGE = 2
"""Nothing was done because the input was wrong: options, policy file, kubeconfig, policy name, or a
rollback the policy's phase does not allow. Typer uses 2 for bad options too."""
PRECHECK_FAILED = 3
CONFLICTS = 4
INTERRUPTED = 130

POLICY_RESOURCE = f"{PLURAL}.{GROUP}"
CLI_RETRY = RetryPolicy(attempts=4)
"""Fewer attempts than the workers make: a person waiting at a terminal wants the error, not a minute of
retries against an API server that is down."""

P = ParamSpec("P")


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


class StatusFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


class ConsoleError(Exception):
    """An expected failure: `str(self)` is the one sentence shown, `code` the exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def guarded(command: Callable[P, int]) -> Callable[P, int]:
    """Run a command function, turning expected failures into one line on stderr and their exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except ConsoleError as error:
            message, code = str(error), error.code
        except KubeError as error:
            message, code = explain_api_error(error), FAILED
        except MemberUnavailable as error:
            message, code = f"{error}: check the Kosmos Cluster object or KPROMOTE_MEMBER_KUBECONFIGS", FAILED
        except KeyboardInterrupt:
            message, code = "interrupted", INTERRUPTED
        typer.echo(f"error: {message}", err=True)
        return code

    return run


def explain_api_error(error: KubeError) -> str:
    """The API error in one sentence, with the next step for the cases a person can act on."""
    if isinstance(error, Unreachable):
        where = error.target or "the API server"
        return (
            f"cannot reach {where} ({error.message}): check the server address in the kubeconfig "
            f"and that the API server is running"
        )
    if isinstance(error, Forbidden):
        return f"{error}: the kubeconfig's credentials lack this permission; ask for RBAC access to it"
    return f"the API server refused: {error}"


def one_line_validation_error(error: ValidationError) -> str:
    """`spec.includeNamespaces: Extra inputs are not permitted`, the first problem with its field path."""
    problems = error.errors()
    first = problems[0]
    location = ".".join(str(part) for part in first["loc"]) or "the document"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{location}: {first['msg']}{more}"


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise ConsoleError(
            f"invalid KPROMOTE_* environment: {one_line_validation_error(error)}; fix or unset that variable",
            USAGE,
        ) from None


def kubeconfig_path(option: str | None, settings: Settings) -> Path:
    """--kubeconfig, else KPROMOTE_KUBECONFIG, else ~/.kube/config: the order kubectl users expect."""
    return Path(option or settings.kubeconfig or Path.home() / ".kube" / "config").expanduser()


def connect(option: str | None, settings: Settings) -> Kube:
    """The control plane named by the kubeconfig; a missing or unusable file is the caller's to fix."""
    path = kubeconfig_path(option, settings)
    if not path.is_file():
        raise ConsoleError(f"no kubeconfig at {path}: pass --kubeconfig or set KPROMOTE_KUBECONFIG", USAGE)
    try:
        return Kube.from_kubeconfig(path, name="control-plane", retry=CLI_RETRY, request_timeout=20.0)
    except (ConfigException, yaml.YAMLError, OSError, KeyError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConsoleError(
            f"the kubeconfig at {path} is not usable ({reason}): pass a working one with --kubeconfig", USAGE
        ) from None


@contextmanager
def working_copy_of(backup: BackupDir) -> Iterator[None]:
    """Hold the backup's working copy (S3) while the command reads it, then remove the copies in this
    cache that nobody has used for KPROMOTE_BACKUP_CACHE_IDLE seconds, as a worker's sweeper would: a
    command does not run long enough to sweep on a timer."""
    with backup.held():
        yield
    if backup.store is not None:
        settings = load_settings()
        with suppress(OSError):  # tidying is a courtesy: it must not turn a done command into a failure
            working_copy.sweep(
                BackupDir.working_copies(backup.store, settings.backup_cache_dir), settings.backup_cache_idle
            )


def policy_resource(kube: Kube) -> ApiResource:
    resource = kube.discovery.by_group_resource(POLICY_RESOURCE)
    if resource is None:
        raise ConsoleError(
            f"the control plane does not serve {POLICY_RESOURCE}: install the CRD first "
            f"(kubectl apply -f deploy/crds/{POLICY_RESOURCE}.yaml)"
        )
    return resource


def get_policy(kube: Kube, name: str) -> dict[str, Any]:
    found = kube.get(policy_resource(kube), "", name)
    if found is None:
        raise ConsoleError(
            f'no PromotePolicy "{name}" in the control plane: '
            "check the name with kubectl get promotepolicies",
            USAGE,
        )
    return found


def load_policy_file(path: Path) -> PromotePolicy:
    """The PromotePolicy in a YAML file, validated by the same model the watcher uses, so a typo is caught
    here rather than as a FailedPrecheck (or worse, a silently empty migration)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConsoleError(f"no policy file at {path}: pass the PromotePolicy YAML with -f", USAGE) from None
    except OSError as error:
        raise ConsoleError(
            f"cannot read {path} ({error.strerror}): check the path and permissions", USAGE
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConsoleError(f"{path} is not valid YAML{where}: fix the syntax and run again", USAGE) from None
    if not isinstance(document, Mapping):
        raise ConsoleError(
            f"{path} does not hold a PromotePolicy: expected apiVersion, kind, metadata and spec", USAGE
        )
    try:
        policy = PromotePolicy.model_validate(dict(document))
    except ValidationError as error:
        raise ConsoleError(
            f"{path}: {one_line_validation_error(error)}; fix that field and run again", USAGE
        ) from None
    name = policy.metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ConsoleError(f"{path}: metadata.name is missing; give the policy a name", USAGE)
    return policy


def phase_of(policy: Mapping[str, Any]) -> str:
    """The policy's phase as written by the watcher; a policy it has not seen yet is Pending."""
    return (policy.get("status") or {}).get("phase") or "Pending"


def out() -> Console:
    """Standard output. Rich draws live displays only where stdout is a terminal; text is not wrapped,
    so a line in a log stays one line."""
    return Console(highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    """Plain JSON on stdout, never wrapped or coloured, so `| jq` always works."""
    typer.echo(json.dumps(document, indent=2))


def print_yaml(document: Any) -> None:
    """Block style, long strings on one line and UTF-8 as is: reasons read as written."""
    dumped = yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16
    )
    typer.echo(dumped, nl=False)


def listed(names: list[str], limit: int = 5) -> str:
    """The first few names, then how many more: a DaemonSet's 300 pods must not flood a table."""
    shown = ", ".join(names[:limit])
    return f"{shown}, ... and {len(names) - limit} more" if len(names) > limit else shown


def human_duration(seconds: float | None) -> str:
    """As kubectl's AGE column reads: 45s, 3m12s, 25m, 2h5m, 9h, 3d4h, 12d; "-" for no value."""
    if seconds is None:
        return "-"
    total = max(0, int(seconds))
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 60:
        return f"{total}s"
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if hours < 1:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 1:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds in "30d", "12h", "90m", "2w", "45s" or a sum of them ("1d12h"); ValueError otherwise."""
    import re

    parts = re.findall(r"(\d+)([smhdw])", text.strip())
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text.strip():
        raise ValueError(f"{text!r} is not an age such as 30d, 12h, 90m or 1d12h")
    return float(sum(int(number) * _AGE_UNITS[unit] for number, unit in parts))


def backup_base(directory: Path | None) -> Path:
    """--dir, else KPROMOTE_BACKUP_DIR: the backup volume, which must exist."""
    base = (directory or load_settings().backup_dir).expanduser()
    if not base.is_dir():
        raise ConsoleError(f"no backup directory at {base}: pass --dir or set KPROMOTE_BACKUP_DIR", USAGE)
    return base


def path_segment(value: str, what: str) -> str:
    """A policy, namespace or run name that is one path segment under the backup directory, never more."""
    if not value or value in {".", ".."} or "/" in value or "\0" in value or "\\" in value:
        raise ConsoleError(f"{what} {value!r} is not a Kubernetes name", USAGE)
    return value


def seconds_since(timestamp: str | None, now: float) -> float | None:
    """Seconds from an RFC 3339 time of the API to `now` (epoch seconds); None when there is none."""
    if not timestamp:
        return None
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return now - moment.timestamp()
