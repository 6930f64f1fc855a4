"""The durable backup of one namespace: parts written per type, sealed into a Velero-layout archive.

A backup is built on one shared volume by a backup task's threads, and at-least-once delivery can run that
task twice at once on different machines: each thread writes the objects of one group-resource as a part,
then the seal merges the parts into `items/<gr>.jsonl` (sorted, deduplicated, indexed for random access by
the rebuild batches) and into `backup.tar.gz` (Velero format 1.1.0, so Velero tooling and plain `tar` can
read it).

Because two runs may overlap, every file is written under a random temporary name, fsynced and renamed
into place, and sealing is deterministic: the archive's bytes
depend only on the parts and the labels (gzip and tar timestamps are fixed, `createdAt` is the time the
last part was written). Two seals racing therefore rename identical files over each other, and no
interleaving can leave an archive next to a manifest.json that describes another archive.

Memory does not depend on the objects' size: parts are streamed to disk, sealing sorts one part at a time
holding only `(namespace, name) -> line offset`, and the archive is written and read one item at a time.
What grows with the number of objects is the manifest (about 0.4 KB per item), which the API returns
whole, and during verification a digest per entry.

Steps read the items files, not the archive, so `manifest.json` also records the sha256 and size of every
file a step reads (`files`: the items files, their indexes, and the decisions added after the seal by
`write_derived`), and is signed when `KPROMOTE_BACKUP_SIGNING_KEY` is set (`integrity.py`).
`require_intact` checks all of it before a step trusts the backup.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import logging
import os
import re
import secrets
import stat
import struct
import sys
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass as pydantic_dataclass

from shared.backup.integrity import (
    FileDigest,
    VersionCache,
    digest_file,
    key_fingerprint,
    sign,
    signature_problem,
    split_signature,
    version_of,
)
from shared.items import GroupResource, ItemRef
from shared.models.times import Rfc3339Time
from shared.settings import settings

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = "1.1.0"
ARCHIVE_NAME: Final = "backup.tar.gz"
MANIFEST_NAME: Final = "manifest.json"
VERSION_ENTRY: Final = "metadata/version"
MANIFEST_ENTRY: Final = "metadata/manifest.json"
DECISIONS_NAME: Final = "decisions.json"
DERIVED_FILES: Final = frozenset({DECISIONS_NAME})
"""Files that steps derive from the sealed items after the seal and read back beside the archive: each is
added to the manifest by `BackupDir.write_derived`, and one that is present but not covered is refused."""

_VERSION_BYTES: Final = f"{FORMAT_VERSION}\n".encode()
"""What Velero writes to metadata/version (`fmt.Sprintf("%s\\n", BackupFormatVersion)`)."""
_GZIP_LEVEL: Final = 6
"""tarfile's default, 9, took 2.2x the time of 6 on repetitive JSON for archives ~1% smaller (measured)."""
_BUFFER: Final = 1 << 20
_OFFSET: Final = struct.Struct("<Q")
"""One entry of `items/<gr>.idx`: the byte offset where line i of `items/<gr>.jsonl` starts."""
_GROUP_RESOURCE: Final = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_READ_ERRORS: Final = (tarfile.TarError, EOFError, OSError, zlib.error)
"""What a damaged tar.gz raises: truncation gives EOFError or ReadError, bad bytes zlib.error or
BadGzipFile (an OSError)."""


class BackupError(Exception):
    """The backup directory is not in the state the call needs."""


class BackupTampered(BackupError):
    """A sealed backup no longer matches its manifest, or its manifest is not signed as required: nothing
    may be done from it. `problems` names each changed, missing or uncovered file."""

    def __init__(self, root: Path, problems: list[str]) -> None:
        self.root = root
        self.problems = problems
        listed = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        super().__init__(f"backup {root} does not verify, refusing to use it: {listed}")


class _SealedMeanwhile(Exception):
    """The backup was sealed while a part was being written: the part is discarded."""


_CONFIG: Final = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
"""camelCase on disk; unknown fields ignored so an older reader still opens a newer writer's backup."""


