"""Configuration of every process, from `KPROMOTE_*` environment variables (one table in the README).

Defaults are the safe ones: a local Redis, backups under ./var/backups, the Kubernetes-owned and Kosmos
namespaces protected.

Every value is checked when the settings are read (ranges, types, JSON), so a process refuses to start
rather than fail half-way through a migration (a batch size of 0 used to detach a namespace and then
divide by zero). A bad value raises a `ValidationError` whose every problem is already one sentence
naming the variable, the value given and what is allowed (`KPROMOTE_REBUILD_BATCH_SIZE: '0' given, must
be a whole number of at least 1`); `startup_settings` adds the check for the shipped placeholders.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import annotated_types
import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from shared.ordering import PROTECTED_NAMESPACES

ENV_PREFIX = "KPROMOTE_"
PLACEHOLDER_PREFIX = "REPLACE-ME"
"""deploy/secrets.yaml ships `REPLACE-ME-redis-password-placeholder` and
`admin:REPLACE-ME-flower-password-placeholder`: a secret that starts like this was never replaced."""
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
S3_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
"""S3's bucket naming rule: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a
letter or digit."""
BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")
Port = Annotated[int, Field(ge=0, le=65535)]
LogFormat = Literal["json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_LOG_NAMES = (*get_args(LogFormat), *get_args(LogLevel))
Seconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        json_schema_extra={"allowed": f"a Redis URL ({', '.join(s + '://' for s in BROKER_SCHEMES)})"},
    )
    """Celery broker and result backend; also where live progress is kept."""
    key_prefix: str = ""
    """Prefix of every Celery key in Redis, so several installations (or test runs) can share one Redis."""
    backup_dir: Path = Path("var/backups")
    """Durable backups (a PVC mount in a real deployment): `<dir>/<policy>/<namespace>/<run>/`. With
    `backup_url` in S3 it holds only the run logs, which stay on each worker's disk."""
    backup_url: str | None = Field(
        default=None,
        json_schema_extra={"allowed": "a folder path, or s3://bucket[/prefix] (a valid bucket name)"},
    )
    """Where backups are kept: a folder (as `backup_dir`, which it overrides) or `s3://bucket/prefix`
    (shared/backup/store.py); unset means `backup_dir`."""
    backup_cache_dir: Path = Path("var/backup-cache")
    """A worker's own working copies of backups kept in S3 (an emptyDir is enough: everything in it can be
    fetched again, and every file is checked against the sealed manifest before use)."""
    backup_cache_idle: float = Field(default=900.0, gt=0)
    """Seconds after its last use that a worker removes a working copy (shared/backup/working_copy.py); a
    step that needs it later fetches it again."""
    s3_endpoint_url: str | None = Field(
        default=None, json_schema_extra={"allowed": "an http:// or https:// URL, e.g. http://minio:9000"}
    )
    """An S3-compatible store (MinIO, Ceph RGW…); unset means AWS S3. Credentials come from boto3's own
    chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared credentials file, IRSA), never from here."""
    s3_region: str | None = None
    """The bucket's region; unset leaves it to boto3 (AWS_REGION, the config file)."""
    s3_force_path_style: bool = False
    """Address the bucket as `endpoint/bucket/key` rather than `bucket.endpoint/key`: what most
    S3-compatible stores without wildcard DNS need."""
    kubeconfig: str | None = None
    """Control-plane kubeconfig; unset means ~/.kube/config (in a pod, deploy/ mounts one that uses the
    pod's ServiceAccount token)."""
    member_kubeconfigs: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        json_schema_extra={
            "allowed": 'a JSON object of cluster name to kubeconfig path, e.g. {"member1": "/k/m1"}'
        },
    )
    """Cluster name -> local kubeconfig path, for use outside Kosmos (JSON in the environment)."""
    protected_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(PROTECTED_NAMESPACES),
        json_schema_extra={
            "allowed": 'a JSON list of namespace names, e.g. ["kube-system", "kosmos-system"]'
        },
    )
    rebuild_batch_size: int = Field(default=250, ge=1)
    """Objects per rebuild task: a tier of N objects becomes ceil(N / size) parallel tasks. Each task
    creates its objects on the worker's API threads already, so a smaller size buys parallelism only
    for a namespace larger than the workers' task slots times the size, and costs every namespace a
    task hop per batch (bench/promote.py, 20 x 200 objects: 250 took 0.45 of the raw create rate, 50
    took 0.31, with a fifth more worker CPU)."""
    api_concurrency: int = Field(default=32, ge=1)
    """API calls in flight at once from one worker process, over all its tasks: the threads that fan out
    a task's creates, lists and patches, and each cluster's connection pool."""
    api_qps: float = Field(default=0.0, ge=0)
    """Requests a second to each cluster's API server, summed over every worker process (kept in Redis,
    so it holds however many workers run); 0 means no limit of ours."""
    api_burst: int = Field(default=10, ge=1)
    """Requests that may go at once before `api_qps` spaces them."""
    api_max_in_flight: int = Field(default=0, ge=0)
    """Requests waiting for an answer at once from each cluster's API server, over every worker process;
    0 means no limit of ours."""
    adoption_timeout: Seconds = 60.0
    """How long verify waits for the control plane's controllers to adopt what was rebuilt, and the longest
    any step waits for the control plane (a CRD Established, another namespace's rollback to end, a
    shared object to finish its deletion)."""
    detach_timeout: Seconds = 60.0
    """How long detach waits for the member's garbage collector to release orphaned dependents."""
    stall_timeout: Seconds = 300.0
    """The watcher's watchdog resumes a namespace whose progress has not moved for this long (a lost chord
    member never reports, docs/celery.md#lost-chord-members); after `max_resumes` it compensates instead."""
    max_resumes: int = Field(default=3, ge=0)
    completed_check_interval: float = Field(default=60.0, ge=0)
    """How often the watcher looks at the member's pods of every completed namespace for a controller of
    the member's own (an owner a GitOps tool put back, managing them beside the control plane); 0 turns
    the check off."""
    visibility_timeout: int = Field(default=3600, ge=1)
    """Redis redelivers an unacknowledged task after this long; must exceed the longest task."""
    namespace: str = Field(
        default="kosmos-promote",
        max_length=63,
        pattern=DNS_LABEL,
        json_schema_extra={
            "allowed": "a namespace name: at most 63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        },
    )
    """The control-plane namespace kosmos-promote is installed in: each namespace's claim (a Lease that
    says which run owns it) lives there, so ownership survives a Redis loss."""
    rollback_retry_budget: Seconds = 600.0
    """Seconds a rollback or compensation keeps retrying, with exponential backoff, before it gives up
    as FailedRollback: long enough to ride out an API server restart."""
    metrics_port: Port = 9808
    """Port of a worker's Prometheus `/metrics`; 0 disables it."""
    watcher_metrics_port: Port = 9809
    """Port of the watcher's Prometheus `/metrics`; 0 disables it."""
    log_format: LogFormat | None = Field(
        default=None, json_schema_extra={"allowed": "json or text (unset: text on a terminal, else json)"}
    )
    """How every process writes its log: JSON lines (for log collectors) or readable text; unset chooses
    by the stream (text on a terminal, JSON otherwise)."""
    log_level: LogLevel = Field(
        default="INFO", json_schema_extra={"allowed": "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"}
    )
    """The least severe level written (case-insensitive). DEBUG also shows kopf's once-a-second timer
    lines."""
    backup_signing_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        json_schema_extra={
            "allowed": "at least 32 characters, e.g. from openssl rand -hex 32",
            "secret": True,
        },
    )
    """HMAC-SHA256 key that signs each backup's manifest at seal and is checked before a backup is trusted
    (shared/backup/archive.py): without it, whoever can write the backup volume can edit a backup and
    re-hash its manifest. When set, unsigned backups are refused. A secret: never logged."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except SettingsError as error:
            raise _invalid([_unreadable(error)]) from None
        except ValidationError as error:
            raise _invalid([_explained(problem) for problem in error.errors()]) from None

    @field_validator("member_kubeconfigs", "protected_namespaces", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        """JSON in the environment; decoded here rather than by the settings source, so that bad JSON is a
        validation problem like any other instead of a traceback."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"not valid JSON ({error.msg} at character {error.pos})") from None
        return value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case(cls, value: object, info: Any) -> object:
        """`JSON`, `info`: the names are matched without regard to case (an empty value means unset)."""
        if isinstance(value, str):
            given = value.strip()
            if info.field_name == "log_format":
                normal: str | None = given.lower() or None
            else:
                normal = given.upper() or "INFO"
            # A value that stays wrong is reported as given, not as normalised.
            return normal if normal in (None, *_LOG_NAMES) else value
        return value

    @field_validator("broker_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in BROKER_SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}" if scheme else "not a URL")
        return value

    @field_validator("backup_url")
    @classmethod
    def _backup_url(cls, value: str | None) -> str | None:
        """A folder, or `s3://` with a bucket name S3 accepts; any other scheme is a mistake (gs://, a
        typo in s3://), not a folder name."""
        if not value:
            return None
        if value.startswith("s3://"):
            bucket = value.removeprefix("s3://").partition("/")[0]
            if not re.fullmatch(S3_BUCKET, bucket):
                raise ValueError(f"bucket {bucket!r} is not a valid S3 bucket name")
        elif "://" in value or value.startswith("s3:"):
            raise ValueError(f"unknown scheme {value.partition(':')[0]!r}")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("not an http:// or https:// URL")
        return value

    @property
    def backup_location(self) -> str:
        """KPROMOTE_BACKUP_URL, else KPROMOTE_BACKUP_DIR: a folder path or an `s3://` URL."""
        return self.backup_url or str(self.backup_dir)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()


