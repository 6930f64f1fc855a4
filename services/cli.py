"""`kpromote`: one console script that starts each service and the tools around them.

Each command parses its options and hands over to the module that does the work; nothing here decides
anything about a migration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from kubesim.serve import serve_cluster, serve_pair
from services import demo
from services.console.common import Format, StatusFormat
from shared import logs as logging_setup

app = typer.Typer(
    name="kpromote",
    help="Promote running applications from a Kosmos member cluster into the Kosmos control plane.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"kpromote {version('kosmos-promote')}")
        except PackageNotFoundError:
            typer.echo("kpromote (version unknown: the kosmos-promote package is not installed)")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Promote running applications from a Kosmos member cluster into the Kosmos control plane."""


Latency = Annotated[float, typer.Option("--latency-ms", help="Delay added to every API request.")]
InformerLag = Annotated[
    float,
    typer.Option(
        "--informer-lag-ms",
        help="How far behind the store the controllers see writes (a loaded control plane's informers).",
    ),
]


NamespaceDeletionGrace = Annotated[
    float,
    typer.Option(
        "--namespace-deletion-grace",
        help="Seconds the namespace controller waits before emptying a terminating namespace "
        "(kube-controller-manager waits 5).",
    ),
]


@app.command()
def sim(
    kubeconfig_out: Annotated[
        Path, typer.Option("--kubeconfig-out", help="Where to write this server's kubeconfig.")
    ],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 0,
    name: Annotated[str, typer.Option(help="Cluster name used in the kubeconfig.")] = "kubesim",
    latency_ms: Latency = 0.0,
    informer_lag_ms: InformerLag = 0.0,
    namespace_deletion_grace: NamespaceDeletionGrace = 0.0,
) -> None:
    """Run one simulated Kubernetes cluster (API server and controllers) until SIGTERM or Ctrl-C."""

    def ready(cluster: object) -> None:
        typer.echo(
            f"kubesim {name} serving at http://127.0.0.1:{getattr(cluster, 'port', port)}; "
            f"kubeconfig: {kubeconfig_out}"
        )

    asyncio.run(
        serve_cluster(
            name=name,
            port=port,
            kubeconfig_out=kubeconfig_out,
            latency_ms=latency_ms,
            informer_lag_ms=informer_lag_ms,
            namespace_deletion_grace_s=namespace_deletion_grace,
            on_ready=ready,
        )
    )


@app.command("sim-pair")
def sim_pair(
    directory: Annotated[Path, typer.Option("--dir", help="Folder for the two kubeconfigs.")],
    cluster: Annotated[str, typer.Option(help="Name of the member cluster in Kosmos.")] = "member1",
    latency_ms: Latency = 0.0,
    informer_lag_ms: InformerLag = 0.0,
    namespace_deletion_grace: NamespaceDeletionGrace = 0.0,
) -> None:
    """Run a simulated Kosmos control plane linked to one member cluster until SIGTERM or Ctrl-C."""

    def ready(paths: object) -> None:
        typer.echo(f"control plane kubeconfig: {paths.control_plane}")  # type: ignore[attr-defined]
        typer.echo(f"member '{cluster}' kubeconfig: {paths.member}")  # type: ignore[attr-defined]

    asyncio.run(
        serve_pair(
            cluster_name=cluster,
            directory=directory,
            latency_ms=latency_ms,
            informer_lag_ms=informer_lag_ms,
            namespace_deletion_grace_s=namespace_deletion_grace,
            on_ready=ready,
        )
    )


Kubeconfig = Annotated[str | None, typer.Option("--kubeconfig", help="Control-plane kubeconfig.")]


def _start(service: Callable[[], None]) -> None:
    """Run a long-lived service; a configuration it refuses is one line on stderr and exit status 2."""
    from shared.settings import ConfigurationError

    try:
        service()
    except ConfigurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@app.command()