@pydantic_dataclass(frozen=True, slots=True, kw_only=True, config=_CONFIG)
class ManifestItem:
    """One object in the archive, with the digest and size of its entry.

    A slotted pydantic dataclass rather than a BaseModel: a manifest holds one per object, and a BaseModel
    costs about 1.4 KB each (its `__dict__` and fields-set) against 0.4 KB here, which is most of the
    memory a seal or a verification of a large namespace needs."""

    group_resource: str
    namespace: str = ""
    """Empty for cluster-scoped objects."""
    name: str
    path: str
    sha256: str
    size: int = Field(ge=0)

    @property
    def ref(self) -> ItemRef:
        return ItemRef(GroupResource(self.group_resource), self.namespace, self.name)


class Manifest(BaseModel):
    """What the archive holds. The copy inside the archive has no `sha256` (a file cannot contain its own
    digest); the copy next to it, `manifest.json`, carries the archive's digest."""

    model_config = ConfigDict(**_CONFIG, frozen=True)

    format_version: str = FORMAT_VERSION
    created_at: Rfc3339Time
    """When the last part was written, i.e. when the objects were read (and fixed, so re-sealing gives
    the same bytes)."""
    labels: dict[str, str] = Field(default_factory=dict)
    items: list[ManifestItem] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    """Objects per group-resource, including collected group-resources that had none."""
    total_items: int = Field(default=0, ge=0)
    sha256: str | None = None
    files: dict[str, FileDigest] = Field(default_factory=dict)
    """Like `sha256`, only in `manifest.json`: each file beside the archive that steps read, by path in
    the run directory (`items/<gr>.jsonl`, `items/<gr>.idx`, `decisions.json`)."""


class _Coverage(BaseModel):
    """What `require_intact` needs of `manifest.json`: parsing only these fields skips building the
    per-item objects, most of a large manifest."""

    model_config = ConfigDict(**_CONFIG, frozen=True)

    counts: dict[str, int] = Field(default_factory=dict)
    sha256: str | None = None
    files: dict[str, FileDigest] = Field(default_factory=dict)


_COVERAGE: Final[VersionCache[_Coverage]] = VersionCache(256)
"""Manifests already found signed and well-formed, per file version and signing key."""
_ITEMS_FILE: Final = re.compile(r"items/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\.(jsonl|idx)")


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of re-reading an archive. `manifest` is the embedded manifest with `sha256` set to the
    digest just computed and `files` taken from `manifest.json` when that describes this archive, or None
    when the archive has none (or it does not parse)."""

    problems: list[str]
    sha256: str
    manifest: Manifest | None
    signed: bool = False
    """Whether `manifest.json`'s signature was checked against the configured key and matched."""

    @property
    def ok(self) -> bool:
        return not self.problems


def backup_root(base: Path, policy: str, namespace: str, run_id: str) -> Path:
    """Where one run of one policy backs up one namespace: `<base>/<policy>/<namespace>/<run_id>`."""
    for value in (policy, namespace, run_id):
        _check_segment(value, "path segment")
    return base / policy / namespace / run_id


def entry_path(group_resource: str, namespace: str, name: str) -> str:
    """The archive entry of one object, as Velero names it."""
    if namespace:
        return f"resources/{group_resource}/namespaces/{namespace}/{name}.json"
    return f"resources/{group_resource}/cluster/{name}.json"