class ConfigurationError(Exception):
    """A process must not start with this configuration (settings, options, files they name); `str(self)`
    is the one line to show, and the process exits with status 2."""


def startup_settings() -> Settings:
    """The settings a long-running process starts with, or `ConfigurationError` saying what to fix: values
    out of range (as `Settings` checks them) and secrets still at the placeholder deploy/ ships."""
    try:
        current = settings()
    except ValidationError as error:
        raise ConfigurationError(invalid_settings_line(error)) from None
    problem = placeholder_problem(current)
    if problem:
        raise ConfigurationError(problem)
    return current


def invalid_settings_line(error: ValidationError) -> str:
    """One line for every caller: the first problem, and how many more there are."""
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"invalid KPROMOTE_* environment: {where}: {first['msg']}{more}; fix or unset that variable"


def placeholder_problem(current: Settings) -> str | None:
    """The shipped placeholder left in a secret setting, said in one line; None when there is none."""
    password = urlsplit(current.broker_url).password or ""
    if password.startswith(PLACEHOLDER_PREFIX):
        return (
            "KPROMOTE_BROKER_URL holds the placeholder Redis password shipped in deploy/secrets.yaml: set a "
            "real one (e.g. openssl rand -hex 32) in the kosmos-promote-redis Secret or your .env"
        )
    key = current.backup_signing_key
    if key is not None and key.get_secret_value().startswith(PLACEHOLDER_PREFIX):
        return (
            "KPROMOTE_BACKUP_SIGNING_KEY is still the placeholder shipped in deploy/: set a real key "
            "(e.g. openssl rand -hex 32)"
        )
    return None


