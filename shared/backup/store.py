"""Where backups are kept: one interface, `BackupStore`, over a local folder (`LocalStore`) and an S3 bucket
(`S3Store`), so that workers on several nodes need no shared volume.

A store holds whole files under keys such as `<policy>/<namespace>/<run>/items/pods.jsonl`. The backup
itself (`archive.BackupDir`) is built and read in a local working folder: with a `LocalStore` that folder
IS the store (no copy is made, as before stores existed); with an object store it is a worker's cache, and
every file is published when written and fetched when needed. What both guarantee to a reader:

- a key shows a whole file or nothing (an S3 PUT and a completed multipart upload are atomic; the local
  store renames a finished file into place);
- a file is never held whole in memory (multipart uploads, streamed downloads).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file in a store, as a listing or a stat sees it."""

    key: str
    size: int
    modified: float
    """When it was last written (epoch seconds; whole seconds in S3)."""
    tag: str
    """Changes whenever the content may have changed: the ETag in S3, size and mtime locally."""


class BackupStore(Protocol):
    """Whole files under '/'-separated keys. Every method is safe to call from several threads."""

    def url(self, key: str) -> str:
        """Where `key` is, for people and logs: a path, or `s3://bucket/prefix/key`."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The path at which this machine reads and writes `key` in place, or None when the store is remote
        (then a working copy is needed)."""
        ...

    def cache_name(self) -> str:
        """A relative folder name telling this store apart from others in a worker's cache."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Publish the file at `path` under `key`: readers see the previous content or all of the new."""
        ...

    def get_file(self, key: str, path: Path) -> StoredFile | None:
        """Copy `key` to `path` (which appears whole, mtime set to the stored file's), streamed; None when
        there is no such key."""
        ...

    def open(self, key: str) -> AbstractContextManager[IO[bytes]]:
        """A stream of `key`'s bytes (`FileNotFoundError` when there is none)."""
        ...

    def stat(self, key: str) -> StoredFile | None: ...

    def list_prefix(self, prefix: str) -> Iterator[StoredFile]:
        """Every file whose key starts with `prefix`, in key order."""
        ...

    def delete(self, keys: list[str]) -> None:
        """Remove these keys (missing ones are fine)."""
        ...


S3_SCHEME = "s3://"


def is_remote(location: str) -> bool:
    """Whether a backup location (KPROMOTE_BACKUP_URL) names an object store rather than a folder."""
    return location.startswith(S3_SCHEME)


def split_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at either end) of `s3://bucket/prefix`."""
    bucket, _, prefix = url.removeprefix(S3_SCHEME).partition("/")
    return bucket, prefix.strip("/")


def store_from_settings(current: Settings) -> BackupStore:
    """The store KPROMOTE_BACKUP_URL (else KPROMOTE_BACKUP_DIR) names, one per process and configuration:
    an S3 client holds a connection pool that every task of a worker shares."""
    return _store(
        current.backup_location,
        current.s3_endpoint_url,
        current.s3_region,
        current.s3_force_path_style,
    )


@lru_cache(maxsize=4)
def _store(location: str, endpoint: str | None, region: str | None, path_style: bool) -> BackupStore:
    if is_remote(location):
        from shared.backup.s3store import S3Store

        bucket, prefix = split_s3_url(location)
        return S3Store(bucket, prefix, endpoint_url=endpoint, region=region, path_style=path_style)
    from shared.backup.localstore import LocalStore

    return LocalStore(Path(location).expanduser())
