"""Finding 9 of issue 11: `kpromote backups show PATH | head` is not a damaged archive.

The reader leaving early closes the pipe; the command stops quietly with 141 (128 + SIGPIPE, what a
shell reports for any tool stopped that way), prints nothing on stderr, and the archive still verifies.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.backup import BackupDir, backup_root
from tests.test_settings_validation import REPO, kpromote


def sealed_backup(base: Path, items: int) -> Path:
    backup = BackupDir(backup_root(base, "promote-shop", "shop", "run-1"))
    backup.write_part(
        "configmaps",
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i:05d}", "namespace": "shop"},
            }
            for i in range(items)
        ),
    )
    backup.seal({"policy": "promote-shop"})
    return backup.root


def test_show_into_a_pipe_closed_early_exits_quietly(tmp_path: Path) -> None:
    run = sealed_backup(tmp_path / "backups", 8000)  # ~200 KB of lines: more than a pipe holds
    show = subprocess.Popen(
        [sys.executable, "-m", "services", "backups", "show", str(run)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert show.stdout is not None and show.stderr is not None
    first = show.stdout.readline()
    show.stdout.close()  # what `head -1` does once it has its line
    error = show.stderr.read().decode()
    assert show.wait(timeout=60) == 141, error
    assert first.startswith(b"configmaps\tshop/cm-00000")
    assert error == "", "nothing is reported: a closed pipe is not damage"


def test_show_to_the_end_still_exits_0(tmp_path: Path) -> None:
    run = sealed_backup(tmp_path / "backups", 3)
    result = kpromote(tmp_path, "backups", "show", str(run))
    assert result.returncode == 0, result.stderr
    assert "configmaps\tshop/cm-00002" in result.stdout
