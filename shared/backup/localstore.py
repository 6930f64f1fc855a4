"""`LocalStore`: backups in a folder (a ReadWriteMany volume, or one machine's disk), the embedded default.

The folder is also the working folder of every backup, so publishing a file written in place costs
nothing and reading one needs no copy: a backup behaves exactly as before stores existed. Copies are made
only for a path outside the folder (tests, tools).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from shared.backup.atomic import atomic_file
from shared.backup.integrity import BUFFER
from shared.backup.store import StoredFile


class LocalStore:
    def __init__(self, base: Path) -> None:
        self.base = base

    def url(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def cache_name(self) -> str:
        return "local"

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        if target == path:
            return
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with path.open("rb") as source, atomic_file(target) as out:
            shutil.copyfileobj(source, out, BUFFER)

    def get_file(self, key: str, path: Path) -> StoredFile | None:
        source = self._path(key)
        found = self.stat(key)
        if found is None or source == path:
            return found
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with source.open("rb") as stream, atomic_file(path, sync_directory=False) as out:
                shutil.copyfileobj(stream, out, BUFFER)
        except FileNotFoundError:
            return None
        os.utime(path, (found.modified, found.modified))
        return found

    def open(self, key: str) -> AbstractContextManager[IO[bytes]]:
        return self._path(key).open("rb")

    def stat(self, key: str) -> StoredFile | None:
        try:
            result = self._path(key).stat()
        except FileNotFoundError:
            return None
        return StoredFile(key, result.st_size, result.st_mtime, f"{result.st_size}-{result.st_mtime_ns}")

    def list_prefix(self, prefix: str) -> Iterator[StoredFile]:
        """Regular files only, symbolic links not followed: nothing outside the folder is ever listed."""
        folder = prefix.rpartition("/")[0]
        found = []
        for directory, subfolders, files in os.walk(self._path(folder) if folder else self.base):
            subfolders[:] = [name for name in subfolders if not os.path.islink(os.path.join(directory, name))]
            relative = Path(directory).relative_to(self.base).as_posix()
            for name in files:
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix) and not os.path.islink(os.path.join(directory, name)):
                    stat = self.stat(key)
                    if stat is not None:
                        found.append(stat)
        yield from sorted(found, key=lambda stored: stored.key)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        return self.base / key if key else self.base
