"""Configuration of every process, from `KPROMOTE_*` environment variables (one table in the README).

Defaults are the safe ones: a local Redis, backups under ./var/backups, the Kubernetes-owned and Kosmos
namespaces protected.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.ordering import PROTECTED_NAMESPACES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KPROMOTE_", extra="ignore")

    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery broker and result backend; also where live progress is kept."""
    key_prefix: str = ""
    """Prefix of every Celery key in Redis, so several installations (or test runs) can share one Redis."""
    backup_dir: Path = Path("var/backups")
    """Durable backups (a PVC mount in a real deployment): `<dir>/<policy>/<namespace>/<run>/`."""
    kubeconfig: str | None = None
    """Control-plane kubeconfig; unset means ~/.kube/config (in a pod, deploy/ mounts one that uses the
    pod's ServiceAccount token)."""
    member_kubeconfigs: dict[str, str] = Field(default_factory=dict)
    """Cluster name -> local kubeconfig path, for use outside Kosmos (JSON in the environment)."""
    protected_namespaces: list[str] = Field(default_factory=lambda: list(PROTECTED_NAMESPACES))
    rebuild_batch_size: int = 50
    """Objects per rebuild task: a tier of N objects becomes ceil(N / size) parallel tasks."""
    api_concurrency: int = 32
    """API calls in flight at once from one worker process, over all its tasks: the threads that fan out
    a task's creates, lists and patches, and each cluster's connection pool."""
    api_qps: float = 0.0
    """Requests a second to each cluster's API server, summed over every worker process (kept in Redis,
    so it holds however many workers run); 0 means no limit of ours."""
    api_burst: int = 10
    """Requests that may go at once before `api_qps` spaces them."""
    api_max_in_flight: int = 0
    """Requests waiting for an answer at once from each cluster's API server, over every worker process;
    0 means no limit of ours."""
    adoption_timeout: float = 60.0
    """How long verify waits for the control plane's controllers to adopt what was rebuilt."""
    detach_timeout: float = 60.0
    """How long detach waits for the member's garbage collector to release orphaned dependents."""
    stall_timeout: float = 300.0
    """The watcher's watchdog resumes a namespace whose progress has not moved for this long (a lost chord
    member never reports, research/celery.md §2.1); after `max_resumes` it compensates instead."""
    max_resumes: int = 3
    visibility_timeout: int = 3600
    """Redis redelivers an unacknowledged task after this long; must exceed the longest task."""
    namespace: str = "kosmos-promote"
    """The control-plane namespace kosmos-promote is installed in: each namespace's claim (a Lease that
    says which run owns it) lives there, so ownership survives a Redis loss."""
    rollback_retry_budget: float = 600.0
    """Seconds a rollback or compensation keeps retrying, with exponential backoff, before it gives up
    as FailedRollback: long enough to ride out an API server restart."""
    metrics_port: int = 9808
    """Port of a worker's Prometheus `/metrics`; 0 disables it."""
    watcher_metrics_port: int = 9809
    """Port of the watcher's Prometheus `/metrics`; 0 disables it."""
    backup_signing_key: SecretStr | None = Field(default=None, min_length=32)
    """HMAC-SHA256 key that signs each backup's manifest at seal and is checked before a backup is trusted
    (shared/backup/archive.py): without it, whoever can write the backup volume can edit a backup and
    re-hash its manifest. When set, unsigned backups are refused. A secret: never logged."""


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()
