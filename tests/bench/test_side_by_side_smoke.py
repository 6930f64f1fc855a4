"""The side-by-side benchmark: alternates the two checkouts ABBA and prints each run and both medians.
Nothing about speed is asserted."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("side_by_side", ROOT / "bench" / "side_by_side.py")
assert _spec is not None and _spec.loader is not None
side_by_side = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(side_by_side)  # bench/ holds scripts, not a package


def test_the_sides_alternate_abba_so_a_drift_weighs_on_both() -> None:
    assert list(side_by_side.order(3)) == [
        (1, "this"),
        (1, "against"),
        (2, "against"),
        (2, "this"),
        (3, "this"),
        (3, "against"),
    ]


def test_a_comparison_with_this_very_commit_runs_both_sides_and_prints_medians() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "bench/side_by_side.py",
            "--against",
            "HEAD",
            "--rounds",
            "1",
            "--",
            "--namespaces",
            "1",
            "--objects",
            "5",
            "--workers",
            "1",
            "--no-rollback",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "round 1 this:" in run.stdout and "round 1 against:" in run.stdout
    assert "this median" in run.stdout and "against median" in run.stdout
    assert "this vs against" in run.stdout
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True)
    assert "kpromote-against-" not in worktrees.stdout, "the temporary checkout is removed"
