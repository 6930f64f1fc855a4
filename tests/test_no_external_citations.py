"""No tracked file cites the research notes that live outside the repository.

The facts the code relies on are in docs/ (design.md, ordering.md, control-plane-traps.md, celery.md);
code and comments cite those, and text a user sees states its reason itself (issue #13 item 6).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CITATIONS = ("research §", "research/", "../shared/research")
"""How the notes outside the repository were cited (`research §3`, `research/celery.md §2`, a link)."""

SUFFIXES = (".py", ".md", ".yaml", ".yml")


def _tracked() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [path for path in listed.split("\0") if path.endswith(SUFFIXES)]


def test_no_tracked_file_cites_research_outside_the_repository() -> None:
    this = Path(__file__).resolve().relative_to(ROOT).as_posix()
    found = []
    for path in _tracked():
        if path == this or not (ROOT / path).is_file():
            continue
        for number, line in enumerate((ROOT / path).read_text(encoding="utf-8").splitlines(), start=1):
            if any(citation in line for citation in CITATIONS):
                found.append(f"{path}:{number}: {line.strip()}")
    assert not found, "cite docs/ instead, or state the reason:\n" + "\n".join(found)
