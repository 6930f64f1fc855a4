"""`S3Store`: backups in an S3 bucket or an S3-compatible store (MinIO, Ceph RGW…), as Velero keeps them, so
that workers on several nodes share no volume and a backup outlives the cluster it was taken from.

Credentials come only from boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared
credentials file, a web identity such as IRSA): nothing here reads or parses them.

Writes are atomic for readers because S3 is: a PUT, and a multipart upload once completed, make the whole
object visible at once, and an upload cut short (an error, a killed process) leaves no object at the key;
boto3 aborts the multipart upload on an error, and a bucket lifecycle rule should abort the ones a killed
process left (docs/backup-storage.md). Large files go up in parts of `PART_SIZE` with at most
`PARALLEL_PARTS` in flight and come down as a stream, so memory does not grow with a backup's size.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Final

from shared.backup.integrity import BUFFER
from shared.backup.store import StoredFile

PART_SIZE: Final = 16 << 20
"""Files larger than this are uploaded in parts of this size (S3's minimum part is 5 MiB)."""
PARALLEL_PARTS: Final = 4
"""Parts of one file in flight at once: memory of an upload is at most about this many parts."""
DELETE_BATCH: Final = 1000
"""The most keys one DeleteObjects request takes."""
_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        path_style: bool = False,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._endpoint_url = endpoint_url
        self._region = region
        self._path_style = path_style
        self._lock = threading.Lock()

    @cached_property
    def client(self) -> Any:
        """One client per store and process, made on first use (boto3 clients are thread-safe; making
        one is not)."""
        import boto3
        from botocore.config import Config

        with self._lock:
            return boto3.session.Session().client(
                "s3",
                endpoint_url=self._endpoint_url,
                region_name=self._region,
                config=Config(
                    s3={"addressing_style": "path" if self._path_style else "auto"},
                    retries={"mode": "standard", "max_attempts": 8},
                    max_pool_connections=32,
                ),
            )

    @cached_property
    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            max_concurrency=PARALLEL_PARTS,
            io_chunksize=BUFFER,
        )

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def local_path(self, key: str) -> Path | None:
        return None

    def cache_name(self) -> str:
        return "/".join(("s3", self.bucket, *([self.prefix] if self.prefix else [])))

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key), Config=self._transfer)

    def get_file(self, key: str, path: Path) -> StoredFile | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as error:
            if _missing(error):
                return None
            raise
        found = self._stored(key, response)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            with closing(response["Body"]) as body, open(temporary, "xb") as out:
                os.fchmod(out.fileno(), 0o600)
                for chunk in body.iter_chunks(BUFFER):
                    out.write(chunk)
            os.utime(temporary, (found.modified, found.modified))
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return found

    def open(self, key: str) -> AbstractContextManager[IO[bytes]]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as error:
            if _missing(error):
                raise FileNotFoundError(self.url(key)) from None
            raise
        body: Any = response["Body"]
        return closing(body)

    def stat(self, key: str) -> StoredFile | None:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as error:
            if _missing(error):
                return None
            raise
        return self._stored(key, response)

    def list_prefix(self, prefix: str) -> Iterator[StoredFile]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in pages:
            for entry in page.get("Contents", []):
                yield StoredFile(
                    entry["Key"][strip:],
                    entry["Size"],
                    entry["LastModified"].timestamp(),
                    entry["ETag"],
                )

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": self._key(key)} for key in keys[start : start + DELETE_BATCH]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _stored(key: str, response: dict[str, Any]) -> StoredFile:
        return StoredFile(
            key, response["ContentLength"], response["LastModified"].timestamp(), response["ETag"]
        )


def _missing(error: Any) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING
