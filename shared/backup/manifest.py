"""The manifest: what a sealed archive holds, one entry per object with its digest, and, in `manifest.json`
beside the archive, the archive's digest and the digests of the files steps read.

Its own module because the seal writes it, the checks read it (whole, or only the fields that say what is
covered) and steps list the backup's objects from it, and all of them must agree on one shape on disk.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass as pydantic_dataclass

from shared.backup.integrity import FileDigest
from shared.backup.layout import FORMAT_VERSION
from shared.items import GroupResource, ItemRef
from shared.models.times import Rfc3339Time

_CONFIG: Final = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
"""camelCase on disk; unknown fields ignored so an older reader still opens a newer writer's backup."""


@pydantic_dataclass(frozen=True, slots=True, kw_only=True, config=_CONFIG)
class ManifestItem:
    """One object in the archive, with the digest and size of its entry.

    A slotted pydantic dataclass rather than a BaseModel: a manifest holds one per object, and a BaseModel
    costs about 1.4 KB each (its `__dict__` and fields-set) against 0.4 KB here, which is most of the
    memory a seal or a verification of a large namespace needs."""

    group_resource: str
    namespace: str = ""
    """Empty for cluster-scoped objects."""
    name: str
    path: str
    sha256: str
    size: int = Field(ge=0)

    @property
    def ref(self) -> ItemRef:
        return ItemRef(GroupResource(self.group_resource), self.namespace, self.name)


class Manifest(BaseModel):
    """What the archive holds. The copy inside the archive has no `sha256` (a file cannot contain its own
    digest); the copy next to it, `manifest.json`, carries the archive's digest."""

    model_config = ConfigDict(**_CONFIG, frozen=True)

    format_version: str = FORMAT_VERSION
    created_at: Rfc3339Time
    """When the last part was written, i.e. when the objects were read (and fixed, so re-sealing gives
    the same bytes)."""
    labels: dict[str, str] = Field(default_factory=dict)
    items: list[ManifestItem] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    """Objects per group-resource, including collected group-resources that had none."""
    total_items: int = Field(default=0, ge=0)
    sha256: str | None = None
    files: dict[str, FileDigest] = Field(default_factory=dict)
    """Like `sha256`, only in `manifest.json`: each file beside the archive that steps read, by path in
    the run directory (`items/<gr>.jsonl`, `items/<gr>.idx`, `plan.json`)."""

    def cluster_objects(self) -> tuple[tuple[str, str], ...]:
        """(group-resource, name) of the cluster-scoped objects backed up with the namespace, which its
        promote creates in the control plane or finds there, shared with other namespaces."""
        return tuple(
            sorted(
                {
                    (item.group_resource, item.name)
                    for item in self.items
                    if not item.namespace and item.group_resource != "namespaces"
                }
            )
        )


class Coverage(BaseModel):
    """What `BackupDir.require_intact` needs of `manifest.json`: parsing only these fields skips building
    the per-item objects, most of a large manifest."""

    model_config = ConfigDict(**_CONFIG, frozen=True)

    counts: dict[str, int] = Field(default_factory=dict)
    sha256: str | None = None
    files: dict[str, FileDigest] = Field(default_factory=dict)