@dataclass(frozen=True)
class BackupDir:
    """One namespace's backup directory on the shared volume. Holding it touches nothing on disk; the
    directory is created (mode 0700: it holds Secrets) by the first write."""

    root: Path
    signing_key: SecretStr | None = field(
        default_factory=lambda: settings().backup_signing_key, repr=False, compare=False
    )
    """Signs the manifest at seal and is required of it by `require_intact` (KPROMOTE_BACKUP_SIGNING_KEY)."""

    @property
    def archive_path(self) -> Path:
        return self.root / ARCHIVE_NAME

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def write_part(self, group_resource: str, objects: Iterable[dict[str, Any]]) -> int:
        """Write every object of one group-resource as `parts/<gr>.jsonl` and return how many.

        Objects are streamed to a temporary file, so a whole LIST is never in memory, and renamed into
        place: two concurrent runs of the same collect each leave a complete part and the last rename
        wins. Each object needs `metadata.name`, checked here so a bad object fails the backup run that
        produced it rather than the seal.

        Once the backup is sealed, parts no longer change: the backup must show the namespace as it was
        before promote changed anything, and a late duplicate of a backup run would list objects that
        promote may already have changed. Such a call leaves `objects` unread and returns what the first
        run returned, as a re-run should."""
        _check_group_resource(group_resource)
        if self.archive_path.exists():
            return self._part_count(group_resource)
        self._make_dirs()
        count = 0
        try:
            with _atomic_file(self._part_path(group_resource)) as out:
                for count, obj in enumerate(objects, start=1):
                    _key(obj, f"object {count} of {group_resource}")
                    out.write(orjson.dumps(obj))
                    out.write(b"\n")
                if self.archive_path.exists():
                    raise _SealedMeanwhile
        except _SealedMeanwhile:
            return self._part_count(group_resource)
        return count

    def parts(self) -> list[str]:
        """The group-resources that have a part, sorted."""
        directory = self.root / "parts"
        if not directory.is_dir():
            return []
        return sorted(path.name.removesuffix(".jsonl") for path in directory.glob("*.jsonl"))

    def seal(self, labels: Mapping[str, str]) -> Manifest:
        """Merge the parts into `items/` and `backup.tar.gz`, write `manifest.json` (with the digest of each
        items file, signed when a key is set), return the manifest.

        Idempotent: an existing seal that is intact (`integrity_problems`) and whose archive verifies is
        returned as is. Anything less is rebuilt from the parts, which gives the same bytes as before provided
        `labels` are the same on every run: they must not hold a timestamp (`createdAt` records when the
        objects were read). Otherwise two seals racing could leave an archive next to the manifest.json of
        the other; the next seal would notice and rebuild, but a reader in between would see a mismatch."""
        existing = self._existing_seal()
        if existing is not None:
            return existing
        group_resources = self.parts()
        if not group_resources:
            raise BackupError(f"nothing to seal: {self.root} has no parts")
        self._make_dirs()
        written = max(self._merge_part(group_resource) for group_resource in group_resources)
        _fsync_directory(self.root / "items")
        created_at = datetime.fromtimestamp(int(written), UTC)
        manifest = self._write_archive(group_resources, created_at, dict(sorted(labels.items())))
        manifest = manifest.model_copy(update={"files": self._items_digests(group_resources)})
        self._write_manifest(manifest)
        return manifest

    def require_intact(self) -> None:
        """Raise `BackupTampered`, naming each changed, missing or uncovered file, unless every file a step
        reads still matches the sealed manifest and the manifest is signed as the key requires.

        Call it before acting on a backup (each rollback, each rebuild batch): it hashes the items files
        (streamed) and the archive, but only once per file version and process, so a repeated call
        costs a stat per file. What it vouches for is the files at the time of the call."""
        problems = self.integrity_problems()
        if problems:
            raise BackupTampered(self.root, problems)

    def integrity_problems(self, *, cached: bool = True) -> list[str]:
        """Everything that makes the sealed files untrustworthy, one sentence each naming the file; empty
        when intact. `cached=False` re-reads every file (for `kpromote backups verify`)."""
        if not self.manifest_path.exists() and not self.archive_path.exists():
            raise BackupError(f"{self.root} is not sealed")
        coverage, problems = self._coverage(cached=cached)
        if coverage is None:
            return problems
        for relative, expected in coverage.files.items():
            found = digest_file(self.root / relative, cached=cached)
            if found is None:
                problems.append(f"missing {relative}")
            elif found != expected:
                problems.append(
                    f"changed {relative}: sha256 {found.sha256} size {found.size},"
                    f" {MANIFEST_NAME} says sha256 {expected.sha256} size {expected.size}"
                )
        archive = digest_file(self.archive_path, cached=cached)
        if archive is None:
            problems.append(f"missing {ARCHIVE_NAME}")
        elif archive.sha256 != coverage.sha256:
            problems.append(
                f"changed {ARCHIVE_NAME}: sha256 {archive.sha256}, {MANIFEST_NAME} says {coverage.sha256}"
            )
        for name in sorted(DERIVED_FILES - coverage.files.keys()):
            if os.path.lexists(self.root / name):
                problems.append(
                    f"uncovered {name}: present but not in {MANIFEST_NAME} (not added by write_derived)"
                )
        return problems

    def verify(self) -> VerifyReport:
        """Re-read the archive entry by entry (`verify_archive`) and every covered file, uncached: what
        `kpromote backups verify` reports."""
        report = verify_archive(self.archive_path)
        problems = [*report.problems, *self.integrity_problems(cached=False)]
        signed = not problems and self.signing_key is not None
        return VerifyReport(problems=problems, sha256=report.sha256, manifest=report.manifest, signed=signed)

    def write_derived(self, name: str, data: bytes) -> None:
        """Write a file derived from the sealed items (`decisions.json`) and add its digest to the manifest,
        re-signing it, so that steps reading it later can trust it like the items.

        The manifest must verify as signed first: re-signing an edited manifest would launder the edit.
        Idempotent, as at-least-once tasks need: the same bytes again change nothing (and restore a lost
        file); other bytes for a name already covered are refused. The file is renamed into place before
        the manifest that covers it, so a crash in between leaves it uncovered (refused by
        `require_intact`) until the backup step runs again."""
        if name not in DERIVED_FILES:
            raise ValueError(f"{name!r} is not a derived file ({', '.join(sorted(DERIVED_FILES))})")
        try:
            signature, body = split_signature(self.manifest_path.read_bytes())
        except FileNotFoundError:
            raise BackupError(f"{self.root} is not sealed") from None
        problem = signature_problem(signature, body, self.signing_key, MANIFEST_NAME)
        if problem is not None:
            raise BackupTampered(self.root, [problem])
        manifest = Manifest.model_validate_json(body)
        digest = FileDigest(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        listed = manifest.files.get(name)
        if listed is not None and listed != digest:
            raise BackupError(
                f"{self.root / name} is sealed with other content (sha256 {listed.sha256}); not replacing it"
            )
        path = self.root / name
        if listed is None or digest_file(path, cached=False) != digest:
            write_atomically(path, data)
        if listed is None:
            files = dict(sorted({**manifest.files, name: digest}.items()))
            self._write_manifest(manifest.model_copy(update={"files": files}))

    def manifest(self) -> Manifest | None:
        """The outer manifest as written by seal, without re-reading the archive (see `verify_archive`)."""
        try:
            data = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return None
        return Manifest.model_validate_json(data)

    def items(
        self, group_resource: str, offset: int = 0, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Objects `[offset, offset + limit)` of one group-resource in (namespace, name) order.

        Seeks through `items/<gr>.idx`, so a rebuild batch deep into a large group-resource reads only its
        own lines."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError(f"offset and limit must not be negative, got {offset} and {limit}")
        files = self._sealed_items(group_resource)
        return _read_items(*files, offset, limit) if files else iter(())

    def count(self, group_resource: str) -> int:
        """How many objects of one group-resource the sealed backup holds."""
        files = self._sealed_items(group_resource)
        return files[1].stat().st_size // _OFFSET.size if files else 0

    def item(self, ref: ItemRef) -> dict[str, Any] | None:
        """One object by reference: a binary search, the items file being sorted by (namespace, name)."""
        files = self._sealed_items(ref.group_resource)
        if not files:
            return None
        wanted = (ref.namespace, ref.name)
        low, high = 0, files[1].stat().st_size // _OFFSET.size
        with files[0].open("rb") as lines, files[1].open("rb") as index:
            while low < high:
                middle = (low + high) // 2
                obj = _read_line(lines, index, middle)
                key = _key(obj, f"line {middle} of {files[0]}")
                if key == wanted:
                    return obj
                if key < wanted:
                    low = middle + 1
                else:
                    high = middle
        return None

    def _part_path(self, group_resource: str) -> Path:
        return self.root / "parts" / f"{group_resource}.jsonl"

    def _items_paths(self, group_resource: str) -> tuple[Path, Path]:
        return self.root / "items" / f"{group_resource}.jsonl", self.root / "items" / f"{group_resource}.idx"

    def _make_dirs(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self.root.stat().st_mode) != 0o700:
            os.chmod(self.root, 0o700)
        for sub in ("parts", "items"):
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)

    def _part_count(self, group_resource: str) -> int:
        """Lines in an existing part (0 if there is none): what `write_part` returned when it wrote it."""
        try:
            part = self._part_path(group_resource).open("rb")
        except FileNotFoundError:
            return 0
        with part:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: part.read(_BUFFER), b""))

    def _sealed_items(self, group_resource: str) -> tuple[Path, Path] | None:
        """The items and index files of a group-resource, or None when the sealed backup has none."""
        _check_group_resource(group_resource)
        if not self.manifest_path.exists():
            raise BackupError(f"{self.root} is not sealed")
        lines, index = self._items_paths(group_resource)
        return (lines, index) if lines.exists() else None

    def _existing_seal(self) -> Manifest | None:
        """The manifest of a complete earlier seal, or None when the seal must be made (again) from the
        parts: nothing sealed yet, a seal cut short, or files that no longer match (which a re-seal
        restores, the parts giving the same bytes). A manifest is never re-written to cover files as
        they are now: that would make an edited items file look sealed."""
        if not self.archive_path.exists() or not self.manifest_path.exists():
            return None
        problems = self.integrity_problems(cached=False)
        if not problems:
            problems = verify_archive(self.archive_path).problems
        if problems:
            log.warning("re-sealing %s: %s", self.root, "; ".join(problems[:5]))
            return None
        return self.manifest()

    def _items_digests(self, group_resources: list[str]) -> dict[str, FileDigest]:
        """The digest of each items file and index just written, read back from the disk."""
        files: dict[str, FileDigest] = {}
        for group_resource in group_resources:
            for path in self._items_paths(group_resource):
                digest = digest_file(path, cached=False)
                if digest is not None:
                    files[path.relative_to(self.root).as_posix()] = digest
        return dict(sorted(files.items()))

    def _coverage(self, *, cached: bool) -> tuple[_Coverage | None, list[str]]:
        """The manifest's coverage once its signature and shape are checked, else None and why."""
        salt = key_fingerprint(self.signing_key)
        try:
            with self.manifest_path.open("rb") as file:
                version = version_of(os.fstat(file.fileno()))
                hit = _COVERAGE.get(self.manifest_path, version, salt) if cached else None
                if hit is not None:
                    return hit, []
                data = file.read()
        except FileNotFoundError:
            return None, [f"missing {MANIFEST_NAME}"]
        signature, body = split_signature(data)
        problem = signature_problem(signature, body, self.signing_key, MANIFEST_NAME)
        if problem is not None:
            return None, [problem]
        try:
            coverage = _Coverage.model_validate_json(body)
        except ValidationError as error:
            return None, [f"{MANIFEST_NAME} does not parse: {error.errors()[0]['msg']}"]
        problems = list(_coverage_problems(coverage))
        if problems:
            return None, problems
        if cached:
            _COVERAGE.put(self.manifest_path, version, coverage, salt)
        return coverage, []

    def _merge_part(self, group_resource: str) -> float:
        """Sort and deduplicate one part into `items/<gr>.jsonl` plus its offset index; return the part's
        mtime. An empty part (most types of a namespace) gets no items files.

        Holds only the keys and where their lines start, never the objects. Of duplicates (a LIST
        restarted after an expired continue token repeats objects) the last line wins, being the latest
        read. The items directory is synced once by `seal`, after every part is merged."""
        lines_path, index_path = self._items_paths(group_resource)
        positions: dict[tuple[str, str], int] = {}
        with self._part_path(group_resource).open("rb", buffering=_BUFFER) as part:
            stat_result = os.fstat(part.fileno())
            mtime = stat_result.st_mtime
            if stat_result.st_size == 0:
                return mtime
            line_start = 0
            for number, line in enumerate(part, start=1):
                where = f"line {number} of part {group_resource}"
                if not line.endswith(b"\n"):
                    raise BackupError(f"{where} is truncated")
                namespace, name = _key(_loads(line, where), where)
                positions[sys.intern(namespace), name] = line_start
                line_start += len(line)
            order = sorted(positions.items())
            del positions
            with (
                _atomic_file(lines_path, sync_directory=False) as out,
                _atomic_file(index_path, sync_directory=False) as index,
            ):
                written = 0
                for _, line_start in order:
                    part.seek(line_start)
                    index.write(_OFFSET.pack(written))
                    written += out.write(part.readline())
        return mtime

    def _write_archive(
        self, group_resources: list[str], created_at: datetime, labels: dict[str, str]
    ) -> Manifest:
        """Stream `backup.tar.gz` one item at a time and return its manifest (with the archive's digest)."""
        mtime = int(created_at.timestamp())
        items: list[ManifestItem] = []
        counts: dict[str, int] = {}
        with _atomic_file(self.archive_path) as raw:
            hashing = _HashingWriter(raw)
            with (
                gzip.GzipFile(
                    filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=hashing, mtime=0
                ) as gz,
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                _add_entry(tar, VERSION_ENTRY, _VERSION_BYTES, mtime)
                for group_resource in group_resources:
                    lines, index = self._items_paths(group_resource)
                    counts[group_resource] = 0
                    if not lines.exists():
                        continue
                    for obj in _read_items(lines, index, 0, None):
                        namespace, name = _key(obj, f"an item of {group_resource}")
                        data = orjson.dumps(obj, option=orjson.OPT_INDENT_2)
                        path = entry_path(group_resource, namespace, name)
                        _add_entry(tar, path, data, mtime)
                        items.append(
                            ManifestItem(
                                group_resource=group_resource,
                                namespace=namespace,
                                name=name,
                                path=path,
                                sha256=hashlib.sha256(data).hexdigest(),
                                size=len(data),
                            )
                        )
                        counts[group_resource] += 1
                manifest = Manifest(
                    created_at=created_at, labels=labels, items=items, counts=counts, total_items=len(items)
                )
                inner = Manifest.__pydantic_serializer__.to_json(
                    manifest, by_alias=True, exclude={"sha256", "files"}
                )
                _add_entry(tar, MANIFEST_ENTRY, inner, mtime)
        return manifest.model_copy(update={"sha256": hashing.hexdigest()})

    def _write_manifest(self, manifest: Manifest) -> None:
        with _atomic_file(self.manifest_path) as out:
            out.write(sign(manifest.model_dump_json(by_alias=True).encode(), self.signing_key))


def verify_archive(path: Path) -> VerifyReport:
    """Re-read an archive and check it against its own manifest, and against `manifest.json` beside it.

    Streams the archive once (so memory is one entry plus a digest per entry), recomputing each entry's
    sha256. Reports entries missing from the archive, entries the manifest does not list, mismatched
    digests or sizes, a bad metadata/version, truncation (including a lost gzip trailer, which tarfile
    alone does not notice) and an outer manifest that describes another archive."""
    problems: list[str] = []
    names: set[str] = set()
    seen: dict[str, tuple[str, int]] = {}
    version: bytes | None = None
    inner: Manifest | None = None
    with path.open("rb") as file:
        raw = _HashingReader(file)
        try:
            for member, content in _members(raw):
                if member.name in names:
                    problems.append(f"duplicate entry {member.name}")
                names.add(member.name)
                if content is None:
                    problems.append(f"unexpected entry {member.name}: not a regular file")
                elif member.name == VERSION_ENTRY:
                    version = content.read(64)
                elif member.name == MANIFEST_ENTRY:
                    try:
                        inner = Manifest.model_validate_json(content.read())
                    except ValidationError as error:
                        problems.append(f"{MANIFEST_ENTRY} does not parse: {error}")
                else:
                    seen[member.name] = _digest(content)
        except _READ_ERRORS as error:
            problems.append(f"archive is unreadable (truncated or corrupt): {type(error).__name__}: {error}")
        raw.drain()
    digest = raw.hexdigest()
    if version != _VERSION_BYTES:
        problems.append(f"{VERSION_ENTRY} is {version!r}, expected {_VERSION_BYTES!r}")
    if inner is None:
        problems.append(f"no {MANIFEST_ENTRY}")
    else:
        problems.extend(_check_manifest(inner, seen))
        outer_problems, files = _check_outer(path.with_name(MANIFEST_NAME), inner, digest)
        problems.extend(outer_problems)
        inner = inner.model_copy(update={"sha256": digest, "files": files})
    return VerifyReport(problems=problems, sha256=digest, manifest=inner)


def iter_archive(path: Path) -> Iterator[tuple[ItemRef, dict[str, Any]]]:
    """Stream the objects of an archive with their references, in archive order.

    For rollback from the archive alone and for `kpromote backups show`. Damage surfaces as an exception
    when it is reached, possibly after some items were yielded: call `verify_archive` first when acting on
    the items. Entries other than `resources/<gr>/namespaces/<ns>/<name>.json` and
    `resources/<gr>/cluster/<name>.json` (such as Velero's preferred-version copies) are skipped."""
    with path.open("rb") as file:
        for member, content in _members(file):
            if content is not None and (ref := _ref_of(member.name)) is not None:
                yield ref, orjson.loads(content.read())


def _check_manifest(manifest: Manifest, seen: Mapping[str, tuple[str, int]]) -> Iterator[str]:
    if manifest.format_version != FORMAT_VERSION:
        yield f"formatVersion is {manifest.format_version!r}, expected {FORMAT_VERSION!r}"
    listed: set[str] = set()
    for item in manifest.items:
        expected_path = entry_path(item.group_resource, item.namespace, item.name)
        if item.path != expected_path:
            yield f"{item.ref} is listed at {item.path}, expected {expected_path}"
        if item.path in listed:
            yield f"{item.path} is listed twice"
        listed.add(item.path)
        found = seen.get(item.path)
        if found is None:
            yield f"missing entry {item.path}"
        elif found != (item.sha256, item.size):
            yield (
                f"mismatched entry {item.path}: sha256 {found[0]} size {found[1]},"
                f" manifest says sha256 {item.sha256} size {item.size}"
            )
    for extra in sorted(seen.keys() - listed):
        yield f"extra entry {extra} is not in the manifest"
    actual = Counter(item.group_resource for item in manifest.items)
    for group_resource in sorted(actual.keys() | manifest.counts.keys()):
        counted = manifest.counts.get(group_resource)
        if actual[group_resource] != counted:
            yield f"counts[{group_resource}] is {counted}, but the items list {actual[group_resource]}"
    if manifest.total_items != len(manifest.items):
        yield f"totalItems is {manifest.total_items}, but the items list {len(manifest.items)}"


def _coverage_problems(coverage: _Coverage) -> Iterator[str]:
    """A manifest must cover the items of every type it counts, and nothing but files steps read: a path
    of its choosing would otherwise be hashed (a device that never ends, a file outside the backup)."""
    if coverage.sha256 is None:
        yield f"{MANIFEST_NAME} has no archive sha256"
    for relative in coverage.files:
        if relative not in DERIVED_FILES and not _ITEMS_FILE.fullmatch(relative):
            yield f"{MANIFEST_NAME} covers an unexpected path {relative!r}"
    for group_resource, count in coverage.counts.items():
        for suffix in ("jsonl", "idx"):
            relative = f"items/{group_resource}.{suffix}"
            if count > 0 and relative not in coverage.files:
                yield f"{relative} is not covered by {MANIFEST_NAME} (sealed by an older kosmos-promote?)"


def _check_outer(path: Path, inner: Manifest, digest: str) -> tuple[list[str], dict[str, FileDigest]]:
    """Whether `manifest.json` describes this archive, and the files it covers beside it (which only it
    records) when it does."""
    try:
        outer = Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return [], {}
    except ValidationError as error:
        return [f"{path.name} does not parse: {error}"], {}
    problems = []
    if outer.sha256 != digest:
        problems.append(f"archive sha256 is {digest}, {path.name} says {outer.sha256}")
    if outer.model_copy(update={"sha256": None, "files": {}}) != inner:
        problems.append(f"{path.name} differs from the archive's {MANIFEST_ENTRY}")
    return problems, {} if problems else outer.files


def _members(file: IO[bytes]) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    """Each tar member with a reader of its content (None for non-files), streaming.

    gzip is decoded by GzipFile rather than by tarfile so that reading on to the end checks the gzip
    trailer (CRC and length): a lost tail is then an error, not a silently shorter archive. TarFile
    remembers every member it read (about 0.5 KB each), so they are forgotten as they are passed on."""
    with gzip.GzipFile(fileobj=file, mode="rb") as gz:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()
                yield member, tar.extractfile(member) if member.isfile() else None
        while gz.read(_BUFFER):
            pass


def _ref_of(path: str) -> ItemRef | None:
    segments = path.split("/")
    if segments[0] != "resources" or not segments[-1].endswith(".json"):
        return None
    name = segments[-1].removesuffix(".json")
    if len(segments) == 5 and segments[2] == "namespaces":
        return ItemRef(GroupResource(segments[1]), segments[3], name)
    if len(segments) == 4 and segments[2] == "cluster":
        return ItemRef(GroupResource(segments[1]), "", name)
    return None


def _digest(content: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := content.read(_BUFFER):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _add_entry(tar: tarfile.TarFile, path: str, data: bytes, mtime: int) -> None:
    """Add one regular file with fixed metadata (owner root, 0600 since entries hold Secrets), so the
    archive's bytes do not depend on who sealed it or when. TarFile remembers every member it wrote,
    which nothing here needs: forgetting them keeps memory flat."""
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))
    tar.members.clear()


