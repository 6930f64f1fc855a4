"""Durable, Velero-layout backups of one namespace: parts per type, sealed into one archive."""

from shared.backup.archive import (
    ARCHIVE_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    BackupDir,
    BackupError,
    Manifest,
    ManifestItem,
    VerifyReport,
    backup_root,
    entry_path,
    iter_archive,
    verify_archive,
    write_atomically,
)

__all__ = [
    "ARCHIVE_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BackupDir",
    "BackupError",
    "Manifest",
    "ManifestItem",
    "VerifyReport",
    "backup_root",
    "entry_path",
    "iter_archive",
    "verify_archive",
    "write_atomically",
]
