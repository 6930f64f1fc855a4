"""Durable, Velero-layout backups of one namespace: parts per type, sealed into one archive, tamper-evident
(a manifest covering every file steps read, signed with KPROMOTE_BACKUP_SIGNING_KEY when set).

`archive.BackupDir` is the backup; the other modules are its parts: `atomic` (files that appear whole or
not at all), `layout` (names and paths), `manifest` (what was sealed), `itemfiles` (the sorted, indexed
items steps read), `tarball` (the Velero tar.gz, written and read as a stream), `integrity` (digests and
the signature), `verify` (whether a sealed backup can be trusted) and `store` (where backups are kept: a
folder, `localstore`, or S3, `s3store`)."""

from shared.backup.archive import BackupDir
from shared.backup.atomic import write_atomically
from shared.backup.errors import BackupError, BackupTampered
from shared.backup.layout import (
    ARCHIVE_NAME,
    MANIFEST_NAME,
    PLAN_NAME,
    backup_root,
)
from shared.backup.manifest import Manifest
from shared.backup.tarball import iter_archive
from shared.backup.verify import verify_archive

__all__ = [
    "ARCHIVE_NAME",
    "MANIFEST_NAME",
    "PLAN_NAME",
    "BackupDir",
    "BackupError",
    "BackupTampered",
    "Manifest",
    "backup_root",
    "iter_archive",
    "verify_archive",
    "write_atomically",
]
