"""`kpromote backups`: the durable backups on disk, listed, verified and shown without a cluster.

Backups are what a rollback rebuilds the member from, so a person must be able to check one with nothing
but this command and the volume: `verify` re-reads every entry against its checksum and every file beside
the archive that a rollback or rebuild reads against the signed manifest, `show` streams the objects, and
`list` reads only file sizes and index files, so it stays fast over many large backups.

Without `--dir`, the commands read the configured location (KPROMOTE_BACKUP_URL, else KPROMOTE_BACKUP_DIR):
in S3 `list` reads the bucket's listing, `show` streams the archive from it, `verify` fetches every file
afresh into the cache (KPROMOTE_BACKUP_CACHE_DIR) and checks it there, and `prune` deletes a run's keys.
A run is also named by its URL, `s3://bucket/prefix/<policy>/<namespace>/<run>` (or its archive's).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tarfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ParamSpec

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.console.common import (
    FAILED,
    OK,
    USAGE,
    ConsoleError,
    Format,
    backup_base,
    connect,
    guarded,
    human_duration,
    load_settings,
    out,
    parse_age,
    path_segment,
    policy_resource,
    print_json,
    working_copy_of,
)
from shared.backup import ARCHIVE_NAME, MANIFEST_NAME, BackupDir, iter_archive, verify_archive
from shared.backup.layout import run_key
from shared.backup.store import BackupStore, StoredFile, is_remote, split_s3_url, store_from_settings

INDEX_ENTRY_SIZE = 8
"""Bytes per object in `items/<gr>.idx` (one little-endian offset each, `shared.backup.itemfiles`)."""
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
    path: Path | str
    """The run folder, or its URL in an object store."""
    sealed: bool
    items: int
    size: int
    date: float = 0.0
    """When the backup was taken: the archive's time once sealed, else its newest part's (epoch seconds)."""

    @property
    def phase(self) -> str:
        """Completed once sealed; before that only parts exist: a backup in progress, or one that stopped."""
        return "Completed" if self.sealed else "Incomplete"

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "namespace": self.namespace,
            "run": self.run,
            "path": str(self.path),
            "date": _iso(self.date),
            "phase": self.phase,
            "sealed": self.sealed,
            "items": self.items,
            "sizeBytes": self.size,
        }


def run_folders(base: Path) -> Iterator[Path]:
    """Every `<policy>/<namespace>/<run>` folder under `base`, sorted; symbolic links are not followed
    (nothing outside the backup directory is ever read or removed)."""
    for policy in _subfolders(base):
        for namespace in _subfolders(policy):
            yield from _subfolders(namespace)


def _subfolders(path: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError:
        return []
    return [Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False)]


def discover(base: Path) -> Iterator[BackupRun]:
    """Every run directory under `base`, sorted; a run without an archive or parts is not a backup."""
    for run in run_folders(base):
        archive, parts = run / ARCHIVE_NAME, sorted((run / "parts").glob("*.jsonl"))
        sealed = archive.is_file() and (run / MANIFEST_NAME).is_file()
        if sealed:
            items = sum(index.stat().st_size for index in (run / "items").glob("*.idx")) // INDEX_ENTRY_SIZE
            size, date = archive.stat().st_size, archive.stat().st_mtime
        elif parts:
            items, size = sum(_lines(part) for part in parts), sum(part.stat().st_size for part in parts)
            date = max(part.stat().st_mtime for part in parts)
        else:
            continue
        yield BackupRun(run.parent.parent.name, run.parent.name, run.name, run, sealed, items, size, date)


def stored_runs(store: BackupStore) -> dict[tuple[str, str, str], list[StoredFile]]:
    """The files of every `<policy>/<namespace>/<run>` in an object store, from one listing."""
    runs: dict[tuple[str, str, str], list[StoredFile]] = {}
    for stored in store.list_prefix(""):
        segments = stored.key.split("/", 3)
        if len(segments) == 4:
            runs.setdefault((segments[0], segments[1], segments[2]), []).append(stored)
    return runs


def discover_stored(store: BackupStore) -> Iterator[BackupRun]:
    """`discover` over an object store's listing: sizes and dates as the store records them; an unsealed
    run's parts are streamed to count their objects."""
    for (policy, namespace, run), files in sorted(stored_runs(store).items()):
        by_name = {stored.key.split("/", 3)[3]: stored for stored in files}
        archive = by_name.get(ARCHIVE_NAME)
        parts = [stored for name, stored in by_name.items() if name.startswith("parts/")]
        if archive is not None and MANIFEST_NAME in by_name:
            indexes = [stored for name, stored in by_name.items() if name.endswith(".idx")]
            items = sum(stored.size for stored in indexes) // INDEX_ENTRY_SIZE
            size, date, sealed = archive.size, archive.modified, True
        elif parts:
            items = sum(_stored_lines(store, stored.key) for stored in parts)
            size, date, sealed = sum(p.size for p in parts), max(p.modified for p in parts), False
        else:
            continue
        location = store.url(run_key(policy, namespace, run))
        yield BackupRun(policy, namespace, run, location, sealed, items, size, date)


