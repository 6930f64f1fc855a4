"""The durable backup of one namespace, `BackupDir`: parts written per type, sealed into the items files
steps read and a Velero-layout archive, covered by a signed manifest.

A backup is built on one shared volume by a backup task's threads, and at-least-once delivery can run that
task twice at once on different machines: each thread writes the objects of one group-resource as a part,
then the seal merges the parts into `items/<gr>.jsonl` (sorted, deduplicated, indexed for random access by
the rebuild batches, `itemfiles.py`) and into `backup.tar.gz` (Velero format 1.1.0, `tarball.py`).

Because two runs may overlap, every file is written through `atomic.py` and sealing is deterministic: the
archive's bytes depend only on the parts and the labels (`createdAt` is the time the last part was
written). Two seals racing therefore rename identical files over each other, and no interleaving can leave
an archive next to a manifest.json that describes another archive.

Memory does not depend on the objects' size: parts are streamed to disk, sealing sorts one part at a time
holding only `(namespace, name) -> line offset`, and the archive is written and read one item at a time.
What grows with the number of objects is the manifest (about 0.4 KB per item), which the API returns
whole, and during verification a digest per entry.

Steps read the items files, not the archive, so `manifest.json` also records the sha256 and size of every
file a step reads (`files`: the items files, their indexes, and the plan added after the seal by
`write_derived`), and is signed when `KPROMOTE_BACKUP_SIGNING_KEY` is set (`integrity.py`).
`require_intact` checks all of it (`verify.py`) before a step trusts the backup.

Where the backup is kept is a `BackupStore` (`store.py`). The folder `root` is where it is built and read;
with a local store that folder is the store itself and nothing is copied. With an object store `root` is
the worker's working copy: each file is published when written (the manifest last, the commit point of a
seal), and a reader fetches the manifest (again only when its ETag changed) and the files it needs, which
it trusts only once they match the manifest's digests, so a worker's copy may be stale or wiped at any
time. No step then needs a folder another worker wrote.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import SecretStr

from shared.backup import tarball, working_copy
from shared.backup.atomic import atomic_file, fsync_directory, write_atomically
from shared.backup.errors import BackupError, BackupTampered
from shared.backup.integrity import (
    BUFFER,
    FileDigest,
    FileVersion,
    digest_file,
    sign,
    signature_problem,
    split_signature,
    version_of,
)
from shared.backup.itemfiles import item_count, merge_part, read_items
from shared.backup.layout import (
    ARCHIVE_NAME,
    DERIVED_FILES,
    MANIFEST_ENTRY,
    MANIFEST_NAME,
    VERSION_BYTES,
    VERSION_ENTRY,
    below,
    check_group_resource,
    covered_path,
    entry_path,
    object_key,
    run_key,
)
from shared.backup.manifest import Manifest, ManifestItem
from shared.backup.store import BackupStore
from shared.backup.verify import VerifyReport, seal_problems, verify_archive
from shared.settings import settings
from shared.single_flight import SingleFlight

log = logging.getLogger(__name__)


class _SealedMeanwhile(Exception):
    """The backup was sealed while a part was being written: the part is discarded."""


_STORED_MANIFESTS: dict[Path, tuple[str, FileVersion | None]] = {}
"""Working copy of a manifest -> (the store's tag of what was fetched, the copy's file version): a reader
fetches the manifest again only when the store holds another one (or the copy changed)."""


@dataclass(frozen=True)
class BackupDir:
    """One namespace's backup directory. Holding it touches nothing on disk; the directory is created
    (mode 0700: it holds Secrets) by the first write."""

    root: Path
    signing_key: SecretStr | None = field(
        default_factory=lambda: settings().backup_signing_key, repr=False, compare=False
    )
    """Signs the manifest at seal and is required of it by `require_intact` (KPROMOTE_BACKUP_SIGNING_KEY)."""
    store: BackupStore | None = field(default=None, repr=False, compare=False)
    """Where the backup is kept when `root` is only a working copy of it; None when `root` is the backup."""
    key: str = ""
    """The run folder's key in `store`."""
    _synced: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    """Files this object already brought up to date from the store: one task sees one version of them."""

    @classmethod
    def of_run(
        cls, store: BackupStore, policy: str, namespace: str, run_id: str, cache_dir: Path
    ) -> BackupDir:
        """One run's backup of one namespace in `store`, built and read in place when the store is a local
        folder, else in a working copy under `cache_dir`."""
        key = run_key(policy, namespace, run_id)
        local = store.local_path(key)
        if local is not None:
            return cls(local)
        return cls(cls.working_copies(store, cache_dir) / key, store=store, key=key)

    @staticmethod
    def working_copies(store: BackupStore, cache_dir: Path) -> Path:
        """The folder under which `of_run` keeps a worker's working copies of `store`'s backups (what
        `working_copy.sweep` tidies); nothing is kept there for a store that is a local folder."""
        return cache_dir / store.cache_name()

    def held(self) -> AbstractContextManager[None]:
        """Keep the working copy while the block uses it (`working_copy.held`); a backup read in place
        has none to keep."""
        return nullcontext() if self.store is None else working_copy.held(self.root)

    @property
    def location(self) -> str:
        """Where the archive is kept, as people name it: a path, or an `s3://` URL."""
        if self.store is None:
            return str(self.archive_path)
        return self.store.url(f"{self.key}/{ARCHIVE_NAME}")

    @property
    def archive_path(self) -> Path:
        return below(self.root, ARCHIVE_NAME)

    def open_archive(self) -> AbstractContextManager[IO[bytes]]:
        """The archive as a stream from where it is kept (`FileNotFoundError` when there is none yet), for
        reading it once without a working copy (`kpromote backups show`)."""
        if self.store is None:
            return self.archive_path.open("rb")
        return self.store.open(f"{self.key}/{ARCHIVE_NAME}")

    @property
    def manifest_path(self) -> Path:
        return below(self.root, MANIFEST_NAME)

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
        check_group_resource(group_resource)
        if self._stored(ARCHIVE_NAME):
            return self._part_count(group_resource)
        self._make_dirs()
        count = 0
        part = self._part_path(group_resource)
        try:
            with atomic_file(part) as out:
                for count, obj in enumerate(objects, start=1):
                    object_key(obj, f"object {count} of {group_resource}")
                    out.write(orjson.dumps(obj))
                    out.write(b"\n")
                if self._stored(ARCHIVE_NAME):
                    raise _SealedMeanwhile
            if self.store is not None:
                if self._stored(ARCHIVE_NAME):
                    raise _SealedMeanwhile
                self._publish(part)
        except _SealedMeanwhile:
            return self._part_count(group_resource)
        return count

    def parts(self) -> list[str]:
        """The group-resources that have a part, sorted."""
        if self.store is not None:
            return sorted(
                stored.key.rpartition("/")[2].removesuffix(".jsonl")
                for stored in self.store.list_prefix(f"{self.key}/parts/")
                if stored.key.endswith(".jsonl")
            )
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
        for group_resource in group_resources:
            # Always the stored part: another run may have rewritten it, and its time in the store (which
            # the copy takes) is what every worker sealing this backup agrees on for `createdAt`.
            self._fetch(self._part_path(group_resource))
        written = max(
            merge_part(self._part_path(group_resource), *self._items_paths(group_resource), group_resource)
            for group_resource in group_resources
        )
        fsync_directory(self.root / "items")
        for group_resource in group_resources:
            for path in self._items_paths(group_resource):
                if path.exists():
                    self._publish(path)
        created_at = datetime.fromtimestamp(int(written), UTC)
        manifest = self._write_archive(group_resources, created_at, dict(sorted(labels.items())))
        self._publish(self.archive_path)
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
            raise BackupTampered(self._name, problems)

    def integrity_problems(self, *, cached: bool = True) -> list[str]:
        """Everything that makes the sealed files untrustworthy, one sentence each naming the file; empty
        when intact (`verify.seal_problems`). `cached=False` re-reads every file (and, from a store, fetches
        every file again)."""
        self._sync_sealed(fresh=not cached)
        if self.store is not None and not self.manifest_path.exists():
            raise BackupError(f"{self._name} is not sealed")
        return seal_problems(self.root, self.signing_key, cached=cached)

    def verify(self) -> VerifyReport:
        """Re-read the archive entry by entry (`verify_archive`) and every covered file, uncached: what
        `kpromote backups verify` reports."""
        self._sync_sealed(fresh=True)
        report = verify_archive(self.archive_path)
        problems = [*report.problems, *self.integrity_problems(cached=False)]
        signed = not problems and self.signing_key is not None
        return VerifyReport(problems=problems, sha256=report.sha256, manifest=report.manifest, signed=signed)

    def write_derived(self, name: str, data: bytes) -> None:
        """Write a file derived from the sealed items (`plan.json`) and add its digest to the manifest,
        re-signing it, so that steps reading it later can trust it like the items.

        The manifest must verify as signed first: re-signing an edited manifest would launder the edit.
        Idempotent, as at-least-once tasks need: the same bytes again change nothing (and restore a lost
        file); other bytes for a name already covered are refused. The file is renamed into place before
        the manifest that covers it, so a crash in between leaves it uncovered (refused by
        `require_intact`) until the backup step runs again."""
        if name not in DERIVED_FILES:
            raise ValueError(f"{name!r} is not a derived file ({', '.join(sorted(DERIVED_FILES))})")
        self._sync_manifest()
        try:
            signature, body = split_signature(self.manifest_path.read_bytes())
        except FileNotFoundError:
            raise BackupError(f"{self._name} is not sealed") from None
        problem = signature_problem(signature, body, self.signing_key, MANIFEST_NAME)
        if problem is not None:
            raise BackupTampered(self._name, [problem])
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
            self._publish(path)
        elif self.store is not None and not self._stored(name):
            self._publish(path)
        if listed is None:
            files = dict(sorted({**manifest.files, name: digest}.items()))
            self._write_manifest(manifest.model_copy(update={"files": files}))

    def read_derived(self, name: str) -> bytes | None:
        """The bytes of a derived file (`plan.json`), or None if it has not been written. Trust them only
        after `require_intact`, which checks them against the manifest."""
        if name not in DERIVED_FILES:
            raise ValueError(f"{name!r} is not a derived file ({', '.join(sorted(DERIVED_FILES))})")
        if self.store is not None:
            manifest = self.manifest()
            self._bring(name, manifest.files.get(name) if manifest is not None else None)
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def manifest(self) -> Manifest | None:
        """The outer manifest as written by seal, without re-reading the archive (see `verify_archive`).

        Parsed once per process and file version: every rebuild batch asks for it, and a 10,000-object
        manifest is megabytes of JSON (the model is frozen, so sharing it is safe)."""
        self._sync_manifest()
        try:
            version = self.manifest_path.stat()
        except FileNotFoundError:
            return None
        with _parsing_manifests.hold(self.manifest_path):  # one parse when a worker's threads all ask
            return _parsed_manifest(
                self.manifest_path, version.st_ino, version.st_mtime_ns, version.st_ctime_ns, version.st_size
            )

    def items(
        self, group_resource: str, offset: int = 0, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Objects `[offset, offset + limit)` of one group-resource in (namespace, name) order.

        Seeks through `items/<gr>.idx`, so a rebuild batch deep into a large group-resource reads only its
        own lines."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError(f"offset and limit must not be negative, got {offset} and {limit}")
        files = self._sealed_items(group_resource)
        return read_items(*files, offset, limit) if files else iter(())

    def count(self, group_resource: str) -> int:
        """How many objects of one group-resource the sealed backup holds."""
        files = self._sealed_items(group_resource)
        return item_count(files[1]) if files else 0

    def _part_path(self, group_resource: str) -> Path:
        return below(self.root, f"parts/{group_resource}.jsonl")

    def _items_paths(self, group_resource: str) -> tuple[Path, Path]:
        stem = f"items/{group_resource}"
        return below(self.root, f"{stem}.jsonl"), below(self.root, f"{stem}.idx")

    def _make_dirs(self) -> None:
        """The backup's folders, mode 0700. Checked with one stat once they exist (every part written
        asks): three mkdir calls each failing with "exists" were 4 % of a worker's Python time."""
        if os.path.isdir(below(self.root, "items")):  # made last, so the others are there too
            return
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self.root.stat().st_mode) != 0o700:
            os.chmod(self.root, 0o700)
        for sub in ("parts", "items"):
            below(self.root, sub).mkdir(mode=0o700, exist_ok=True)

    def _part_count(self, group_resource: str) -> int:
        """Lines in an existing part (0 if there is none): what `write_part` returned when it wrote it."""
        self._fetch(self._part_path(group_resource))
        try:
            part = self._part_path(group_resource).open("rb")
        except FileNotFoundError:
            return 0
        with part:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: part.read(BUFFER), b""))

    def _sealed_items(self, group_resource: str) -> tuple[Path, Path] | None:
        """The items and index files of a group-resource, or None when the sealed backup has none."""
        check_group_resource(group_resource)
        manifest = self.manifest()
        if manifest is None:
            raise BackupError(f"{self._name} is not sealed")
        lines, index = self._items_paths(group_resource)
        if self.store is not None:
            for path in (lines, index):
                relative = path.relative_to(self.root).as_posix()
                self._bring(relative, manifest.files.get(relative))
        return (lines, index) if lines.exists() else None

    def _existing_seal(self) -> Manifest | None:
        """The manifest of a complete earlier seal, or None when the seal must be made (again) from the
        parts: nothing sealed yet, a seal cut short, or files that no longer match (which a re-seal
        restores, the parts giving the same bytes). A manifest is never re-written to cover files as
        they are now: that would make an edited items file look sealed."""
        if not self._stored(ARCHIVE_NAME) or not self._stored(MANIFEST_NAME):
            return None
        problems = self.integrity_problems(cached=False)
        if not problems:
            problems = verify_archive(self.archive_path).problems
        if problems:
            log.warning("re-sealing %s: %s", self._name, "; ".join(problems[:5]))
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

    def _write_archive(
        self, group_resources: list[str], created_at: datetime, labels: dict[str, str]
    ) -> Manifest:
        """Stream `backup.tar.gz` one item at a time and return its manifest (with the archive's digest)."""
        mtime = int(created_at.timestamp())
        items: list[ManifestItem] = []
        counts: dict[str, int] = {}
        with atomic_file(self.archive_path) as raw:
            hashing = tarball.HashingWriter(raw)
            with tarball.writing(hashing) as tar:
                tar.add(VERSION_ENTRY, VERSION_BYTES, mtime)
                for group_resource in group_resources:
                    lines, index = self._items_paths(group_resource)
                    counts[group_resource] = 0
                    if not lines.exists():
                        continue
                    for obj in read_items(lines, index, 0, None):
                        namespace, name = object_key(obj, f"an item of {group_resource}")
                        data = orjson.dumps(obj, option=orjson.OPT_INDENT_2)
                        path = entry_path(group_resource, namespace, name)
                        tar.add(path, data, mtime)
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
                tar.add(MANIFEST_ENTRY, inner, mtime)
        return manifest.model_copy(update={"sha256": hashing.hexdigest()})

    def _write_manifest(self, manifest: Manifest) -> None:
        with atomic_file(self.manifest_path) as out:
            out.write(sign(manifest.model_dump_json(by_alias=True).encode(), self.signing_key))
        self._publish(self.manifest_path)
        _STORED_MANIFESTS.pop(self.manifest_path, None)
        self._synced.add(MANIFEST_NAME)

    # ---------------------------------------------------------------- the store behind a working copy
    @property
    def _name(self) -> Path | str:
        """The backup as messages name it: its folder, or its run folder's URL in the store."""
        return self.root if self.store is None else self.store.url(self.key)

    def _stored(self, relative: str) -> bool:
        if self.store is None:
            return below(self.root, relative).exists()
        return self.store.stat(f"{self.key}/{relative}") is not None

    def _publish(self, path: Path) -> None:
        """Make a file just written in the working copy visible to every worker (nothing to do when the
        folder is the store)."""
        if self.store is not None:
            self.store.put_file(f"{self.key}/{path.relative_to(self.root).as_posix()}", path)

    def _fetch(self, path: Path) -> bool:
        """Replace the working copy of a file with the stored one (removing the copy when the store has none);
        whether there is one."""
        if self.store is None:
            return path.exists()
        if self.store.get_file(f"{self.key}/{path.relative_to(self.root).as_posix()}", path) is None:
            path.unlink(missing_ok=True)
            return False
        return True

    def _bring(self, relative: str, expected: FileDigest | None) -> None:
        """Have a working copy of a sealed file: kept when it matches the manifest's digest (hashed once
        per file version), else fetched. Whether a fetched copy matches is for `require_intact` to say."""
        path = below(self.root, relative)
        if expected is None or digest_file(path) != expected:
            self._fetch(path)

    def _sync_manifest(self, *, fresh: bool = False) -> None:
        """Bring the working copy of `manifest.json` up to date with the store, once per object (`fresh`:
        fetch it again). A manifest gone from the store takes the copy and its archive with it."""
        if self.store is None or (MANIFEST_NAME in self._synced and not fresh):
            return
        path = self.manifest_path
        found = self.store.stat(f"{self.key}/{MANIFEST_NAME}")
        known = _STORED_MANIFESTS.get(path)
        if found is None:
            path.unlink(missing_ok=True)
            self.archive_path.unlink(missing_ok=True)
        elif fresh or known is None or known != (found.tag, _version(path)):
            self._make_dirs()
            if self._fetch(path):
                _STORED_MANIFESTS[path] = (found.tag, _version(path))
        self._synced.add(MANIFEST_NAME)

    def _sync_sealed(self, *, fresh: bool) -> None:
        """Working copies of everything `require_intact` checks: the manifest, each file it covers and the
        archive; and a derived file the store holds uncovered, so that it is refused as it would be in a
        folder. `fresh` fetches every file again (a verification by a person trusts no copy)."""
        if self.store is None:
            return
        self._sync_manifest(fresh=fresh)
        try:
            manifest = self.manifest()
        except ValueError:
            return  # the check reports a manifest that does not parse
        if manifest is None:
            return
        for relative, expected in manifest.files.items():
            if covered_path(relative):
                self._bring(relative, None if fresh else expected)
        archive = digest_file(self.archive_path) if not fresh else None
        if archive is None or archive.sha256 != manifest.sha256:
            self._fetch(self.archive_path)
        for name in DERIVED_FILES - manifest.files.keys():
            self._fetch(self.root / name)


def _version(path: Path) -> FileVersion | None:
    try:
        return version_of(path.stat())
    except FileNotFoundError:
        return None


_parsing_manifests = SingleFlight()


@lru_cache(maxsize=16)
def _parsed_manifest(path: Path, inode: int, mtime_ns: int, ctime_ns: int, size: int) -> Manifest | None:
    """One parse per file version (the arguments after `path` only key the cache)."""
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
