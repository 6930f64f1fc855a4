"""`kpromote backups`: the durable backups on disk, listed, verified and shown without a cluster.

Backups are what a rollback rebuilds the member from, so a person must be able to check one with nothing
but this command and the volume: `verify` re-reads every entry against its checksum and every file beside
the archive that a rollback or rebuild reads against the signed manifest, `show` streams the objects, and
`list` reads only file sizes and index files, so it stays fast over many large backups.
"""

from __future__ import annotations

import functools
import os
import sys
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec

import typer
from rich.markup import escape
from rich.table import Table

from services.console.common import (
    FAILED,
    OK,
    USAGE,
    ConsoleError,
    Format,
    guarded,
    load_settings,
    out,
    print_json,
)
from shared.backup import ARCHIVE_NAME, MANIFEST_NAME, BackupDir, iter_archive, verify_archive

INDEX_ENTRY_SIZE = 8
"""Bytes per object in `items/<gr>.idx` (one little-endian offset each, `shared.backup.archive`)."""
_BUFFER = 1 << 20
READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)
"""What a damaged tar.gz raises while it is streamed (truncation, bad bytes, a lost gzip trailer)."""
CLOSED_PIPE = 141
"""128 + SIGPIPE: what a shell reports for `... | head` when the reader left early, as for any Unix tool
killed by SIGPIPE; only `set -o pipefail` makes it count."""

P = ParamSpec("P")


def stdout_closable(command: Callable[P, int]) -> Callable[P, int]:
    """A reader that closed the pipe early (`| head`) ends the command quietly: nothing is damaged, there
    is just nobody left to read. Standard output is pointed at /dev/null so that the interpreter's final
    flush does not fail again (the handling the Python documentation gives for SIGPIPE)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return CLOSED_PIPE

    return run


@dataclass(frozen=True)
class BackupRun:
    """One run's backup of one namespace: `<dir>/<policy>/<namespace>/<run>`."""

    policy: str
    namespace: str
    run: str
    path: Path
    sealed: bool
    items: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "namespace": self.namespace,
            "run": self.run,
            "path": str(self.path),
            "sealed": self.sealed,
            "items": self.items,
            "sizeBytes": self.size,
        }


def discover(base: Path) -> Iterator[BackupRun]:
    """Every run directory under `base`, sorted; a run without an archive or parts is not a backup."""
    for run in sorted(path for path in base.glob("*/*/*") if path.is_dir()):
        archive, parts = run / ARCHIVE_NAME, sorted((run / "parts").glob("*.jsonl"))
        sealed = archive.is_file() and (run / MANIFEST_NAME).is_file()
        if sealed:
            items = sum(index.stat().st_size for index in (run / "items").glob("*.idx")) // INDEX_ENTRY_SIZE
            size = archive.stat().st_size
        elif parts:
            items, size = sum(_lines(part) for part in parts), sum(part.stat().st_size for part in parts)
        else:
            continue
        yield BackupRun(run.parent.parent.name, run.parent.name, run.name, run, sealed, items, size)


def _lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(_BUFFER), b""))


def human_size(size: int) -> str:
    value, unit = float(size), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def archive_of(path: Path) -> Path:
    """A run directory's archive, or the archive itself; what `backups list` shows works either way."""
    archive = path / ARCHIVE_NAME if path.is_dir() else path
    if not archive.is_file():
        raise ConsoleError(
            f"no backup archive at {archive}: pass a run directory from kpromote backups list, or its "
            f"{ARCHIVE_NAME} (an unsealed backup has none yet)",
            USAGE,
        )
    return archive


@stdout_closable
@guarded
def list_backups(directory: Path | None, output: Format) -> int:
    base = (directory or load_settings().backup_dir).expanduser()
    if not base.is_dir():
        raise ConsoleError(f"no backup directory at {base}: pass --dir or set KPROMOTE_BACKUP_DIR", USAGE)
    runs = list(discover(base))
    if output is Format.JSON:
        print_json([run.to_json() for run in runs])
        return OK
    console = out()
    if not runs:
        console.print(f"No backups under {escape(str(base))}.")
        return OK
    table = Table(
        title=f"Backups under {escape(str(base))}",
        title_justify="left",
        caption="path: <dir>/<policy>/<namespace>/<run>",
    )
    for column in ("policy", "namespace", "run", "items", "size", "sealed"):
        table.add_column(column, justify="right" if column in ("items", "size") else "left")
    for run in runs:
        table.add_row(
            escape(run.policy),
            escape(run.namespace),
            escape(run.run),
            str(run.items),
            human_size(run.size),
            "yes" if run.sealed else "[yellow]no (parts only)",
        )
    console.print(table)
    return OK


@stdout_closable
@guarded
def verify(path: Path) -> int:
    """The archive's entries, and in a run directory also the items files, indexes and decisions that steps
    read, checked against `manifest.json` and its signature (with KPROMOTE_BACKUP_SIGNING_KEY)."""
    archive = archive_of(path)
    in_run = archive.name == ARCHIVE_NAME
    try:
        if in_run:
            report = BackupDir(archive.parent, signing_key=load_settings().backup_signing_key).verify()
        else:
            report = verify_archive(archive)
    except OSError as error:
        raise ConsoleError(
            f"cannot read {error.filename or archive} ({error.strerror}): check its permissions"
        ) from None
    if report.ok:
        total = report.manifest.total_items if report.manifest else 0
        files = len(report.manifest.files) if report.manifest else 0
        signature = (
            "signature valid" if report.signed else "unsigned (KPROMOTE_BACKUP_SIGNING_KEY is not set)"
        )
        beside = (
            f", {files} file(s) beside it match {MANIFEST_NAME}, {signature}"
            if in_run
            else f" (archive only: not named {ARCHIVE_NAME} in a run directory)"
        )
        typer.echo(
            f"{archive}: OK, {total} item(s) match their checksums{beside}; archive sha256 {report.sha256}"
        )
        return OK
    typer.echo(f"{archive}: {len(report.problems)} problem(s); do not roll back from this archive:")
    for problem in report.problems:
        typer.echo(f"  {problem}")
    return FAILED


@stdout_closable
@guarded
def show(path: Path) -> int:
    """One line per object as the archive is read, then the counts: memory stays flat however big it is."""
    archive = archive_of(path)
    counts: Counter[str] = Counter()
    try:
        for ref, _ in iter_archive(archive):
            counts[ref.group_resource] += 1
            typer.echo(
                f"{ref.group_resource}\t{ref.namespace}/{ref.name}"
                if ref.namespace
                else f"{ref.group_resource}\t{ref.name}"
            )
    except BrokenPipeError:
        raise  # the reader went away (| head): not damage
    except (*READ_ERRORS, ValueError) as error:
        raise ConsoleError(
            f"{archive} is damaged after {counts.total()} item(s) ({type(error).__name__}): "
            f"run kpromote backups verify {archive} for details"
        ) from None
    table = Table(title=f"{counts.total()} item(s) by kind", title_justify="left")
    table.add_column("kind")
    table.add_column("items", justify="right")
    for kind, count in sorted(counts.items()):
        table.add_row(escape(kind), str(count))
    out().print(table)
    return OK