def _read_items(
    lines_path: Path, index_path: Path, offset: int, limit: int | None
) -> Iterator[dict[str, Any]]:
    with index_path.open("rb") as index:
        index.seek(offset * _OFFSET.size)
        entry = index.read(_OFFSET.size)
    if len(entry) < _OFFSET.size:
        return
    with lines_path.open("rb", buffering=_BUFFER) as lines:
        lines.seek(_OFFSET.unpack(entry)[0])
        for line in itertools.islice(lines, limit):
            yield orjson.loads(line)


def _read_line(lines: IO[bytes], index: IO[bytes], number: int) -> dict[str, Any]:
    index.seek(number * _OFFSET.size)
    lines.seek(_OFFSET.unpack(index.read(_OFFSET.size))[0])
    return orjson.loads(lines.readline())


def _loads(line: bytes, where: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise BackupError(f"{where} is not JSON: {error}") from error


def _key(obj: Any, where: str) -> tuple[str, str]:
    """(namespace, name) of an object, refusing what could not become an archive path."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{where} has no metadata")
    name = metadata.get("name")
    namespace = metadata.get("namespace") or ""
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise ValueError(f"{where} has no metadata.name, or a namespace that is not a string")
    _check_segment(name, f"{where}: metadata.name")
    if namespace:
        _check_segment(namespace, f"{where}: metadata.namespace")
    return namespace, name


def _check_segment(value: str, what: str) -> None:
    """Refuse values that would escape or break a path (Kubernetes names never contain these)."""
    if not value or value in {".", ".."} or "/" in value or "\0" in value:
        raise ValueError(f"{what} {value!r} cannot be a path segment")


def _check_group_resource(value: str) -> None:
    if not _GROUP_RESOURCE.fullmatch(value):
        raise ValueError(f"{value!r} is not a group-resource such as 'pods' or 'deployments.apps'")


def write_atomically(final: Path, data: bytes) -> None:
    """Small files beside a backup (decisions, run state): whole and durable, or the previous version, even
    when two threads of one worker write the same file at once."""
    with _atomic_file(final) as out:
        out.write(data)


@contextmanager
def _atomic_file(final: Path, *, sync_directory: bool = True) -> Iterator[IO[bytes]]:
    """A 0600 file that appears at `final` complete and durable, or not at all.

    Written under a random name in the same directory (so concurrent writers never share a file), then
    fsynced, renamed over `final` and the directory fsynced, so a crash leaves the old file or the new
    one. The temporary is removed on error. `sync_directory=False` leaves the rename's durability to the
    caller, who syncs the directory once after several files. An empty file is not synced at all: lost
    in a power cut, it reads as what it held, nothing (only parts of empty types are empty)."""
    temporary = final.with_name(f"{final.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with open(descriptor, "wb", buffering=_BUFFER) as out:
            yield out
            out.flush()
            empty = out.tell() == 0
            if not empty:
                os.fsync(out.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if sync_directory and not empty:
        _fsync_directory(final.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _HashingWriter(io.RawIOBase):
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


class _HashingReader(io.RawIOBase):
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
        while self.read(_BUFFER):
            pass

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
