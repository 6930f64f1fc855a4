"""Durable, Velero-layout backups of one namespace: parts per type, sealed into one archive, tamper-evident
(a manifest covering every file steps read, signed with KPROMOTE_BACKUP_SIGNING_KEY when set).

`archive.BackupDir` is the backup; the other modules are its parts: `atomic` (files that appear whole or
not at all), `layout` (names and paths), `manifest` (what was sealed), `itemfiles` (the sorted, indexed
items steps read), `tarball` (the Velero tar.gz, written and read as a stream), `integrity` (digests and
the signature) and `verify` (whether a sealed backup can be trusted)."""

from shared.backup.archive import BackupDir
from shared.backup.atomic import write_atomically
from shared.backup.errors import BackupError, BackupTampered
from shared.backup.integrity import FileDigest
from shared.backup.layout import (
    ARCHIVE_NAME,
    DERIVED_FILES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PLAN_NAME,
    backup_root,
    entry_path,
)
from shared.backup.manifest import Manifest, ManifestItem
from shared.backup.tarball import iter_archive
from shared.backup.verify import VerifyReport, verify_archive

__all__ = [
    "ARCHIVE_NAME",
    "DERIVED_FILES",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "PLAN_NAME",
    "BackupDir",
    "BackupError",
    "BackupTampered",
    "FileDigest",
    "Manifest",
    "ManifestItem",
    "VerifyReport",
    "backup_root",
    "entry_path",
    "iter_archive",
    "verify_archive",
    "write_atomically",
]
