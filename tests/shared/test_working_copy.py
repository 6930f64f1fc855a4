"""Working copies of backups kept in S3: a sweep removes those idle for its time, never one in use by a
thread or a process of the same machine, and a user whose folder is swept meanwhile gets a new one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from shared.backup.working_copy import IN_USE, SWEPT_PREFIX, held, sweep

REPO = Path(__file__).resolve().parents[2]


def run_folder(root: Path, run: str) -> Path:
    folder = root / "promote-shop" / "shop" / run
    with held(folder):
        (folder / "items").mkdir()
        (folder / "items" / "configmaps.jsonl").write_text("{}\n")
    return folder


def last_used(folder: Path, seconds_ago: float) -> None:
    then = time.time() - seconds_ago
    os.utime(folder / IN_USE, (then, then))


def test_an_idle_folder_is_swept_and_a_recently_used_one_kept(tmp_path: Path) -> None:
    idle, recent = run_folder(tmp_path, "run-1"), run_folder(tmp_path, "run-2")
    last_used(idle, 120)
    last_used(recent, 30)

    assert sweep(tmp_path, idle_seconds=60) == [idle]
    assert not idle.exists()
    assert (recent / "items" / "configmaps.jsonl").read_text() == "{}\n"
    assert not list(tmp_path.glob(f"*/*/{SWEPT_PREFIX}*")), "nothing is left half removed"


def test_a_folder_in_use_is_kept_however_long_ago_it_was_taken(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, "run-1")
    with held(folder):
        last_used(folder, 3600)
        assert sweep(tmp_path, idle_seconds=60) == []
        assert (folder / "items" / "configmaps.jsonl").exists()
    assert sweep(tmp_path, idle_seconds=60) == [], "given back just now: not idle yet"
    assert sweep(tmp_path, idle_seconds=0) == [folder]


def test_a_folder_held_by_another_process_is_kept(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, "run-1")
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from shared.backup.working_copy import held\n"
            "with held(Path(sys.argv[1])):\n"
            "    Path(sys.argv[2]).touch(); time.sleep(60)\n",
            str(folder),
            str(ready),
        ],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the holder did not start"
            time.sleep(0.05)
        last_used(folder, 3600)
        assert sweep(tmp_path, idle_seconds=60) == []
        assert folder.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert sweep(tmp_path, idle_seconds=60) == [folder], "the lock went with the process"


def test_a_user_waiting_while_its_folder_is_swept_makes_it_anew(tmp_path: Path) -> None:
    """The sweep's side, by hand: lock the folder's file exclusively, rename the folder away, let go."""
    import fcntl

    folder = run_folder(tmp_path, "run-1")
    descriptor = os.open(folder / IN_USE, os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    taken = threading.Event()
    seen: list[bool] = []

    def user() -> None:
        with held(folder):
            taken.set()
            seen.append((folder / IN_USE).exists() and not (folder / "items").exists())

    thread = threading.Thread(target=user)
    thread.start()
    assert not taken.wait(0.3), "the user waits for the sweep"
    trash = folder.with_name(f"{SWEPT_PREFIX}run-1")
    os.rename(folder, trash)
    os.close(descriptor)
    thread.join(10)
    assert seen == [True], "the user holds a new, empty folder, not the one set aside"
    assert (trash / "items" / "configmaps.jsonl").exists()
    sweep(tmp_path, idle_seconds=60)
    assert not trash.exists(), "a sweep finishes what another left set aside"
    assert folder.is_dir()
