"""Velero's tar.gz (format 1.1.0), written and read one entry at a time, so Velero tooling and plain `tar`
can read a backup and memory does not grow with its objects' size.

Entries are written with fixed metadata and a fixed gzip header, so the same items give the same bytes
whoever seals them and whenever: two seals racing rename identical files over each other. The archive is
hashed as it is written and as it is read, never read a second time for its digest.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

import orjson

from shared.backup.integrity import BUFFER
from shared.backup.layout import ref_of
from shared.items import ItemRef

_GZIP_LEVEL: Final = 6
"""tarfile's default, 9, took 2.2x the time of 6 on repetitive JSON for archives ~1% smaller (measured)."""
READ_ERRORS: Final = (tarfile.TarError, EOFError, OSError, zlib.error)
"""What a damaged tar.gz raises: truncation gives EOFError or ReadError, bad bytes zlib.error or
BadGzipFile (an OSError)."""


@contextmanager
def writing(out: HashingWriter) -> Iterator[TarWriter]:
    """A PAX tar written into `out` through gzip, with no file name or time in the gzip header."""
    with gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=out, mtime=0) as gz:
        tar = TarWriter(gz)
        yield tar
        tar.close()


class TarWriter:
    """Regular files as a PAX tar stream, byte for byte what `tarfile.TarFile` writes (the tests compare
    them), without its costs per member: TarFile copies each member's TarInfo and keeps every member in a
    list (a twentieth of a worker's Python time on a hundred small namespaces, bench/promote.py
    --profile). Every entry has fixed metadata (owner root, 0600 since entries hold Secrets), so the
    archive's bytes do not depend on who sealed it or when."""

    def __init__(self, out: io.BufferedIOBase) -> None:
        self._out = out
        self._offset = 0

    def add(self, path: str, data: bytes, mtime: int) -> None:
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mtime = mtime
        info.mode = 0o600
        header = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
        padding = -len(data) % tarfile.BLOCKSIZE
        self._write(header + data + tarfile.NUL * padding)

    def close(self) -> None:
        """The end-of-archive blocks, and the last record filled up, as TarFile.close writes them."""
        self._write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        self._write(tarfile.NUL * (-self._offset % tarfile.RECORDSIZE))

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._offset += len(data)


def members(file: IO[bytes] | HashingReader) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    """Each tar member with a reader of its content (None for non-files), streaming.

    gzip is decoded by GzipFile rather than by tarfile so that reading on to the end checks the gzip
    trailer (CRC and length): a lost tail is then an error, not a silently shorter archive. TarFile
    remembers every member it read (about 0.5 KB each), so they are forgotten as they are passed on."""
    with gzip.GzipFile(fileobj=file, mode="rb") as gz:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # typeshed omits TarFile.members
                yield member, tar.extractfile(member) if member.isfile() else None
        while gz.read(BUFFER):
            pass


def iter_archive(source: Path | IO[bytes]) -> Iterator[tuple[ItemRef, dict[str, Any]]]:
    """Stream the objects of an archive (a file, or a stream such as an object store's) with their
    references, in archive order.

    For rollback from the archive alone and for `kpromote backups show`. Damage surfaces as an exception
    when it is reached, possibly after some items were yielded: call `verify_archive` first when acting on
    the items. Entries other than `resources/<gr>/namespaces/<ns>/<name>.json` and
    `resources/<gr>/cluster/<name>.json` (such as Velero's preferred-version copies) are skipped."""
    with source.open("rb") if isinstance(source, Path) else contextlib.nullcontext(source) as file:
        for member, content in members(file):
            if content is not None and (ref := ref_of(member.name)) is not None:
                yield ref, orjson.loads(content.read())


class HashingWriter(io.RawIOBase):
    """Passes writes through while hashing them, so the archive's digest costs no second read."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self._digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._digest.update(data)
        return self._target.write(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class HashingReader(io.RawIOBase):
    """Passes reads through while hashing them, so verification reads the archive once."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._digest.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Hash whatever the tar and gzip readers left unread (all of it when the archive was unreadable)."""
        while self.read(BUFFER):
            pass

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
