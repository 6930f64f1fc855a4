"""The promote benchmark at a smoke size: it runs from a clean checkout and reports sane figures, for the
promote and the rollback after it.

Speed is never asserted (benchmarks print figures; CI machines differ): only that the run completed and
that what it counted adds up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_promote_benchmark_completes_and_counts_what_it_promoted(tmp_path: Path) -> None:
    output = tmp_path / "promote.json"
    run = subprocess.run(
        [
            sys.executable,
            "bench/promote.py",
            "--namespaces",
            "2",
            "--objects",
            "10",
            "--workers",
            "1",
            "--max-in-flight",
            "4",
            "--json",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "warning: the promote ended" not in run.stderr
    (result,) = json.loads(output.read_text())["runs"]
    assert result["objects_promoted"] == 2 * (10 + 1)  # each namespace's objects and the namespace itself
    assert result["tasks_per_namespace"] == result["messages_per_namespace"] > 0
    assert result["tasks_left_behind"] == 0
    assert result["status_kib"] > 0
    assert result["ratio_to_limit"] > 0 and 0 < result["pipeline_seconds"] <= result["promote_seconds"]
    assert result["worker_cpu_per_1000"] > 0
    rollback = result["rollback"]
    assert rollback["phase"] == "RolledBack"
    assert 0 < rollback["pipeline_seconds"] <= rollback["seconds"]
    assert rollback["ratio_to_limit"] > 0 and rollback["ratio_to_promote"] > 0
    for phase in (result, rollback):
        for cluster in ("control-plane", "member"):
            assert phase["api"][cluster]["requests_per_namespace"] >= 10
            assert 1 <= phase["api"][cluster]["most_in_flight"] <= 4
            assert sum(phase["api"][cluster]["per_namespace"].values()) > 0
    assert "ns | obj/ns | workers" in run.stdout
    assert "rollback of the same namespaces" in run.stdout
