"""Where a backup's files are and what each is called: the run directory, the file names beside the archive,
the Velero path of each object inside it, and the checks that keep a name from escaping its directory.

In one module so that the writer (`archive.py`), the checks (`verify.py`) and the console agree on every
path by construction. Nothing here touches the disk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from shared.items import GroupResource, ItemRef

FORMAT_VERSION: Final = "1.1.0"
ARCHIVE_NAME: Final = "backup.tar.gz"
MANIFEST_NAME: Final = "manifest.json"
VERSION_ENTRY: Final = "metadata/version"
MANIFEST_ENTRY: Final = "metadata/manifest.json"
VERSION_BYTES: Final = f"{FORMAT_VERSION}\n".encode()
"""What Velero writes to metadata/version (`fmt.Sprintf("%s\\n", BackupFormatVersion)`)."""
PLAN_NAME: Final = "plan.json"
DERIVED_FILES: Final = frozenset({PLAN_NAME})
"""Files that steps derive from the sealed items after the seal and read back beside the archive: each is
added to the manifest by `BackupDir.write_derived`, and one that is present but not covered is refused."""
ITEMS_FILE: Final = re.compile(r"items/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\.(jsonl|idx)")
"""The items files a manifest may cover, by path in the run directory."""
_GROUP_RESOURCE: Final = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def backup_root(base: Path, policy: str, namespace: str, run_id: str) -> Path:
    """Where one run of one policy backs up one namespace: `<base>/<policy>/<namespace>/<run_id>`."""
    return base / run_key(policy, namespace, run_id)


@lru_cache(maxsize=4096)
def below(root: Path, relative: str) -> Path:
    """`root / relative`, built once per process: every step asks for the same few dozen files of a
    backup again and again, and pathlib takes microseconds to build a path (a tenth of a worker's
    Python time on a hundred small namespaces, bench/promote.py --profile)."""
    return root / relative


def run_key(policy: str, namespace: str, run_id: str) -> str:
    """The run folder's key in a backup store, `<policy>/<namespace>/<run_id>`: the same in every store."""
    for value in (policy, namespace, run_id):
        check_segment(value, "path segment")
    return f"{policy}/{namespace}/{run_id}"


def covered_path(relative: str) -> bool:
    """Whether a manifest may cover this path of the run folder: an items file or a derived file, never a
    path of the manifest's choosing (which could point outside the folder)."""
    return relative in DERIVED_FILES or ITEMS_FILE.fullmatch(relative) is not None


def entry_path(group_resource: str, namespace: str, name: str) -> str:
    """The archive entry of one object, as Velero names it."""
    if namespace:
        return f"resources/{group_resource}/namespaces/{namespace}/{name}.json"
    return f"resources/{group_resource}/cluster/{name}.json"


def ref_of(path: str) -> ItemRef | None:
    """The object an archive entry holds (the inverse of `entry_path`), or None for any other entry."""
    segments = path.split("/")
    if segments[0] != "resources" or not segments[-1].endswith(".json"):
        return None
    name = segments[-1].removesuffix(".json")
    if len(segments) == 5 and segments[2] == "namespaces":
        return ItemRef(GroupResource(segments[1]), segments[3], name)
    if len(segments) == 4 and segments[2] == "cluster":
        return ItemRef(GroupResource(segments[1]), "", name)
    return None


def object_key(obj: Any, where: str) -> tuple[str, str]:
    """(namespace, name) of an object, refusing what could not become an archive path."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{where} has no metadata")
    name = metadata.get("name")
    namespace = metadata.get("namespace") or ""
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise ValueError(f"{where} has no metadata.name, or a namespace that is not a string")
    check_segment(name, f"{where}: metadata.name")
    if namespace:
        check_segment(namespace, f"{where}: metadata.namespace")
    return namespace, name


def check_segment(value: str, what: str) -> None:
    """Refuse values that would escape or break a path (Kubernetes names never contain these)."""
    if not value or value in {".", ".."} or "/" in value or "\0" in value:
        raise ValueError(f"{what} {value!r} cannot be a path segment")


def check_group_resource(value: str) -> None:
    if not _GROUP_RESOURCE.fullmatch(value):
        raise ValueError(f"{value!r} is not a group-resource such as 'pods' or 'deployments.apps'")
