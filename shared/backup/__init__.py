"""Durable, Velero-layout backups of one namespace: parts per type, sealed into one archive, tamper-evident
(a manifest covering every file steps read, signed with KPROMOTE_BACKUP_SIGNING_KEY when set)."""

from shared.backup.archive import (
    ARCHIVE_NAME,
    DECISIONS_NAME,
    DERIVED_FILES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    BackupDir,
    BackupError,
    BackupTampered,
    FileDigest,
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
    "DECISIONS_NAME",
    "DERIVED_FILES",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
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
