"""The namespace backup: concurrent collect tasks, an idempotent seal, a Velero-layout archive that can be
verified and read back, and memory that does not grow with the objects' size."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import tarfile
import threading
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.backup import (
    BackupDir,
    BackupError,
    Manifest,
    backup_root,
    iter_archive,
    tarball,
    verify_archive,
    write_atomically,
)
from shared.items import GroupResource, ItemRef

LABELS = {"policy": "promote-shop", "namespace": "shop", "cluster": "member1"}


def configmap(name: str, namespace: str = "shop", payload: str = "v") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "shop"}},
        "data": {"value": payload},
    }


def namespace_object(name: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def big_configmaps(count: int) -> Iterator[dict[str, Any]]:
    """About 2 KB each once serialised, created on the fly so the test's own data is not what is traced."""
    for index in range(count):
        obj = configmap(f"cm-{index:06d}", payload=f"{index:06d}" * 300)
        obj["metadata"]["annotations"] = {"example.com/owner": "team-shop", "example.com/index": str(index)}
        yield obj


@pytest.fixture
def backup(tmp_path: Path) -> BackupDir:
    return BackupDir(backup_root(tmp_path, "promote-shop", "shop", "run-1"))


def sealed(backup: BackupDir, configmaps: int = 5) -> Manifest:
    backup.write_part("configmaps", (configmap(f"cm-{index}") for index in range(configmaps)))
    backup.write_part("namespaces", [namespace_object()])
    backup.write_part("deployments.apps", [])
    return backup.seal(LABELS)


def archive_entries(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar}  # type: ignore[union-attr]


def rewrite_archive(path: Path, entries: dict[str, bytes]) -> None:
    """Rebuild the archive with other entries (the manifest left as it was): what tampering looks like."""
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb") as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_backup_root_is_policy_namespace_run_and_refuses_path_tricks(tmp_path: Path) -> None:
    assert backup_root(tmp_path, "p", "ns", "r1") == tmp_path / "p" / "ns" / "r1"
    for policy, namespace, run_id in [("..", "ns", "r"), ("p", "a/b", "r"), ("p", "ns", "")]:
        with pytest.raises(ValueError, match="path segment"):
            backup_root(tmp_path, policy, namespace, run_id)


def test_write_part_refuses_unsafe_group_resources_and_nameless_objects(backup: BackupDir) -> None:
    with pytest.raises(ValueError, match="not a group-resource"):
        backup.write_part("../pods", [])
    with pytest.raises(ValueError, match=r"object 2 of configmaps has no metadata\.name"):
        backup.write_part("configmaps", [configmap("a"), {"metadata": {"generateName": "x-"}}])
    with pytest.raises(ValueError, match="cannot be a path segment"):
        backup.write_part("configmaps", [configmap("..")])
    assert backup.parts() == []
    assert list((backup.root / "parts").iterdir()) == [], "a failed write leaves no temporary behind"


