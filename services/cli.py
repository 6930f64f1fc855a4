"""`kpromote`: one console script that starts each service and the tools around them.

Each command parses its options and hands over to the module that does the work; nothing here decides
anything about a migration.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from kubesim.serve import serve_cluster, serve_pair
from services import demo

app = typer.Typer(
    name="kpromote",
    help="Promote running applications from a Kosmos member cluster into the Kosmos control plane.",
    no_args_is_help=True,
    add_completion=False,
)

Latency = Annotated[float, typer.Option("--latency-ms", help="Delay added to every API request.")]


@app.command()
def sim(
    kubeconfig_out: Annotated[
        Path, typer.Option("--kubeconfig-out", help="Where to write this server's kubeconfig.")
    ],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 0,
    name: Annotated[str, typer.Option(help="Cluster name used in the kubeconfig.")] = "kubesim",
    latency_ms: Latency = 0.0,
) -> None:
    """Run one simulated Kubernetes cluster (API server and controllers) until SIGTERM or Ctrl-C."""

    def ready(cluster: object) -> None:
        typer.echo(
            f"kubesim {name} serving at http://127.0.0.1:{getattr(cluster, 'port', port)}; "
            f"kubeconfig: {kubeconfig_out}"
        )

    asyncio.run(
        serve_cluster(
            name=name, port=port, kubeconfig_out=kubeconfig_out, latency_ms=latency_ms, on_ready=ready
        )
    )


@app.command("sim-pair")
def sim_pair(
    directory: Annotated[Path, typer.Option("--dir", help="Folder for the two kubeconfigs.")],
    cluster: Annotated[str, typer.Option(help="Name of the member cluster in Kosmos.")] = "member1",
    latency_ms: Latency = 0.0,
) -> None:
    """Run a simulated Kosmos control plane linked to one member cluster until SIGTERM or Ctrl-C."""

    def ready(paths: object) -> None:
        typer.echo(f"control plane kubeconfig: {paths.control_plane}")  # type: ignore[attr-defined]
        typer.echo(f"member '{cluster}' kubeconfig: {paths.member}")  # type: ignore[attr-defined]

    asyncio.run(serve_pair(cluster_name=cluster, directory=directory, latency_ms=latency_ms, on_ready=ready))


Kubeconfig = Annotated[str | None, typer.Option("--kubeconfig", help="Control-plane kubeconfig.")]


@app.command()
def watcher(kubeconfig: Kubeconfig = None) -> None:
    """Run the policy watcher: prechecks PromotePolicies and publishes one job per namespace."""
    from services.watcher.main import run

    run(kubeconfig)


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Comma-separated: backup,detach,rebuild,rollback.")
    ],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Tasks run at once (threads).")] = 8,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Run a Celery worker for the given step queues."""
    from services.worker import run

    run([q.strip() for q in queues.split(",") if q.strip()], concurrency, kubeconfig)


@app.command("demo")
def demo_command(
    namespaces: Annotated[int, typer.Option(help="How many application namespaces to seed.")] = 2,
    workdir: Annotated[Path, typer.Option(help="Folder for kubeconfigs and backups.")] = Path("var/demo"),
    wait: Annotated[bool, typer.Option(help="Keep the clusters up until Ctrl-C.")] = True,
) -> None:
    """Run the main job on the embedded default: simulated clusters, seeded applications, embedded Redis."""
    raise typer.Exit(demo.run(namespaces=namespaces, workdir=workdir, wait=wait))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()