def _stored_lines(store: BackupStore, key: str) -> int:
    with store.open(key) as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(_BUFFER), b""))


def configured_store(directory: Path | None) -> BackupStore | None:
    """The object store the commands read when no `--dir` is given and KPROMOTE_BACKUP_URL names one."""
    if directory is not None:
        return None
    settings = load_settings()
    return store_from_settings(settings) if is_remote(settings.backup_location) else None


def local_base(directory: Path | None) -> Path:
    """--dir, else a folder KPROMOTE_BACKUP_URL names, else KPROMOTE_BACKUP_DIR."""
    settings = load_settings()
    return backup_base(directory or (Path(settings.backup_url) if settings.backup_url else None))


def stored_backup(target: str, store: BackupStore | None) -> BackupDir:
    """The run a target names in an object store: its URL (or its archive's), or POLICY/NAMESPACE[/RUN] in
    `store` (the newest sealed run when no run is named). Read through the cache, with the signing key."""
    settings = load_settings()
    if is_remote(target):
        bucket, path = split_s3_url(target.removesuffix(f"/{ARCHIVE_NAME}"))
        segments = path.split("/")
        if len(segments) < 3:
            raise ConsoleError(f"{target} names no run: s3://bucket[/prefix]/POLICY/NAMESPACE/RUN", USAGE)
        for value, what in zip(segments[-3:], ("policy", "namespace", "run"), strict=True):
            path_segment(value, what)
        prefix = "/".join(segments[:-3])
        store = store_from_settings(settings.model_copy(update={"backup_url": f"s3://{bucket}/{prefix}"}))
        names = segments[-3:]
    elif store is None:
        raise ConsoleError(f"no backup at {target}: KPROMOTE_BACKUP_URL names no object store", USAGE)
    else:
        names = target.strip("/").split("/")
        if len(names) not in (2, 3):
            raise ConsoleError(
                f"no backup at {target}: pass POLICY/NAMESPACE[/RUN] or the run's s3:// URL", USAGE
            )
        for value, what in zip(names, ("policy", "namespace", "run"), strict=False):
            path_segment(value, what)
        if len(names) == 2:
            names.append(_newest_sealed(store, names[0], names[1]))
    policy, namespace, run = names
    backup = BackupDir.of_run(store, policy, namespace, run, settings.backup_cache_dir)
    return BackupDir(backup.root, signing_key=settings.backup_signing_key, store=store, key=backup.key)


def _newest_sealed(store: BackupStore, policy: str, namespace: str) -> str:
    return _newest_sealed_run(discover_stored(store), policy, namespace, f"in {store.url('')}").run