def control_plane_kubeconfig(current: Settings) -> Path:
    """The kubeconfig the processes use for the control plane: KPROMOTE_KUBECONFIG, else ~/.kube/config."""
    return Path(current.kubeconfig or Path.home() / ".kube" / "config").expanduser()


def check_kubeconfig(path: Path) -> None:
    """`ConfigurationError` naming the file unless it is there and reads as a kubeconfig: caught at start
    rather than by a client retrying (and failing) for ever. Only the file's shape is checked here; the
    client reads it later, so no credential it holds is copied anywhere."""
    if not path.is_file():
        raise ConfigurationError(f"no kubeconfig at {path}: pass --kubeconfig or set KPROMOTE_KUBECONFIG")
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigurationError(f"cannot read the kubeconfig at {path} ({error.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigurationError(f"the kubeconfig at {path} is not valid YAML: pass a working one") from None
    if not isinstance(document, dict) or not document.get("clusters") or not document.get("contexts"):
        raise ConfigurationError(f"the kubeconfig at {path} has no clusters or contexts: pass a working one")
    names = [context.get("name") for context in document["contexts"] if isinstance(context, dict)]
    current = document.get("current-context")
    if current not in names:
        raise ConfigurationError(
            f"the kubeconfig at {path}: its current-context {current!r} is not one of its contexts "
            f"({', '.join(map(str, names))})"
        )


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _invalid(problems: list[tuple[str, str, str]]) -> ValidationError:
    """A ValidationError (what callers already catch) whose messages are ready to show a person."""
    return ValidationError.from_exception_data(
        "Settings",
        [
            {
                "type": PydanticCustomError("invalid_setting", "{message}", {"message": message}),
                "loc": (name,),
                "input": shown,
            }
            for name, shown, message in problems
        ],
    )


def _explained(problem: Any) -> tuple[str, str, str]:
    """(variable, value as shown, `'<value>' given, must be <what is allowed>`) for one pydantic error."""
    field = str(problem["loc"][0]) if problem["loc"] else ""
    info = Settings.model_fields.get(field)
    if info is None:
        return ENV_PREFIX + "*", "", str(problem["msg"])
    shown = _shown(field, info, problem.get("input"))
    allowed = _allowed(info)
    reason = ""
    if problem["type"] == "value_error":
        reason = f" ({str(problem['msg']).removeprefix('Value error, ')})"
    return env_name(field), shown, f"{shown} given{reason}, must be {allowed}"


def _unreadable(error: SettingsError) -> tuple[str, str, str]:
    """A value the settings source could not even decode (it names the field in its message)."""
    match = re.search(r'field "(\w+)"', str(error))
    field = match[1] if match else ""
    info = Settings.model_fields.get(field)
    if info is None:
        return ENV_PREFIX + "*", "", str(error)
    shown = _shown(field, info, os.environ.get(env_name(field)))
    return env_name(field), shown, f"{shown} given, must be {_allowed(info)}"


def _shown(field: str, info: FieldInfo, value: object) -> str:
    """The value as given, without the secret parts: a password in a URL and secret settings are masked."""
    if isinstance(value, SecretStr) or (info.json_schema_extra or {}).get("secret"):  # type: ignore[union-attr]
        return "(a secret, not shown)"
    if field == "broker_url" and isinstance(value, str):
        parts = urlsplit(value)
        if parts.password:
            value = value.replace(f":{parts.password}@", ":***@", 1)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _allowed(info: FieldInfo) -> str:
    """What a field accepts, in words: its own description, else its type and bounds."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "allowed" in extra:
        return str(extra["allowed"])
    bounds: dict[str, Any] = {}
    for constraint in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(constraint, getattr(annotated_types, name.capitalize())):
                bounds[name] = getattr(constraint, name)
    whole = info.annotation is int
    kind = "a whole number" if whole else "a number" if info.annotation is float else "a string"
    if "ge" in bounds and "le" in bounds:
        return f"{kind} from {bounds['ge']} to {bounds['le']}"
    if "ge" in bounds:
        return f"{kind} of at least {bounds['ge']}"
    if "gt" in bounds:
        return f"{kind} greater than {bounds['gt']}"
    return kind
