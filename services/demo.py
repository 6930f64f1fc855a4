"""`kpromote demo`: the whole system on one machine, with nothing installed beyond Python packages.

Starts a simulated Kosmos control plane linked to a simulated member cluster, seeds the member with
realistic applications, starts Redis (embedded unless one is configured or answers locally), the
watcher and the workers as separate processes, applies a PromotePolicy, shows its progress, and ends
with the continuity report: every member pod before and after, by UID. Exit status 0 only when the
promote completed and no pod was deleted or re-created.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from kubernetes import client
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kubesim import SimulatorThread
from kubesim.seed import SeededNamespace, seed_cluster_scoped, seed_namespace
from kubesim.serve import pair_paths, start_pair
from kubesim.testing import api_client, required, wait_until
from services.install import install
from shared.backup.store import is_remote, split_s3_url
from shared.embedded_redis import broker_url

MEMBER = "member1"
POLICY = "promote-shop"
TERMINAL = ("Completed", "PartiallyFailed", "Failed", "FailedPrecheck")


def _progress_table(status: dict) -> Table:
    table = Table(
        title=f"PromotePolicy {POLICY}: {status.get('phase', 'Pending')} "
        f"({status.get('namespacesDone', 0)}/{status.get('namespacesTotal', '?')} namespaces)"
    )
    for column in ("namespace", "phase", "step", "backed up", "detached", "rebuilt", "skipped"):
        table.add_column(column)
    for ns in status.get("namespaces", []):
        counts = ns.get("counts", {})
        table.add_row(
            ns["name"],
            ns.get("phase", ""),
            ns.get("step", ""),
            str(counts.get("backedUp", 0)),
            str(counts.get("detached", 0)),
            str(counts.get("rebuilt", 0)),
            str(counts.get("skipped", 0)),
        )
    return table


def _continuity(console: Console, member: client.CoreV1Api, seeded: list[SeededNamespace]) -> bool:
    table = Table(title="Continuity: member pods before and after")
    for column in ("namespace", "pod", "uid before", "uid after", "verdict"):
        table.add_column(column)
    intact = True
    for namespace in seeded:
        after = {}
        for pod in member.list_namespaced_pod(namespace.namespace).items:
            meta = required(pod.metadata, "pod metadata")
            after[required(meta.name, "pod name")] = meta
        for name, uid in sorted(namespace.pods.items()):
            now = after.get(name)
            same = now is not None and now.uid == uid and now.deletion_timestamp is None
            intact &= same
            table.add_row(
                namespace.namespace,
                name,
                uid[:8],
                required(now.uid, "pod uid")[:8] if now else "gone",
                "[green]same pod[/]" if same else "[red]RESTARTED[/]",
            )
    console.print(table)
    return intact


EXPORTED = ("KPROMOTE_KUBECONFIG", "KPROMOTE_BACKUP_DIR", "KPROMOTE_BROKER_URL", "KPROMOTE_KEY_PREFIX")
STORAGE_EXPORTED = (
    "KPROMOTE_BACKUP_URL",
    "KPROMOTE_S3_ENDPOINT_URL",
    "KPROMOTE_S3_FORCE_PATH_STYLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
"""Set only with --backup-url (the AWS_* ones only for the demo's own S3 server, whose keys are dummies)."""
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def backup_storage(backup_url: str | None, workdir: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """The environment that keeps the demo's backups at `backup_url`: a folder, or `s3://bucket/prefix`,
    in the S3-compatible store KPROMOTE_S3_ENDPOINT_URL names (credentials from boto3's chain) or, when
    none is named, in an S3 server the demo starts itself (moto's, in this process, bucket created)."""
    if backup_url is None:
        return {}
    if not is_remote(backup_url):
        return {"KPROMOTE_BACKUP_URL": str(Path(backup_url).expanduser().resolve())}
    storage = {
        "KPROMOTE_BACKUP_URL": backup_url,
        "KPROMOTE_BACKUP_CACHE_DIR": str(workdir / "backup-cache"),
        "KPROMOTE_S3_FORCE_PATH_STYLE": os.environ.get("KPROMOTE_S3_FORCE_PATH_STYLE", "true"),
    }
    if os.environ.get("KPROMOTE_S3_ENDPOINT_URL"):
        return storage
    endpoint = stack.enter_context(_local_s3_server())
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=split_s3_url(backup_url)[0]
    )
    return {**storage, **MOTO_CREDENTIALS, "KPROMOTE_S3_ENDPOINT_URL": endpoint}


@contextlib.contextmanager
def _local_s3_server() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1 (its dummy credentials set in this process too)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise SystemExit(
            "kpromote demo: an s3:// --backup-url without KPROMOTE_S3_ENDPOINT_URL starts a local S3 server, "
            "which needs moto (pip install 'moto[server]'); or set KPROMOTE_S3_ENDPOINT_URL to your store"
        ) from None

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's web server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    os.environ.update(MOTO_CREDENTIALS)
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def exports(env: dict[str, str], member_kubeconfig: Path) -> list[str]:
    """The shell lines that point kubectl, kpromote and Flower in another terminal at this demo."""
    lines = [
        "# In another terminal, to drive the demo with kubectl, kpromote and Flower:",
        f"export KUBECONFIG={shlex.quote(env['KPROMOTE_KUBECONFIG'])}",
        *(f"export {name}={shlex.quote(env[name])}" for name in EXPORTED),
        *(f"export {name}={shlex.quote(env[name])}" for name in STORAGE_EXPORTED if name in env),
        f"#   kubectl get promotepolicies; kpromote get; kpromote status {POLICY} --watch; "
        f"kpromote logs {POLICY}",
        "#   kpromote backups list; kpromote flower --no-auth   (then http://127.0.0.1:5555)",
        f"#   the member cluster: kubectl --kubeconfig {shlex.quote(str(member_kubeconfig))} get pods -A",
    ]
    return lines


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services", *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def run(*, namespaces: int, workdir: Path, wait: bool, backup_url: str | None = None) -> int:
    console = Console()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.ExitStack() as stack,
        SimulatorThread() as simulator,
        broker_url(os.environ.get("KPROMOTE_BROKER_URL")) as redis_url,
    ):
        storage = backup_storage(backup_url, workdir, stack)
        control_plane, member, link = simulator.run(start_pair(MEMBER))
        simulator.clusters.extend([control_plane, member])
        paths = pair_paths(workdir, MEMBER)
        member.write_kubeconfig(paths.member)
        control_plane.write_kubeconfig(paths.control_plane)
        console.print(f"[bold]Kosmos control plane[/] {control_plane.url}  kubeconfig {paths.control_plane}")
        console.print(f"[bold]member cluster '{MEMBER}'[/] {member.url}  kubeconfig {paths.member}")
        backups = storage.get("KPROMOTE_BACKUP_URL", str(workdir / "backups"))
        endpoint = storage.get("KPROMOTE_S3_ENDPOINT_URL", os.environ.get("KPROMOTE_S3_ENDPOINT_URL"))
        console.print(
            f"[bold]Redis[/] {redis_url}   backups {backups}" + (f" (S3 at {endpoint})" if endpoint else "")
        )
        env = {
            **os.environ,
            "KPROMOTE_BROKER_URL": redis_url,
            "KPROMOTE_BACKUP_DIR": str(workdir / "backups"),
            **storage,
            "KPROMOTE_KUBECONFIG": str(paths.control_plane),
            "KPROMOTE_KEY_PREFIX": f"demo-{os.getpid()}:",
            "KPROMOTE_METRICS_PORT": "0",
            "KPROMOTE_WATCHER_METRICS_PORT": "0",
        }
        processes = [
            _spawn(
                ["worker", "-Q", "backup,detach,rebuild,rollback", "-c", "8"], env, workdir / "worker.log"
            ),
            _spawn(["watcher"], env, workdir / "watcher.log"),
        ]
        try:
            with api_client(member.url) as member_api, api_client(control_plane.url) as cp_api:
                install(cp_api, env.get("KPROMOTE_NAMESPACE", "kosmos-promote"))
                seed_cluster_scoped(member_api)
                started = time.monotonic()
                seeded = [seed_namespace(member_api, f"shop-{i}") for i in range(1, namespaces + 1)]
                console.print(
                    f"Seeded {namespaces} namespace(s), {sum(len(s.pods) for s in seeded)} pods, "
                    f"in {time.monotonic() - started:.1f}s"
                )
                status = _promote(console, cp_api, [s.namespace for s in seeded])
                console.print()
                intact = _continuity(console, client.CoreV1Api(member_api), seeded)
                intact &= not link.member_deletions
            if wait:
                # Whole lines, never wrapped or marked up: people paste them into another terminal.
                for line in exports(env, paths.member):
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
                console.print("Clusters stay up until Ctrl-C.")
                _sleep_until_interrupted()
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=20)
            simulator.run(link.stop())
    ok = status.get("phase") == "Completed" and intact
    console.print(
        "[bold green]Promote completed; no pod restarted.[/]"
        if ok
        else f"[bold red]Promote did not complete cleanly[/]: {status.get('message')}  (logs in {workdir})"
    )
    return 0 if ok else 1