def _newest_sealed_run(found: Iterable[BackupRun], policy: str, namespace: str, where: str) -> BackupRun:
    """The newest sealed run of one namespace of one policy, saying so when there are older ones."""
    runs = [run for run in found if (run.policy, run.namespace) == (policy, namespace)]
    sealed = sorted((run for run in runs if run.sealed), key=lambda run: run.date)
    if not sealed:
        what = f"only unsealed runs ({', '.join(run.run for run in runs)})" if runs else "no backup"
        raise ConsoleError(
            f"{what} of namespace {namespace} of PromotePolicy {policy} {where}: see kpromote backups list",
            USAGE,
        )
    if len(sealed) > 1:
        others = ", ".join(run.run for run in sealed[:-1])
        typer.echo(
            f"note: {policy}/{namespace} has {len(sealed)} runs; showing the newest, "
            f"{sealed[-1].run} (older: {others})",
            err=True,
        )
    return sealed[-1]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S")


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


def resolve(target: str, directory: Path | None) -> Path:
    """A path as given when it exists; else POLICY/NAMESPACE[/RUN] under the backup directory, the newest
    sealed run of that namespace when no run is named (the others are named on stderr)."""
    given = Path(target).expanduser()
    if given.exists() or target.startswith(("/", ".", "~")):
        return given
    names = target.strip("/").split("/")
    if len(names) not in (2, 3):
        raise ConsoleError(
            f"no backup at {target}: pass a run directory, its {ARCHIVE_NAME}, or POLICY/NAMESPACE[/RUN]",
            USAGE,
        )
    for value, what in zip(names, ("policy", "namespace", "run"), strict=False):
        path_segment(value, what)
    base = local_base(directory)
    if len(names) == 3:
        return base.joinpath(*names)
    policy, namespace = names
    return Path(_newest_sealed_run(discover(base), policy, namespace, f"under {base}").path)


@stdout_closable
@guarded
def list_backups(directory: Path | None, output: Format) -> int:
    store = configured_store(directory)
    where = store.url("") if store is not None else str(local_base(directory))
    found = discover_stored(store) if store is not None else discover(local_base(directory))
    runs = sorted(found, key=lambda run: (run.date, run.policy, run.namespace, run.run))
    if output is Format.JSON:
        print_json([run.to_json() for run in runs])
        return OK
    console = out()
    if not runs:
        console.print(f"No backups under {escape(where)}.")
        return OK
    table = Table(
        title=f"Backups under {escape(where)}",
        title_justify="left",
        caption="path: <dir>/<policy>/<namespace>/<run>; open one: kpromote backups show POLICY/NAMESPACE",
    )
    for column in ("date", "policy", "namespace", "run", "phase", "items", "size"):
        # Names whole, never cut: people copy them into show, verify and logs --run.
        table.add_column(column, justify="right" if column in ("items", "size") else "left", no_wrap=True)
    for run in runs:
        table.add_row(
            _local(run.date),
            escape(run.policy),
            escape(run.namespace),
            escape(run.run),
            run.phase if run.sealed else "[yellow]Incomplete (parts only)",
            str(run.items),
            human_size(run.size),
        )
    console.print(table)
    return OK


@stdout_closable
@guarded
def verify(target: str, directory: Path | None = None) -> int:
    """The archive's entries, and in a run directory also the items files, indexes and plan that steps
    read, checked against `manifest.json` and its signature (with KPROMOTE_BACKUP_SIGNING_KEY)."""
    store = configured_store(directory)
    if store is not None or is_remote(target):
        backup = stored_backup(target, store)
        with working_copy_of(backup):
            return _verify_stored(backup)
    archive = archive_of(resolve(target, directory))
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
    return _report_problems(str(archive), report.problems)


def _report_problems(archive: str, problems: list[str]) -> int:
    typer.echo(f"{archive}: {len(problems)} problem(s); do not roll back from this archive:")
    for problem in problems:
        typer.echo(f"  {problem}")
    return FAILED


def _verify_stored(backup: BackupDir) -> int:
    """`verify` of a run in an object store: every file fetched afresh, then checked as in a folder."""
    if backup.manifest() is None:
        raise ConsoleError(f"no sealed backup at {backup.location}: see kpromote backups list", USAGE)
    report = backup.verify()
    if not report.ok:
        return _report_problems(backup.location, report.problems)
    total = report.manifest.total_items if report.manifest else 0
    files = len(report.manifest.files) if report.manifest else 0
    signature = "signature valid" if report.signed else "unsigned (KPROMOTE_BACKUP_SIGNING_KEY is not set)"
    typer.echo(
        f"{backup.location}: OK, {total} item(s) match their checksums, {files} file(s) beside it match "
        f"{MANIFEST_NAME}, {signature}; archive sha256 {report.sha256}"
    )
    return OK


