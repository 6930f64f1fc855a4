"""Issue #15: deploy/overlays/s3, the opt-in Component that keeps backups in S3. Built by `kubectl
kustomize` from a user's kustomization beside the repository, as its header says to use it: no backups PVC
left, every worker on an emptyDir with the bucket's credentials from the Secret, and a configuration that
the processes accept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from tests.deploy.support import OVERLAYS, build_with_component

S3 = OVERLAYS / "s3"
WORKERS = {f"kosmos-promote-{queue}-worker" for queue in ("backup", "detach", "rebuild", "rollback")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return build_with_component(
        S3, tmp_path_factory.mktemp("s3"), "kubectl (its built-in kustomize) is not installed"
    )


def named(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_the_backups_volume_is_gone_and_every_worker_has_an_empty_dir_instead(
    built: list[dict[str, Any]],
) -> None:
    assert "kosmos-promote-backups" not in named(built, "PersistentVolumeClaim")
    deployments = named(built, "Deployment")
    assert deployments.keys() >= WORKERS
    for name, deployment in deployments.items():
        volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
        for volume in volumes.values():
            assert volume.get("persistentVolumeClaim", {}).get("claimName") != "kosmos-promote-backups", name
        if name in WORKERS:
            assert set(volumes["backups"]) == {"name", "emptyDir"}, volumes["backups"]


def test_workers_take_the_credentials_from_the_secret_and_keep_the_config(
    built: list[dict[str, Any]],
) -> None:
    secret = named(built, "Secret")["kosmos-promote-s3"]
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for name, deployment in named(built, "Deployment").items():
        if name in WORKERS:
            [container] = deployment["spec"]["template"]["spec"]["containers"]
            assert container["envFrom"] == [
                {"configMapRef": {"name": "kosmos-promote-config"}},
                {"secretRef": {"name": "kosmos-promote-s3", "optional": True}},
            ]


def test_the_configuration_parses_as_settings_naming_an_s3_location(
    built: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = named(built, "ConfigMap")["kosmos-promote-config"]["data"]
    for variable, value in data.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert settings.backup_location.startswith("s3://")
    mount = Path(data["KPROMOTE_BACKUP_DIR"])
    assert settings.backup_cache_dir.is_relative_to(mount), "the cache is on the worker's emptyDir"