def apply_policy(policies: client.CustomObjectsApi, namespaces: list[str]) -> None:
    """The demo's PromotePolicy: `namespaces` of the member, into the control plane (also what
    scripts/flower_screenshot.py runs)."""
    policies.create_cluster_custom_object(
        "kosmos.io",
        "v1alpha1",
        "promotepolicies",
        {
            "apiVersion": "kosmos.io/v1alpha1",
            "kind": "PromotePolicy",
            "metadata": {"name": POLICY},
            "spec": {"clusterName": MEMBER, "includedNamespaces": namespaces},
        },
    )


def _promote(console: Console, cp_api: client.ApiClient, namespaces: list[str]) -> dict:
    policies = client.CustomObjectsApi(cp_api)
    apply_policy(policies, namespaces)

    def status() -> dict:
        policy = policies.get_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", POLICY)
        if not isinstance(policy, dict):
            raise TypeError(f"PromotePolicy {POLICY} read as {type(policy).__name__}, not a JSON object")
        return policy.get("status") or {}

    with Live(_progress_table({}), console=console, refresh_per_second=4) as live:

        def finished() -> dict | None:
            current = status()
            live.update(_progress_table(current))
            return current if current.get("phase") in TERMINAL else None

        return wait_until(finished, timeout=600, interval=0.25, what="the promote to finish")


def _sleep_until_interrupted() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
