"""`kpromote demo`: the whole system on one machine, with nothing installed beyond Python packages.

Starts a simulated Kosmos control plane linked to a simulated member cluster, seeds the member with
realistic applications (every kind a promote must handle) and shows how to reach both clusters.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kubesim import SimulatorThread
from kubesim.seed import seed_cluster_scoped, seed_namespace
from kubesim.serve import pair_paths, start_pair
from kubesim.testing import api_client

MEMBER = "member1"


def run(*, namespaces: int, workdir: Path, wait: bool) -> int:
    console = Console()
    with SimulatorThread() as simulator:
        control_plane, member, link = simulator.run(start_pair(MEMBER))
        simulator.clusters.extend([control_plane, member])
        paths = pair_paths(workdir.resolve(), MEMBER)
        member.write_kubeconfig(paths.member)
        control_plane.write_kubeconfig(paths.control_plane)
        console.print(f"[bold]Kosmos control plane[/] {control_plane.url}  kubeconfig {paths.control_plane}")
        console.print(f"[bold]member cluster '{MEMBER}'[/] {member.url}  kubeconfig {paths.member}")
        started = time.monotonic()
        with api_client(member.url) as api:
            seed_cluster_scoped(api)
            seeded = [seed_namespace(api, f"shop-{index}") for index in range(1, namespaces + 1)]
        table = Table(title=f"Seeded member applications ({time.monotonic() - started:.1f}s)")
        for column in ("namespace", "pods running", "pod names"):
            table.add_column(column)
        for namespace in seeded:
            table.add_row(namespace.namespace, str(len(namespace.pods)), ", ".join(sorted(namespace.pods)))
        console.print(table)
        console.print("The promote pipeline is not built yet: the clusters above are what it will migrate.")
        if wait:
            console.print("Clusters stay up until Ctrl-C.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        simulator.run(link.stop())
    return 0