@stdout_closable
@guarded
def show(target: str, directory: Path | None = None) -> int:
    """One line per object as the archive is read, then the counts: memory stays flat however big it is."""
    store = configured_store(directory)
    counts: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        if store is not None or is_remote(target):
            backup = stored_backup(target, store)
            archive: Path | str = backup.location
            try:
                source: Path | IO[bytes] = stack.enter_context(backup.open_archive())
            except FileNotFoundError:
                raise ConsoleError(
                    f"no backup archive at {archive}: see kpromote backups list", USAGE
                ) from None
        else:
            archive = source = archive_of(resolve(target, directory))
        _show(archive, source, counts)
    table = Table(title=f"{counts.total()} item(s) by kind", title_justify="left")
    table.add_column("kind")
    table.add_column("items", justify="right")
    for kind, count in sorted(counts.items()):
        table.add_row(escape(kind), str(count))
    out().print(table)
    return OK


def _show(archive: Path | str, source: Path | IO[bytes], counts: Counter[str]) -> None:
    try:
        for ref, _ in iter_archive(source):
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


# ------------------------------------------------------------------------------------------------- prune
@dataclass(frozen=True)
class PruneDecision:
    """What `prune` does with one run folder, and why."""

    path: Path
    policy: str
    namespace: str
    run: str
    age: float
    """Seconds since anything in the folder last changed (a rollback reads and logs into it too)."""
    size: int
    remove: bool
    reason: str

    def to_json(self, dry_run: bool) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "policy": self.policy,
            "namespace": self.namespace,
            "run": self.run,
            "ageSeconds": int(self.age),
            "sizeBytes": self.size,
            "action": ("would remove" if dry_run else "removed") if self.remove else "kept",
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Folder:
    path: Path
    changed: float
    size: int


def folder_facts(path: Path) -> Folder:
    """When anything in a run folder last changed, and its size; a folder's own files and those one level
    down (parts/, items/) are all a run writes."""
    changed, size = path.lstat().st_mtime, 0
    for entry in _entries(path):
        info = entry.stat(follow_symlinks=False)
        changed = max(changed, info.st_mtime)
        if entry.is_dir(follow_symlinks=False):
            for inner in _entries(Path(entry.path)):
                inner_info = inner.stat(follow_symlinks=False)
                changed, size = max(changed, inner_info.st_mtime), size + inner_info.st_size
        else:
            size += info.st_size
    return Folder(path, changed, size)


def stored_folders(runs: dict[tuple[str, str, str], list[StoredFile]]) -> list[Folder]:
    """`folder_facts` of each run in an object store, from its listing: the run's key stands for its path."""
    return [
        Folder(
            Path(run_key(*names)),
            max(stored.modified for stored in files),
            sum(stored.size for stored in files),
        )
        for names, files in sorted(runs.items())
    ]


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def decide(
    folders: list[Folder],
    *,
    now: float,
    older_than: float,
    live_runs: dict[tuple[str, str], str],
    claimed: dict[tuple[str, str, str], str],
) -> list[PruneDecision]:
    """Remove a run folder only when it is older than `older_than` and neither a policy that still exists
    names its run (`live_runs`, by policy and run: it may still roll back from it) nor a namespace claim
    records it (`claimed`, by policy, namespace and run). Pure: the caller reads the clusters and disk."""
    decisions = []
    for folder in folders:
        run, namespace, policy = folder.path.name, folder.path.parent.name, folder.path.parent.parent.name
        age = now - folder.changed
        needed = [
            reason
            for reason in (live_runs.get((policy, run)), claimed.get((policy, namespace, run)))
            if reason
        ]
        keep = "; ".join(needed) or None
        if keep is None and age < older_than:
            keep = f"younger than {human_duration(older_than)}"
        reason = keep or f"older than {human_duration(older_than)}, no live policy or claim names it"
        decisions.append(
            PruneDecision(folder.path, policy, namespace, run, age, folder.size, keep is None, reason)
        )
    return decisions


