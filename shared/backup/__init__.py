"""Durable, Velero-layout backups of one namespace, built by concurrent collect tasks and one seal."""

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
]
