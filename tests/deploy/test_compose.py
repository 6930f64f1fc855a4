"""docker-compose.yml: valid Compose, and the same installation as deploy/ on one Docker host.

Validated against the Compose Specification schema vendored in schemas/compose-spec.json (its source is
in schemas/README.md); the rest checks the services, the workers' commands, the shared volume and that
the KPROMOTE_* configuration is the one the Kubernetes manifests use.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest

from services.celery_app import QUEUES
from shared.settings import Settings
from tests.deploy.support import (
    DEPLOY,
    KUSTOMIZATION,
    by_component,
    compose,
    compose_environment,
    compose_services,
    config_map,
    duration_seconds,
    env_names,
    kustomization,
    load_json,
    main_container,
)

WORKERS = {f"{queue}-worker": queue for queue in QUEUES}
KPROMOTE_SERVICES = ["watcher", *WORKERS]
BACKUP_DIR = "/var/lib/kosmos-promote/backups"
KUBECONFIG = "/etc/kosmos-promote/kubeconfig"
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}")


def _validator() -> jsonschema.Draft202012Validator:
    schema = load_json("compose-spec.json")
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_compose_file_follows_the_compose_specification() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(compose())]
    assert not errors, "\n".join(errors)


def test_the_schema_refuses_a_misspelt_key() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["watcher"]["enviroment"] = {"KPROMOTE_BACKUP_DIR": BACKUP_DIR}
    assert not _validator().is_valid(broken)


def test_services_are_redis_the_watcher_one_worker_per_queue_and_flower() -> None:
    default = {name for name, service in compose_services().items() if not service.get("profiles")}
    assert default == {"redis", "watcher", *WORKERS, "flower"}


def test_each_worker_consumes_its_own_queue_as_in_kubernetes() -> None:
    for name, queue in WORKERS.items():
        command = compose_services()[name]["command"]
        assert command[:3] == ["worker", "--queues", queue], name
        assert command == main_container(by_component()[name])["args"], f"{name}: differs from deploy/"
    assert compose_services()["watcher"]["command"] == ["watcher"]


def test_workers_scale_with_docker_compose_up_scale() -> None:
    """`--scale` fails with a fixed container name or a published host port."""
    for name in WORKERS:
        service = compose_services()[name]
        assert "container_name" not in service and "ports" not in service, name
        assert "deploy" not in service or "replicas" not in service["deploy"], name


def test_every_worker_mounts_the_shared_backup_volume() -> None:
    assert "backups" in compose()["volumes"]
    for name in KPROMOTE_SERVICES:
        service = compose_services()[name]
        assert "backups:" + BACKUP_DIR in service["volumes"], name
        assert compose_environment(service)["KPROMOTE_BACKUP_DIR"] == BACKUP_DIR


def test_the_control_plane_kubeconfig_is_mounted_read_only() -> None:
    for name in KPROMOTE_SERVICES:
        service = compose_services()[name]
        (mount,) = (v for v in service["volumes"] if isinstance(v, dict) and v["type"] == "bind")
        assert (mount["source"], mount["target"], mount["read_only"]) == ("./kubeconfig", KUBECONFIG, True)
        assert mount["bind"]["create_host_path"] is False
        assert compose_environment(service)["KPROMOTE_KUBECONFIG"] == KUBECONFIG


def test_kpromote_settings_are_the_same_as_in_kubernetes() -> None:
    """Same names and, apart from the broker URL (which embeds the password), the same values."""
    configured = config_map("kosmos-promote-config")
    in_kubernetes = {
        n for n in env_names(main_container(by_component()["watcher"])) if n.startswith("KPROMOTE_")
    }
    fields = set(Settings.model_fields)
    for name in [*KPROMOTE_SERVICES, "flower"]:
        environment = compose_environment(compose_services()[name])
        names = {n for n in environment if n.startswith("KPROMOTE_")}
        assert names == in_kubernetes, name
        assert all(n.removeprefix("KPROMOTE_").lower() in fields for n in names)
        for key, value in configured.items():
            assert environment[key] == value, f"{name}: {key}"
        url = environment["KPROMOTE_BROKER_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD:?") and url.endswith("}@redis:6379/0"), url


def test_the_configuration_parses_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in compose_environment(compose_services()["watcher"]).items():
        monkeypatch.setenv(key, INTERPOLATION.sub("secret", value))
    settings = Settings()
    assert settings.broker_url == "redis://:secret@redis:6379/0"
    assert settings.namespace == kustomization(DEPLOY / KUSTOMIZATION)["namespace"], "where the claims live"
    assert settings.visibility_timeout == int(
        config_map("kosmos-promote-config")["KPROMOTE_VISIBILITY_TIMEOUT"]
    )


def test_workers_stop_gracefully_within_the_visibility_timeout() -> None:
    default = Settings.model_fields["visibility_timeout"].default
    configured = int(compose_environment(compose_services()["watcher"])["KPROMOTE_VISIBILITY_TIMEOUT"])
    for name in WORKERS:
        assert duration_seconds(compose_services()[name]["stop_grace_period"]) >= max(default, configured), (
            name
        )


def test_worker_health_check_is_the_kubernetes_startup_probe() -> None:
    for name in WORKERS:
        test = compose_services()[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        assert test[1:] == main_container(by_component()[name])["startupProbe"]["exec"]["command"], name


def test_secrets_come_from_the_environment_and_are_required() -> None:
    """No password in the file; `${VAR:?...}` stops compose when one is missing instead of running open."""
    redis = compose_services()["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert compose_environment(redis)["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert "redis-data:/data" in redis["volumes"] and "ports" not in redis
    flower = compose_environment(compose_services()["flower"])
    assert flower["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    for service in compose_services().values():
        for value in compose_environment(service).values():
            assert "REPLACE-ME" not in value
            for match in re.finditer(r"\$\{?([A-Z_]+)", value):
                assert match[1] in ("REDIS_PASSWORD", "FLOWER_BASIC_AUTH", "MINIO_ROOT_PASSWORD"), value


def test_flower_api_is_never_opened_without_auth() -> None:
    from flower.options import default_options

    flower = compose_services()["flower"]
    # `kpromote flower` (the image's entrypoint), which refuses to start without credentials or with a
    # placeholder, with the same arguments as the Kubernetes pod.
    assert "entrypoint" not in flower, "the image's entrypoint, kpromote, must run Flower"
    command = flower["command"]
    assert command == main_container(by_component()["flower"])["args"], "differs from deploy/"
    assert command[0] == "flower" and "--address=0.0.0.0" in command and "--port=5555" in command
    assert "--no-auth" not in command and not any(a.startswith("--basic-auth") for a in command)
    assert flower["ports"] == ["127.0.0.1:5555:5555"], "published on the loopback interface only"
    assert "http://127.0.0.1:5555/healthcheck" in flower["healthcheck"]["test"][-1]
    for service in compose_services().values():
        for name in compose_environment(service):
            assert name != "FLOWER_UNAUTHENTICATED_API"
            if name.startswith("FLOWER_"):
                assert name.removeprefix("FLOWER_").lower() in default_options, name


def test_kpromote_containers_run_unprivileged() -> None:
    for name in [*KPROMOTE_SERVICES, "flower"]:
        service: dict[str, Any] = compose_services()[name]
        assert service["user"] == "10001:10001" and service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
        assert service["image"] == "kosmos-promote:latest" and service["build"] == "."
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