def watcher(kubeconfig: Kubeconfig = None) -> None:
    """Run the policy watcher: prechecks PromotePolicies and publishes one job per namespace."""
    from services.watcher.main import run

    _start(lambda: run(kubeconfig))


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Comma-separated: backup,detach,rebuild,rollback.")
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Tasks run at once (threads).")
    ] = 8,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Run a Celery worker for the given step queues."""
    from services.worker import run

    _start(lambda: run([q.strip() for q in queues.split(",") if q.strip()], concurrency, kubeconfig))


@app.command()
def flower(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the web UI and API.")] = 5555,
    address: Annotated[
        str,
        typer.Option(
            help="Interface to listen on; 0.0.0.0 (all) is for containers, behind their own network."
        ),
    ] = "127.0.0.1",
    basic_auth: Annotated[
        list[str] | None,
        typer.Option(
            "--basic-auth",
            help="user:password, repeatable; or KPROMOTE_FLOWER_BASIC_AUTH / FLOWER_BASIC_AUTH, off the "
            "command line. Required unless --no-auth.",
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without authentication (anyone reaching it sees all).")
    ] = False,
) -> None:
    """Run Flower on our Celery app: live tasks by step and namespace, workers, queue lengths."""
    from services.flower import run

    _start(lambda: run(port, address, basic_auth or [], no_auth))


@app.command("demo")
def demo_command(
    namespaces: Annotated[int, typer.Option(help="How many application namespaces to seed.")] = 2,
    workdir: Annotated[Path, typer.Option(help="Folder for kubeconfigs and backups.")] = Path("var/demo"),
    wait: Annotated[
        bool, typer.Option(help="Afterwards, keep the clusters up until Ctrl-C to explore them.")
    ] = False,
    backup_url: Annotated[
        str | None,
        typer.Option(
            "--backup-url",
            help="Keep the backups here: a folder, or s3://bucket/prefix in the store "
            "KPROMOTE_S3_ENDPOINT_URL names (when unset, in a local S3 server the demo starts).",
        ),
    ] = None,
) -> None:
    """Run the main job on the embedded default: simulated clusters, seeded applications, embedded Redis."""
    raise typer.Exit(demo.run(namespaces=namespaces, workdir=workdir, wait=wait, backup_url=backup_url))


ControlPlane = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig", help="Control-plane kubeconfig (default: KPROMOTE_KUBECONFIG, then ~/.kube/config)."
    ),
]
PolicyFile = Annotated[Path, typer.Option("--filename", "-f", help="The PromotePolicy YAML file.")]
Wait = Annotated[
    bool, typer.Option("--wait", help="Follow the progress until the end and exit with its outcome.")
]
Timeout = Annotated[
    float | None,
    typer.Option("--timeout", help="With --wait: stop waiting after this many seconds (exit 1).", min=1),
]


@app.command()
def plan(
    policy_file: PolicyFile,
    kubeconfig: ControlPlane = None,
    output: Annotated[Format, typer.Option("--output", "-o", help="table or json.")] = Format.TABLE,
) -> None:
    """Show what a policy would do, changing nothing in either cluster and writing no file.

    The precheck, then per namespace: objects backed up by kind, cluster-scoped dependencies that come
    along, what detach would do, what stays in the member or is skipped and why, and conflicts.

    Exit codes:
    0  the plan is clean
    1  an API server failed or could not be reached
    2  bad policy file, kubeconfig or environment
    3  the precheck failed
    4  objects of the plan already exist in the control plane with different content
    """
    from services.console import plan as command

    raise typer.Exit(command.run(policy_file, kubeconfig, output))


@app.command()
def apply(
    policy_file: PolicyFile, wait: Wait = False, kubeconfig: ControlPlane = None, timeout: Timeout = None
) -> None:
    """Create the PromotePolicy of a file (or report the existing one), optionally following it.

    With --wait: a live table on a terminal, one line per change otherwise.

    Exit codes:
    0  created or already there (with --wait: Completed)
    1  with --wait: PartiallyFailed, Failed or FailedPrecheck; an API failure; the timeout
    2  bad policy file, kubeconfig or environment; a policy of that name with another spec
    130  interrupted while waiting (the promote goes on)
    """
    from services.console import apply as command

    raise typer.Exit(command.run(policy_file, wait, kubeconfig, timeout))


@app.command()
def rollback(
    name: Annotated[str | None, typer.Argument(help="The PromotePolicy to roll back.")] = None,
    backup: Annotated[
        Path | None,
        typer.Option(
            "--backup",
            help="Roll one namespace back from this run folder (or its backup.tar.gz) alone, "
            "for a run whose policy is gone; runs here, not on the workers.",
        ),
    ] = None,
    wait: Wait = False,
    kubeconfig: ControlPlane = None,
    timeout: Timeout = None,
) -> None:
    """Request the rollback of a policy (spec.rollback: "true"), optionally following it; or, with
    --backup, roll back the namespace of one backed-up run whose policy no longer exists.

    Allowed once the policy is Completed, PartiallyFailed, Failed or FailedRollback.

    Exit codes:
    0  requested (with --wait, or --backup: RolledBack)
    1  with --wait: FailedRollback; with --backup: differences left; an API failure; the timeout
    2  no such policy or backup, a phase that allows no rollback, a namespace another run owns,
       a bad kubeconfig or environment
    130  interrupted while waiting (the rollback goes on)
    """
    from services.console import rollback as command

    if (name is None) == (backup is None):
        raise typer.BadParameter("name a policy, or pass --backup PATH (not both)")
    if backup is not None:
        raise typer.Exit(command.run_from_backup(backup, kubeconfig))
    assert name is not None
    raise typer.Exit(command.run(name, wait, kubeconfig, timeout))


@app.command()
def status(
    name: Annotated[str, typer.Argument(help="The PromotePolicy to show.")],
    output: Annotated[
        StatusFormat, typer.Option("--output", "-o", help="table, json or yaml.")
    ] = StatusFormat.TABLE,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Redraw every second until the policy ends or Ctrl-C (table only)."
        ),
    ] = False,
    kubeconfig: ControlPlane = None,
) -> None:
    """Show a policy's phase, progress, namespaces and what was left behind.

    Per namespace: phase, step, counts, message and backup location; then every skipped object and why.
    With --watch: redrawn in place on a terminal, one timestamped line per change elsewhere.

    Exit codes:
    0  shown (with --watch: the policy ended, or Ctrl-C)
    1  an API failure
    2  no such policy, a bad kubeconfig or environment
    """
    from services.console import status as command

    if watch and output is not StatusFormat.TABLE:
        raise typer.BadParameter("--watch shows the table; -o json|yaml print the status once")
    raise typer.Exit(command.run(name, output, kubeconfig, watch))


@app.command()
def get(
    output: Annotated[Format, typer.Option("--output", "-o", help="table or json.")] = Format.TABLE,
    kubeconfig: ControlPlane = None,
) -> None:
    """List every PromotePolicy: cluster, phase, namespaces done/total, age and duration.

    Exit codes:
    0  listed
    1  an API failure
    2  a bad kubeconfig or environment
    """
    from services.console import get as command

    raise typer.Exit(command.run(output, kubeconfig))


BackupDirOption = Annotated[
    Path | None, typer.Option("--dir", help="Backup directory (default: KPROMOTE_BACKUP_DIR).")
]


@app.command("logs")
def logs_command(
    policy: Annotated[str, typer.Argument(help="The PromotePolicy whose run to show.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace of the run.")
    ] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", help="This run id (no cluster needed); default: the policy's status.runId."),
    ] = None,
    output: Annotated[
        Format, typer.Option("--output", "-o", help="table (text lines) or json (the raw lines).")
    ] = Format.TABLE,
    directory: BackupDirOption = None,
    kubeconfig: ControlPlane = None,
) -> None:
    """Show what a run did, as `velero backup logs` does: every write, retry and skip, in time order.

    The workers keep each run's log beside its backup (<dir>/<policy>/<namespace>/<run>/run.log). The
    run is the policy's current one; for a policy that no longer exists, every run kept of it.

    Exit codes:
    0  shown
    1  an API failure
    2  no log for that policy, namespace or run; a bad kubeconfig, backup directory or environment
    """
    from services.console import runlog as command

    raise typer.Exit(command.run(policy, namespace, run, output, directory, kubeconfig))


backups = typer.Typer(
    name="backups",
    help="Inspect the durable backups (no cluster needed), and prune old ones (reads the cluster).",
    no_args_is_help=True,
)
app.add_typer(backups)


@backups.command("list")
def backups_list(
    directory: BackupDirOption = None,
    output: Annotated[Format, typer.Option("--output", "-o", help="table or json.")] = Format.TABLE,
) -> None:
    """List backups, oldest first: date, policy, namespace, run, phase (Completed once sealed), items, size.

    Exit codes:
    0  listed
    2  no such directory
    """
    from services.console import backups as command

    raise typer.Exit(command.list_backups(directory, output))


BackupTarget = Annotated[
    str,
    typer.Argument(
        help="POLICY/NAMESPACE (its newest sealed run), POLICY/NAMESPACE/RUN, a run directory or its "
        "backup.tar.gz."
    ),
]


@backups.command("verify")
def backups_verify(target: BackupTarget, directory: BackupDirOption = None) -> None:
    """Re-read an archive and check every entry against its checksum and the manifest.

    Exit codes:
    0  the archive verifies
    1  it does not (each problem is listed)
    2  no archive there
    """
    from services.console import backups as command

    raise typer.Exit(command.verify(target, directory))


@backups.command("show")
def backups_show(target: BackupTarget, directory: BackupDirOption = None) -> None:
    """List the objects of an archive as it is read, then the counts by kind.

    Exit codes:
    0  shown
    1  the archive is damaged
    2  no archive there
    """
    from services.console import backups as command

    raise typer.Exit(command.show(target, directory))


@backups.command("prune")
def backups_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Remove run folders unchanged for this long: 30d, 12h, 1d12h.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    directory: BackupDirOption = None,
    output: Annotated[Format, typer.Option("--output", "-o", help="table or json.")] = Format.TABLE,
    kubeconfig: ControlPlane = None,
) -> None:
    """Remove old run folders (backup and run log) that nothing can roll back from any more.

    Never one whose PromotePolicy still exists with that run in its status (it may still roll back from
    it), nor one whose namespace claim records the run; each folder kept or removed is listed with why.
    Reads the control plane first: without it nothing is removed.

    Exit codes:
    0  pruned (or, with --dry-run, shown)
    1  an API failure (nothing removed), or a folder that could not be removed
    2  a bad --older-than, backup directory, kubeconfig or environment
    """
    from services.console import backups as command

    raise typer.Exit(command.prune(older_than, dry_run, directory, kubeconfig, output))


def main() -> None:
    logging_setup.configure("cli")
    app()
