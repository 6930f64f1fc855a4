"""`bench/promote.py` on this checkout and on another revision, alternating, in the same minutes.

This machine's speed drifts by a quarter and more from hour to hour, and single runs of a second or two
move by a fifth from one minute to the next, so a figure measured today says little about one measured
yesterday. This script is how the README's "side by side" figures are made: it checks the other revision
out in a temporary git worktree, then runs the benchmark of each checkout in turn (ABBA order, so a
drift during the rounds weighs on both sides alike) with the same arguments, and prints each run and the
median of each side.

Both sides run in this environment (the same Python and dependencies), each with its own checkout first
on `PYTHONPATH`.

    python bench/side_by_side.py --against 39c9d4e --rounds 3 -- --namespaces 20 --objects 20 --no-rollback

Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {
    "promote s": lambda run: run["promote_seconds"],
    "pipeline s": lambda run: run["pipeline_seconds"],
    "worker CPU s /1k": lambda run: run["worker_cpu_per_1000"],
    "worker / sim CPU": lambda run: round(
        run["cpu_seconds"]["workers"] / max(run["cpu_seconds"]["simulators"], 0.01), 2
    ),
    "sim CPU s": lambda run: run["cpu_seconds"]["simulators"],
    "rollback s": lambda run: (run.get("rollback") or {}).get("seconds"),
    "rollback CPU s /1k": lambda run: (run.get("rollback") or {}).get("worker_cpu_per_1000"),
}


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """`revision` checked out in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="kpromote-against-") as parent:
        path = Path(parent) / "checkout"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), revision],
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


def run_benchmark(checkout: Path, arguments: list[str], output: Path) -> list[dict[str, Any]]:
    """One run of `checkout`'s own bench/promote.py; its runs as written to its JSON."""
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [sys.executable, "bench/promote.py", *arguments, "--json", str(output)]
    finished = subprocess.run(command, cwd=checkout, env=environment, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"{checkout}: bench/promote.py failed:\n{finished.stderr[-3000:]}")
    runs: list[dict[str, Any]] = json.loads(output.read_text())["runs"]
    return runs


def order(rounds: int) -> Iterator[tuple[int, str]]:
    """ABBA: this, against, against, this, this, against …"""
    for index in range(rounds):
        sides = ("this", "against") if index % 2 == 0 else ("against", "this")
        for side in sides:
            yield index + 1, side


def print_comparison(results: dict[str, list[dict[str, Any]]]) -> None:
    for size in sorted({_size(run) for runs in results.values() for run in runs}):
        print(f"\n{size[0]} x {size[1]}")
        print(" | ".join(("side", *FIGURES)))
        medians: dict[str, list[float | None]] = {}
        for side, runs in results.items():
            same = [run for run in runs if _size(run) == size]
            for run in same:
                print(" | ".join((side, *(_shown(figure(run)) for figure in FIGURES.values()))))
            medians[side] = [_median([figure(run) for run in same]) for figure in FIGURES.values()]
        for side, values in medians.items():
            print(" | ".join((f"{side} median", *(_shown(value) for value in values))))
        change = [
            f"{100 * (after - before) / before:+.0f} %" if before and after is not None else "-"
            for before, after in zip(medians["against"], medians["this"], strict=True)
        ]
        print(" | ".join(("this vs against", *change)))


def _shown(value: float | None) -> str:
    return "-" if value is None else str(value)


def _size(run: dict[str, Any]) -> tuple[int, int]:
    return run["namespaces"], run["objects_per_namespace"]


def _median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 3) if present else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the git revision to compare this checkout with")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then bench/promote.py's arguments")
    args = parser.parse_args()
    arguments = [a for a in args.arguments if a != "--"]
    results: dict[str, list[dict[str, Any]]] = {"this": [], "against": []}
    with worktree(args.against) as against, tempfile.TemporaryDirectory() as scratch:
        checkouts = {"this": ROOT, "against": against}
        for index, (round_number, side) in enumerate(order(args.rounds)):
            output = Path(scratch) / f"{index}.json"
            runs = run_benchmark(checkouts[side], arguments, output)
            results[side].extend(runs)
            figures = ", ".join(f"{name} {_shown(figure(runs[-1]))}" for name, figure in FIGURES.items())
            print(f"round {round_number} {side}: {figures}", flush=True)
    print_comparison(results)


if __name__ == "__main__":
    main()
