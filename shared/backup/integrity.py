"""What makes a sealed backup tamper-evident: file digests (cached per file version) and the manifest's
HMAC signature.

Rollback and rebuild act on the files beside the archive (the items files, their indexes, the plan),
not on the archive itself, because a rebuild batch seeks straight to its lines. So the seal records the
sha256 and size of each of those files in `manifest.json`, and the manifest names the archive's digest;
signing the manifest with a key the backup volume does not hold then covers every byte a step reads.

The signature is the manifest's first field, over the bytes of the rest of the file: one file, renamed
into place whole, so a reader can never see a manifest next to the signature of another one, and tools
that read `manifest.json` as JSON see one more field. `hmac-sha256:` leaves room for other schemes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, Final, Generic, TypeVar

from pydantic import Field, SecretStr
from pydantic.dataclasses import dataclass as pydantic_dataclass

from shared.single_flight import SingleFlight

KEY_VARIABLE: Final = "KPROMOTE_BACKUP_SIGNING_KEY"
_SIGNATURE_PREFIX: Final = b'{"signature":"hmac-sha256:'
_SIGNATURE_HEX: Final = 64
_SIGNATURE_END: Final = b'",'
BUFFER: Final = 1 << 20
"""How much of a backup file is read or written at a time: streaming keeps memory at one buffer."""
SETTLED_NS = 1_000_000_000
"""A file version is cached only once its timestamps are this old. File timestamps come from a coarse
clock (a scheduler tick), so a file rewritten in place with the same size within the tick in which it
was hashed would look unchanged; a second later that can no longer happen unnoticed."""

FileVersion = tuple[int, int, int, int, int]
"""(device, inode, size, mtime_ns, ctime_ns): ctime too, because unlike mtime it cannot be set back."""

V = TypeVar("V")


@pydantic_dataclass(frozen=True, slots=True)
class FileDigest:
    """The sha256 and size of one file a step reads, as recorded in `manifest.json` at seal."""

    sha256: str
    size: int = Field(ge=0)


def sign(body: bytes, key: SecretStr | None) -> bytes:
    """The manifest file's bytes: `body` itself without a key, else `body` with the signature put first."""
    if key is None:
        return body
    if not body.startswith(b"{") or body == b"{}":
        raise ValueError("only a non-empty JSON object can be signed")
    return _SIGNATURE_PREFIX + _mac(body, key).encode() + _SIGNATURE_END + body[1:]


def split_signature(data: bytes) -> tuple[str | None, bytes]:
    """(signature, signed body) of a manifest file's bytes; signature None when there is none, "" when it
    is there but malformed (which no key matches)."""
    if not data.startswith(_SIGNATURE_PREFIX):
        return None, data
    end = len(_SIGNATURE_PREFIX) + _SIGNATURE_HEX
    signature = data[len(_SIGNATURE_PREFIX) : end]
    if data[end : end + len(_SIGNATURE_END)] != _SIGNATURE_END or not _is_hex(signature):
        return "", data
    return signature.decode(), b"{" + data[end + len(_SIGNATURE_END) :]


def signature_problem(signature: str | None, body: bytes, key: SecretStr | None, name: str) -> str | None:
    """Why a manifest's signature cannot be trusted, or None when it can (or none is needed).

    With a key, a manifest must carry a signature that key made: otherwise whoever can write the volume
    could edit a file and re-hash the manifest. Without a key a signed manifest is refused too, rather
    than accepted unchecked: it means this installation signs, and this process (a worker missing the
    Secret, say) is the one that cannot tell a forged backup from a true one."""
    if key is None:
        if signature is None:
            return None
        return f"{name} is signed, but {KEY_VARIABLE} is not set here: its signature cannot be checked"
    if signature is None:
        return f"unsigned backup refused: {KEY_VARIABLE} is set ({name} has no signature)"
    if not hmac.compare_digest(signature, _mac(body, key)):
        return f"{name}: the signature does not match (edited after the seal, or signed with another key)"
    return None


def key_fingerprint(key: SecretStr | None) -> bytes:
    """Tells cached verdicts made under different keys apart without keeping the key itself around."""
    if key is None:
        return b""
    return hashlib.sha256(b"kosmos-promote cache\0" + key.get_secret_value().encode()).digest()


def version_of(result: os.stat_result) -> FileVersion:
    return (result.st_dev, result.st_ino, result.st_size, result.st_mtime_ns, result.st_ctime_ns)


def settled(version: FileVersion) -> bool:
    """Whether a file version is old enough to be cached (see `SETTLED_NS`)."""
    return time.time_ns() - max(version[3], version[4]) > SETTLED_NS


class VersionCache(Generic[V]):
    """A per-process LRU of what was computed from a file, valid while the file's version is unchanged:
    the checks before every rebuild batch of a namespace then cost a stat per file, not a re-hash."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, bytes], tuple[FileVersion, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, version: FileVersion, salt: bytes = b"") -> V | None:
        with self._lock:
            entry = self._entries.get((str(path), salt))
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end((str(path), salt))
            return entry[1]

    def put(self, path: Path, version: FileVersion, value: V, salt: bytes = b"") -> None:
        if not settled(version):
            return
        with self._lock:
            self._entries[str(path), salt] = (version, value)
            self._entries.move_to_end((str(path), salt))
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


DIGESTS: Final[VersionCache[FileDigest]] = VersionCache(4096)
"""Digests of covered files; a worker sees a few dozen files per namespace."""
_hashing = SingleFlight()


def digest_file(path: Path, *, cached: bool = True) -> FileDigest | None:
    """sha256 and size of a file, streamed (memory stays one buffer), or None when it does not exist.
    With `cached`, a file whose version was hashed before in this process is not read again, and threads
    asking at once wait for one of them to hash it."""
    if not cached:
        return _digest(path, cached=False)
    try:
        hit = DIGESTS.get(path, version_of(os.stat(path)))
    except FileNotFoundError:
        return None
    if hit is not None:  # the usual case, without the hold's locks
        return hit
    with _hashing.hold(path):
        try:
            hit = DIGESTS.get(path, version_of(os.stat(path)))
        except FileNotFoundError:
            return None
        return hit if hit is not None else _digest(path, cached=True)


def _digest(path: Path, *, cached: bool) -> FileDigest | None:
    try:
        file = path.open("rb", buffering=0)
    except FileNotFoundError:
        return None
    with file:
        version = version_of(os.fstat(file.fileno()))
        sha256, size = digest_stream(file)
    result = FileDigest(sha256=sha256, size=size)
    if cached:
        DIGESTS.put(path, version, result)
    return result


def digest_stream(stream: IO[bytes]) -> tuple[str, int]:
    """(sha256, size) of what is left to read in `stream`, one buffer at a time; a tuple rather than a
    `FileDigest`, which costs a validation, because verification keeps one per archive entry."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(BUFFER):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _mac(body: bytes, key: SecretStr) -> str:
    return hmac.new(key.get_secret_value().encode(), body, hashlib.sha256).hexdigest()


def _is_hex(value: bytes) -> bool:
    return all(character in b"0123456789abcdef" for character in value)
