"""Running simulators as long-lived processes: one cluster, or a Kosmos control plane with a member.

Kubeconfigs are written only once the servers answer, so a script may wait for the file and then use it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubesim.cluster import SimulatedCluster
from kubesim.kosmos import KosmosLink
from kubesim.versions import GIT_VERSION


@dataclass(frozen=True)
class PairPaths:
    control_plane: Path
    member: Path


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve_cluster(
    *,
    name: str,
    port: int,
    kubeconfig_out: Path,
    latency_ms: float,
    on_ready: Callable[[SimulatedCluster], None],
    informer_lag_ms: float = 0.0,
    namespace_deletion_grace_s: float = 0.0,
) -> None:
    cluster = SimulatedCluster(
        name,
        latency_ms=latency_ms,
        informer_lag_ms=informer_lag_ms,
        namespace_deletion_grace_s=namespace_deletion_grace_s,
    )
    await cluster.start(port=port)
    cluster.write_kubeconfig(kubeconfig_out)
    on_ready(cluster)
    try:
        await _until_signalled()
    finally:
        await cluster.stop()


async def start_pair(
    cluster_name: str,
    *,
    latency_ms: float = 0.0,
    control_plane_port: int = 0,
    member_port: int = 0,
    informer_lag_ms: float = 0.0,
    namespace_deletion_grace_s: float = 0.0,
    control_plane_version: str = GIT_VERSION,
    member_version: str = GIT_VERSION,
) -> tuple[SimulatedCluster, SimulatedCluster, KosmosLink]:
    """A control plane and a member, linked by Kosmos. Both allocate cluster IPs from the same range, as
    in the measured setup, so a tool that copies a member's cluster IP meets a collision. Both clusters'
    controllers run `informer_lag_ms` behind their stores, and their namespace controllers wait
    `namespace_deletion_grace_s` before emptying a terminating namespace. Each plays its own Kubernetes
    version (kubesim/versions.py): a control plane upgraded before its members is common."""
    control_plane, member = (
        SimulatedCluster(
            name,
            latency_ms=latency_ms,
            informer_lag_ms=informer_lag_ms,
            namespace_deletion_grace_s=namespace_deletion_grace_s,
            git_version=version,
        )
        for name, version in (("control-plane", control_plane_version), (cluster_name, member_version))
    )
    await control_plane.start(port=control_plane_port)
    await member.start(port=member_port)
    link = KosmosLink(control_plane, member, cluster_name)
    await link.start()
    return control_plane, member, link


def pair_paths(directory: Path, cluster_name: str) -> PairPaths:
    return PairPaths(directory / "control-plane.kubeconfig", directory / f"{cluster_name}.kubeconfig")


async def serve_pair(
    *,
    cluster_name: str,
    directory: Path,
    latency_ms: float,
    on_ready: Callable[[PairPaths], None],
    informer_lag_ms: float = 0.0,
    namespace_deletion_grace_s: float = 0.0,
) -> None:
    control_plane, member, link = await start_pair(
        cluster_name,
        latency_ms=latency_ms,
        informer_lag_ms=informer_lag_ms,
        namespace_deletion_grace_s=namespace_deletion_grace_s,
    )
    paths = pair_paths(directory, cluster_name)
    member.write_kubeconfig(paths.member)
    control_plane.write_kubeconfig(paths.control_plane)
    on_ready(paths)
    try:
        await _until_signalled()
    finally:
        await link.stop()
        await member.stop()
        await control_plane.stop()