def in_use(
    policies: list[dict[str, Any]], claims: list[Any]
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str, str], str]]:
    """The runs a live policy names (it may roll back from them) and those a namespace claim records."""
    live_runs = {}
    for policy in policies:
        status = policy.get("status") or {}
        if status.get("runId"):
            name = policy["metadata"]["name"]
            phase = status.get("phase") or "Pending"
            live_runs[(name, status["runId"])] = f"PromotePolicy {name} ({phase}) may roll back from it"
    claimed = {
        (claim.spec.policy, claim.namespace, claim.run_id): (
            f"the claim of {claim.namespace} on {claim.cluster} ({claim.state.value}) records it"
        )
        for claim in claims
    }
    return live_runs, claimed


@guarded
def prune(
    older_than: str, dry_run: bool, directory: Path | None, kubeconfig: str | None, output: Format
) -> int:
    """Remove run folders older than `older_than` that no live policy or claim still needs."""
    from shared.claims import Claims

    try:
        age = parse_age(older_than)
    except ValueError as error:
        raise ConsoleError(f"--older-than: {error}", USAGE) from None
    settings = load_settings()
    store = configured_store(directory)
    base = local_base(directory) if store is None else None
    # Read what is in use before looking at the disk: a run that starts meanwhile makes a new, young folder.
    with connect(kubeconfig, settings) as kube:
        policies = list(kube.list(policy_resource(kube)))
        claims = list(Claims(kube, settings.namespace).all())
    live_runs, claimed = in_use(policies, claims)
    stored = stored_runs(store) if store is not None else {}
    decisions = decide(
        [folder_facts(path) for path in run_folders(base)] if base is not None else stored_folders(stored),
        now=time.time(),
        older_than=age,
        live_runs=live_runs,
        claimed=claimed,
    )
    failed = []
    if not dry_run:
        for decision in decisions:
            if decision.remove and store is not None:
                key = (decision.policy, decision.namespace, decision.run)
                try:
                    store.delete([stored_file.key for stored_file in stored[key]])
                except Exception as error:  # any store failure is reported per run, the others go on
                    failed.append(f"{store.url(run_key(*key))}: {error}")
            elif decision.remove:
                try:
                    shutil.rmtree(decision.path)
                except OSError as error:
                    failed.append(f"{decision.path}: {error.strerror or error}")
                    continue
                for parent in (decision.path.parent, decision.path.parent.parent):
                    with contextlib.suppress(OSError):
                        parent.rmdir()  # only when empty
    if output is Format.JSON:
        print_json([decision.to_json(dry_run) for decision in decisions])
    else:
        render_prune(out(), decisions, dry_run)
    for failure in failed:
        typer.echo(f"error: could not remove {failure}", err=True)
    return FAILED if failed else OK


def render_prune(console: Console, decisions: list[PruneDecision], dry_run: bool) -> None:
    removed = [decision for decision in decisions if decision.remove]
    if not decisions:
        console.print("No run folders.")
        return
    table = Table(title="Run folders", title_justify="left")
    for column in ("policy", "namespace", "run", "age", "size", "action", "why"):
        table.add_column(
            column, justify="right" if column in ("age", "size") else "left", no_wrap=column != "why"
        )
    for decision in decisions:
        action = ("would remove" if dry_run else "removed") if decision.remove else "kept"
        table.add_row(
            escape(decision.policy),
            escape(decision.namespace),
            escape(decision.run),
            human_duration(decision.age),
            human_size(decision.size),
            action,
            escape(decision.reason),
        )
    console.print(table)
    freed = human_size(sum(decision.size for decision in removed))
    verb = "Would remove" if dry_run else "Removed"
    console.print(f"{verb} {len(removed)} run folder(s) ({freed}); kept {len(decisions) - len(removed)}.")
