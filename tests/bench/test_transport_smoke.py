"""The transport benchmark: every transport answers each operation and gets a CPU figure per request.
Nothing about speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_each_transport_gets_a_figure_for_each_operation(tmp_path: Path) -> None:
    figures_file = tmp_path / "transport.json"
    run = subprocess.run(
        [
            sys.executable,
            "bench/transport.py",
            "--requests",
            "20",
            "--rounds",
            "1",
            "--json",
            str(figures_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    figures = json.loads(figures_file.read_text())
    assert {"Kube (urllib3 pool)", "official client, CoreV1Api", "http.client, one connection"} <= set(
        figures
    )
    for transport, by_operation in figures.items():
        assert set(by_operation) == {"get", "patch", "create"}, transport
        assert all(cpu > 0 for cpu in by_operation.values()), (transport, by_operation)
        assert transport in run.stdout
