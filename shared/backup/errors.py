"""What the backup package raises, apart from `ValueError` for arguments that could never be valid: in one
module so the steps and the rollback worker catch them without depending on how a backup is written."""

from __future__ import annotations

from pathlib import Path


class BackupError(Exception):
    """The backup directory is not in the state the call needs."""


class BackupTampered(BackupError):
    """A sealed backup no longer matches its manifest, or its manifest is not signed as required: nothing
    may be done from it. `problems` names each changed, missing or uncovered file."""

    def __init__(self, root: Path | str, problems: list[str]) -> None:
        self.root = root
        self.problems = problems
        listed = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        super().__init__(f"backup {root} does not verify, refusing to use it: {listed}")