def test_two_concurrent_writes_of_one_part_leave_one_complete_part(backup: BackupDir) -> None:
    """At-least-once delivery runs one collect twice at once: each must leave a whole part, never a mix."""
    both_halfway = threading.Barrier(2)
    counts: dict[str, int] = {}

    def objects(writer: str, meet: bool = False) -> Iterator[dict[str, Any]]:
        for index in range(2000):
            if meet and index == 1000:
                both_halfway.wait(timeout=10)
            yield configmap(f"cm-{index}", payload=writer)

    def collect(writer: str) -> None:
        counts[writer] = backup.write_part("configmaps", objects(writer, meet=True))

    threads = [threading.Thread(target=collect, args=(writer,)) for writer in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert counts == {"a": 2000, "b": 2000}
    assert backup.parts() == ["configmaps"]
    assert [path.name for path in (backup.root / "parts").iterdir()] == ["configmaps.jsonl"]
    lines = (backup.root / "parts" / "configmaps.jsonl").read_bytes().splitlines()
    objects_written = [orjson.loads(line) for line in lines]
    assert len(objects_written) == 2000
    writers = {obj["data"]["value"] for obj in objects_written}
    assert writers in ({"a"}, {"b"})
    assert objects_written == list(objects(writers.pop()))


def test_seal_is_idempotent_and_deterministic(backup: BackupDir) -> None:
    first = sealed(backup)
    archive = backup.archive_path.read_bytes()
    outer = backup.manifest_path.read_bytes()

    assert backup.seal(LABELS) == first
    assert backup.archive_path.read_bytes() == archive
    assert backup.manifest() == first

    # Sealing again from the same parts, as a crashed-and-retried seal would, gives the same bytes.
    backup.archive_path.unlink()
    backup.manifest_path.unlink()
    assert backup.seal(LABELS) == first
    assert backup.archive_path.read_bytes() == archive
    assert backup.manifest_path.read_bytes() == outer


def test_an_empty_type_is_counted_but_has_no_items_files(backup: BackupDir) -> None:
    """Most types of a namespace are empty: the manifest records that they were listed (count 0), and no
    files are written (or synced) for them."""
    manifest = sealed(backup)
    assert manifest.counts["deployments.apps"] == 0
    assert not any(path.name.startswith("deployments.apps") for path in (backup.root / "items").iterdir())
    assert list(backup.items("deployments.apps")) == [] and backup.count("deployments.apps") == 0
    assert backup.seal(LABELS) == manifest


def test_seal_remakes_a_lost_outer_manifest_from_the_parts_with_the_same_bytes(backup: BackupDir) -> None:
    """Not from the items files as they are now: that would seal whatever someone wrote there meanwhile."""
    first = sealed(backup)
    outer, archive = backup.manifest_path.read_bytes(), backup.archive_path.read_bytes()
    backup.manifest_path.unlink()
    assert backup.seal(LABELS) == first
    assert backup.manifest_path.read_bytes() == outer
    assert backup.archive_path.read_bytes() == archive


def test_seal_rebuilds_a_damaged_archive_from_the_parts(backup: BackupDir) -> None:
    first = sealed(backup)
    original = backup.archive_path.read_bytes()
    backup.archive_path.write_bytes(original[: len(original) // 2])
    assert backup.seal(LABELS) == first
    assert backup.archive_path.read_bytes() == original


def test_concurrent_seals_leave_a_consistent_archive_and_manifest(backup: BackupDir) -> None:
    backup.write_part("configmaps", big_configmaps(500))
    backup.write_part("namespaces", [namespace_object()])
    start = threading.Barrier(2)
    manifests: list[Manifest] = []

    def seal() -> None:
        start.wait(timeout=10)
        manifests.append(backup.seal(LABELS))

    threads = [threading.Thread(target=seal) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(manifests) == 2
    assert manifests[0] == manifests[1]
    report = verify_archive(backup.archive_path)
    assert report.ok, report.problems
    assert report.manifest == backup.manifest() == manifests[0]
    backup.require_intact()
    assert sorted(path.name for path in backup.root.iterdir()) == [
        "backup.tar.gz",
        "items",
        "manifest.json",
        "parts",
    ]


def test_seal_without_parts_is_refused(backup: BackupDir) -> None:
    with pytest.raises(BackupError, match="no parts"):
        backup.seal(LABELS)


def test_a_collect_rerun_after_seal_changes_nothing_and_returns_the_first_count(backup: BackupDir) -> None:
    """A late duplicate of a collect must not back up objects that promote may already have changed."""
    sealed(backup, configmaps=5)
    part = (backup.root / "parts" / "configmaps.jsonl").read_bytes()
    archive = backup.archive_path.read_bytes()

    def listing() -> Iterator[dict[str, Any]]:
        raise AssertionError("the member cluster is listed again after the seal")
        yield

    assert backup.write_part("configmaps", listing()) == 5
    assert backup.write_part("secrets", listing()) == 0
    assert (backup.root / "parts" / "configmaps.jsonl").read_bytes() == part
    assert backup.parts() == ["configmaps", "deployments.apps", "namespaces"]
    assert backup.seal(LABELS).total_items == 6
    assert backup.archive_path.read_bytes() == archive


def test_a_part_finished_after_the_seal_started_is_discarded(backup: BackupDir) -> None:
    backup.write_part("configmaps", [configmap(f"cm-{index}") for index in range(5)])

    def listing_overtaken_by_the_seal() -> Iterator[dict[str, Any]]:
        yield configmap("cm-new")
        backup.seal(LABELS)
        yield configmap("cm-newer")

    assert backup.write_part("configmaps", listing_overtaken_by_the_seal()) == 5
    assert [obj["metadata"]["name"] for obj in backup.items("configmaps")] == [
        f"cm-{index}" for index in range(5)
    ]
    assert [path.name for path in (backup.root / "parts").iterdir()] == ["configmaps.jsonl"]
    assert verify_archive(backup.archive_path).ok


def test_archive_layout_is_velero_1_1_0(backup: BackupDir) -> None:
    manifest = sealed(backup, configmaps=2)
    entries = archive_entries(backup.archive_path)

    assert list(entries) == [
        "metadata/version",
        "resources/configmaps/namespaces/shop/cm-0.json",
        "resources/configmaps/namespaces/shop/cm-1.json",
        "resources/namespaces/cluster/shop.json",
        "metadata/manifest.json",
    ]
    assert entries["metadata/version"] == b"1.1.0\n"
    # Pretty-printed, in the object's own key order (not sorted).
    assert entries["resources/configmaps/namespaces/shop/cm-1.json"] == orjson.dumps(
        configmap("cm-1"), option=orjson.OPT_INDENT_2
    )
    assert entries["resources/configmaps/namespaces/shop/cm-1.json"].startswith(
        b'{\n  "apiVersion": "v1",\n  "kind"'
    )

    inner = json.loads(entries["metadata/manifest.json"])
    assert "sha256" not in inner
    assert inner["formatVersion"] == "1.1.0"
    assert inner["labels"] == LABELS
    assert inner["counts"] == {"configmaps": 2, "deployments.apps": 0, "namespaces": 1}
    assert inner["totalItems"] == 3
    assert inner["createdAt"].endswith("Z")
    cluster_item = inner["items"][2]
    data = entries["resources/namespaces/cluster/shop.json"]
    assert cluster_item == {
        "groupResource": "namespaces",
        "namespace": "",
        "name": "shop",
        "path": "resources/namespaces/cluster/shop.json",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }

    outer = json.loads(backup.manifest_path.read_bytes())
    assert (
        outer.pop("sha256") == hashlib.sha256(backup.archive_path.read_bytes()).hexdigest() == manifest.sha256
    )
    files = {
        f"items/{name}": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name in ("configmaps.idx", "configmaps.jsonl", "namespaces.idx", "namespaces.jsonl")
        for data in [(backup.root / "items" / name).read_bytes()]
    }
    assert outer.pop("files") == files
    assert outer == inner


def test_archive_and_manifest_are_private(backup: BackupDir) -> None:
    sealed(backup)
    assert stat.S_IMODE(backup.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(backup.archive_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.manifest_path.stat().st_mode) == 0o600
    for path in [*backup.root.glob("parts/*"), *backup.root.glob("items/*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_duplicates_are_deduplicated_keeping_the_last_read(backup: BackupDir) -> None:
    """A LIST restarted after an expired continue token repeats objects; one copy of each is kept."""
    backup.write_part(
        "configmaps",
        [
            configmap("b", payload="first read"),
            configmap("a"),
            configmap("b", payload="second read"),
            configmap("b", namespace="other"),
        ],
    )
    backup.write_part(
        "secrets", [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b", "namespace": "shop"}}]
    )
    manifest = backup.seal(LABELS)

    assert [str(item.ref) for item in manifest.items] == [
        "configmaps other/b",
        "configmaps shop/a",
        "configmaps shop/b",
        "secrets shop/b",
    ]
    assert manifest.counts == {"configmaps": 3, "secrets": 1}
    assert [(obj["metadata"]["namespace"], obj["data"]["value"]) for obj in backup.items("configmaps")] == [
        ("other", "v"),
        ("shop", "v"),
        ("shop", "second read"),
    ]


def test_items_reads_pages_by_offset_and_limit(backup: BackupDir) -> None:
    backup.write_part("configmaps", (configmap(f"cm-{index:02d}") for index in reversed(range(25))))
    backup.write_part("namespaces", [namespace_object()])
    with pytest.raises(BackupError, match="not sealed"):
        backup.count("configmaps")
    backup.seal(LABELS)

    def names(offset: int = 0, limit: int | None = None) -> list[str]:
        return [obj["metadata"]["name"] for obj in backup.items("configmaps", offset, limit)]

    assert names() == [f"cm-{index:02d}" for index in range(25)]
    assert names(10, 5) == ["cm-10", "cm-11", "cm-12", "cm-13", "cm-14"]
    assert names(20, 100) == ["cm-20", "cm-21", "cm-22", "cm-23", "cm-24"]
    assert names(25) == names(40) == names(3, 0) == []
    assert backup.count("configmaps") == 25
    assert backup.count("secrets") == 0
    assert list(backup.items("secrets")) == []
    with pytest.raises(ValueError, match="negative"):
        backup.items("configmaps", -1)
    assert list(backup.items("configmaps", 17, 1)) == [configmap("cm-17")]
    assert list(backup.items("namespaces")) == [namespace_object()]


def test_verify_accepts_a_sealed_archive(backup: BackupDir) -> None:
    manifest = sealed(backup)
    report = verify_archive(backup.archive_path)
    assert report.ok, report.problems
    assert report.manifest == manifest
    assert report.sha256 == manifest.sha256


def test_verify_detects_a_tampered_entry(backup: BackupDir) -> None:
    sealed(backup)
    entries = archive_entries(backup.archive_path)
    entries["resources/configmaps/namespaces/shop/cm-3.json"] = orjson.dumps(
        configmap("cm-3", payload="tampered"), option=orjson.OPT_INDENT_2
    )
    rewrite_archive(backup.archive_path, entries)

    report = verify_archive(backup.archive_path)
    assert not report.ok
    assert any(
        p.startswith("mismatched entry resources/configmaps/namespaces/shop/cm-3.json")
        for p in report.problems
    )
    assert any(p.startswith("archive sha256 is") for p in report.problems), "the outer manifest's digest"
    assert len(report.problems) == 2, report.problems


def test_verify_detects_missing_and_extra_entries(backup: BackupDir) -> None:
    sealed(backup)
    entries = archive_entries(backup.archive_path)
    del entries["resources/configmaps/namespaces/shop/cm-1.json"]
    entries["resources/secrets/namespaces/shop/smuggled.json"] = b"{}"
    rewrite_archive(backup.archive_path, entries)
    backup.manifest_path.unlink()

    report = verify_archive(backup.archive_path)
    assert sorted(report.problems) == [
        "extra entry resources/secrets/namespaces/shop/smuggled.json is not in the manifest",
        "missing entry resources/configmaps/namespaces/shop/cm-1.json",
    ]


def test_verify_detects_an_outer_manifest_that_describes_something_else(backup: BackupDir) -> None:
    manifest = sealed(backup)
    forged = manifest.model_copy(update={"labels": {**LABELS, "cluster": "member2"}})
    backup.manifest_path.write_text(forged.model_dump_json(by_alias=True))

    report = verify_archive(backup.archive_path)
    assert report.problems == ["manifest.json differs from the archive's metadata/manifest.json"]


@pytest.mark.parametrize("keep", ["half", "all but the gzip trailer"])
def test_verify_detects_a_truncated_archive(backup: BackupDir, keep: str) -> None:
    sealed(backup)
    data = backup.archive_path.read_bytes()
    backup.archive_path.write_bytes(data[: len(data) // 2] if keep == "half" else data[:-4])
    backup.manifest_path.unlink()  # detected without the outer digest too

    report = verify_archive(backup.archive_path)
    assert not report.ok
    assert any("unreadable" in problem for problem in report.problems), report.problems
    with pytest.raises((EOFError, tarfile.TarError)):
        list(iter_archive(backup.archive_path))


def test_iter_archive_round_trips(backup: BackupDir) -> None:
    backup.write_part("configmaps", [configmap(f"cm-{index}") for index in range(3)])
    backup.write_part("namespaces", [namespace_object()])
    backup.write_part(
        "clusterroles.rbac.authorization.k8s.io", [{"metadata": {"name": "shop-reader"}, "rules": []}]
    )
    backup.seal(LABELS)

    assert list(iter_archive(backup.archive_path)) == [
        (
            ItemRef(GroupResource("clusterroles.rbac.authorization.k8s.io"), "", "shop-reader"),
            {
                "metadata": {"name": "shop-reader"},
                "rules": [],
            },
        ),
        *[
            (ItemRef(GroupResource("configmaps"), "shop", f"cm-{index}"), configmap(f"cm-{index}"))
            for index in range(3)
        ],
        (ItemRef(GroupResource("namespaces"), "", "shop"), namespace_object()),
    ]


def test_ten_thousand_objects_seal_in_bounded_memory(backup: BackupDir) -> None:
    """Velero OOMs on namespaces of 10k Secrets (velero#3851); here memory must not follow the objects'
    size: 10k objects of 2 KB are 20 MB of JSON, and the whole write_part + seal stays well below that
    plus the manifest (~1 KB per item)."""
    tracemalloc.start()
    try:
        written = backup.write_part("configmaps", big_configmaps(10_000))
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        manifest = backup.seal(LABELS)
        _, seal_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    print(f"write_part peak {write_peak / 2**20:.1f} MiB, seal peak {seal_peak / 2**20:.1f} MiB")
    assert written == manifest.total_items == 10_000
    assert (backup.root / "items" / "configmaps.jsonl").stat().st_size > 20_000_000
    assert write_peak < 5 * 2**20, f"write_part peaked at {write_peak / 2**20:.1f} MiB"
    # About 10 MiB measured, mostly the returned manifest; the brief's ceiling is 30 MB.
    assert seal_peak < 16 * 2**20, f"seal peaked at {seal_peak / 2**20:.1f} MiB"


def test_small_files_written_by_many_threads_at_once_end_whole(tmp_path: Path) -> None:
    """Two runs of one task in one worker share a process id: their writes of one derived file (the
    decisions, the manifest) must not share a temporary file."""
    target = tmp_path / "decisions.json"
    payloads = [orjson.dumps({"uid": "promote", "writer": str(n) * 5000}) for n in range(16)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda data: write_atomically(target, data), payloads * 4))
    assert target.read_bytes() in payloads
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["decisions.json"]


def test_the_tar_writer_writes_what_tarfile_writes_byte_for_byte() -> None:
    """Archives sealed before and after the writer replaced TarFile are the same bytes, so workers of two
    versions sealing one backup at once still rename identical files over each other."""
    entries = [
        ("metadata/version", b"1.1.0"),
        ("resources/configmaps/namespaces/shop/settings.json", b'{"data": {"a": "b"}}' * 40),
        ("resources/secrets/namespaces/shop/" + "long-name-" * 12 + ".json", b"x" * 512),  # a PAX path
        ("resources/pods/namespaces/shop/empty.json", b""),
    ]
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.PAX_FORMAT) as reference:
        for path, data in entries:
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o600
            reference.addfile(info, io.BytesIO(data))

    written = io.BytesIO()
    writer = tarball.TarWriter(written)
    for path, data in entries:
        writer.add(path, data, 1_700_000_000)
    writer.close()

    assert written.getvalue() == expected.getvalue()
