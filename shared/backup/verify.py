"""Whether a sealed backup can be trusted, checked two ways.

`verify_archive` re-reads the archive entry by entry against its own manifest and against `manifest.json`
beside it: the full check, for `kpromote backups verify` and before a seal is reused. `seal_problems`
checks what steps actually read, the items files, their indexes and the plan, against the digests
`manifest.json` records for them, and that manifest's signature: the check before each rollback and each
rebuild batch, cached per file version so that a repeated call costs a stat per file.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import SecretStr, ValidationError

from shared.backup.errors import BackupError
from shared.backup.integrity import (
    FileDigest,
    VersionCache,
    digest_file,
    digest_stream,
    key_fingerprint,
    signature_problem,
    split_signature,
    version_of,
)
from shared.backup.layout import (
    ARCHIVE_NAME,
    DERIVED_FILES,
    FORMAT_VERSION,
    MANIFEST_ENTRY,
    MANIFEST_NAME,
    VERSION_BYTES,
    VERSION_ENTRY,
    below,
    covered_path,
    entry_path,
)
from shared.backup.manifest import Coverage, Manifest
from shared.backup.tarball import READ_ERRORS, HashingReader, members
from shared.single_flight import SingleFlight

_COVERAGE: Final[VersionCache[Coverage]] = VersionCache(256)
"""Manifests already found signed and well-formed, per file version and signing key."""
_checking = SingleFlight()


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
        raw = HashingReader(file)
        try:
            for member, content in members(raw):
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
                    seen[member.name] = digest_stream(content)
        except READ_ERRORS as error:
            problems.append(f"archive is unreadable (truncated or corrupt): {type(error).__name__}: {error}")
        raw.drain()
    digest = raw.hexdigest()
    if version != VERSION_BYTES:
        problems.append(f"{VERSION_ENTRY} is {version!r}, expected {VERSION_BYTES!r}")
    if inner is None:
        problems.append(f"no {MANIFEST_ENTRY}")
    else:
        problems.extend(_check_manifest(inner, seen))
        outer_problems, files = _check_outer(path.with_name(MANIFEST_NAME), inner, digest)
        problems.extend(outer_problems)
        inner = inner.model_copy(update={"sha256": digest, "files": files})
    return VerifyReport(problems=problems, sha256=digest, manifest=inner)


def seal_problems(root: Path, signing_key: SecretStr | None, *, cached: bool = True) -> list[str]:
    """Everything that makes the sealed files in `root` untrustworthy, one sentence each naming the file;
    empty when intact. `cached=False` re-reads every file (for `kpromote backups verify`)."""
    manifest_path, archive_path = below(root, MANIFEST_NAME), below(root, ARCHIVE_NAME)
    if not manifest_path.exists() and not archive_path.exists():
        raise BackupError(f"{root} is not sealed")
    coverage, problems = _coverage(manifest_path, signing_key, cached=cached)
    if coverage is None:
        return problems
    for relative, expected in coverage.files.items():
        found = digest_file(below(root, relative), cached=cached)
        if found is None:
            problems.append(f"missing {relative}")
        elif found != expected:
            problems.append(
                f"changed {relative}: sha256 {found.sha256} size {found.size},"
                f" {MANIFEST_NAME} says sha256 {expected.sha256} size {expected.size}"
            )
    archive = digest_file(archive_path, cached=cached)
    if archive is None:
        problems.append(f"missing {ARCHIVE_NAME}")
    elif archive.sha256 != coverage.sha256:
        problems.append(
            f"changed {ARCHIVE_NAME}: sha256 {archive.sha256}, {MANIFEST_NAME} says {coverage.sha256}"
        )
    for name in sorted(DERIVED_FILES - coverage.files.keys()):
        if os.path.lexists(root / name):
            problems.append(
                f"uncovered {name}: present but not in {MANIFEST_NAME} (not added by write_derived)"
            )
    return problems


def _coverage(
    manifest_path: Path, signing_key: SecretStr | None, *, cached: bool
) -> tuple[Coverage | None, list[str]]:
    """The manifest's coverage once its signature and shape are checked, else None and why."""
    if not cached:
        return _checked_coverage(manifest_path, signing_key, cached=False)
    with _checking.hold(manifest_path):  # the threads of one worker check the same manifest at once
        return _checked_coverage(manifest_path, signing_key, cached=True)


def _checked_coverage(
    manifest_path: Path, signing_key: SecretStr | None, *, cached: bool
) -> tuple[Coverage | None, list[str]]:
    salt = key_fingerprint(signing_key)
    try:
        with manifest_path.open("rb") as file:
            version = version_of(os.fstat(file.fileno()))
            hit = _COVERAGE.get(manifest_path, version, salt) if cached else None
            if hit is not None:
                return hit, []
            data = file.read()
    except FileNotFoundError:
        return None, [f"missing {MANIFEST_NAME}"]
    signature, body = split_signature(data)
    problem = signature_problem(signature, body, signing_key, MANIFEST_NAME)
    if problem is not None:
        return None, [problem]
    try:
        coverage = Coverage.model_validate_json(body)
    except ValidationError as error:
        return None, [f"{MANIFEST_NAME} does not parse: {error.errors()[0]['msg']}"]
    problems = list(_coverage_problems(coverage))
    if problems:
        return None, problems
    if cached:
        _COVERAGE.put(manifest_path, version, coverage, salt)
    return coverage, []


def _coverage_problems(coverage: Coverage) -> Iterator[str]:
    """A manifest must cover the items of every type it counts, and nothing but files steps read: a path
    of its choosing would otherwise be hashed (a device that never ends, a file outside the backup)."""
    if coverage.sha256 is None:
        yield f"{MANIFEST_NAME} has no archive sha256"
    for relative in coverage.files:
        if not covered_path(relative):
            yield f"{MANIFEST_NAME} covers an unexpected path {relative!r}"
    for group_resource, count in coverage.counts.items():
        for suffix in ("jsonl", "idx"):
            relative = f"items/{group_resource}.{suffix}"
            if count > 0 and relative not in coverage.files:
                yield f"{relative} is not covered by {MANIFEST_NAME} (sealed by an older kosmos-promote?)"


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
