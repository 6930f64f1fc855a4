"""deploy/: the Kubernetes manifests are valid, complete and consistent with the code they run.

Schemas: Kubernetes kinds against kubernetes-validate's schemas for KUBERNETES_VERSION in strict mode
(unknown fields fail); the KEDA kinds against the minimal schema in schemas/keda.json. The rest checks
what a schema cannot: kustomize structure, one worker per queue, grace periods against the visibility
timeout, least-privilege RBAC, env var names against shared.settings.Settings, pod security.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.celery_app import QUEUES
from shared.kube import Kube
from shared.ordering import REBUILD_TIERS
from shared.settings import Settings
from tests.deploy.support import (
    DEPLOY,
    EXPANSION,
    IMAGE,
    KUBERNETES_VERSION,
    KUSTOMIZATION,
    OVERLAYS,
    Manifest,
    allows,
    by_component,
    by_kind,
    config_map,
    containers,
    deployments,
    env_list,
    env_names,
    environment,
    iter_strings,
    kustomization,
    kustomization_files,
    load_json,
    main_container,
    manifests,
    pod_spec,
    rules_of,
    split_group_resource,
    yaml_files,
)

CRD_DEFINED = {
    "keda.sh/v1alpha1": {"ScaledObject", "TriggerAuthentication"},
    "monitoring.coreos.com/v1": {"PodMonitor", "PrometheusRule"},
}
"""Kinds whose schema Kubernetes does not ship (their CRDs come with KEDA, or with the Prometheus Operator for
the opt-in monitoring/): validated by the minimal schemas in schemas/."""
CRD_SCHEMAS = {"keda.sh/v1alpha1": "keda.json", "monitoring.coreos.com/v1": "prometheus-operator.json"}
OPT_IN = (DEPLOY / "keda", DEPLOY / "monitoring")
"""Applied after the base, each with its own kustomization: not part of the base's build."""
WORKERS = {f"{queue}-worker": queue for queue in QUEUES}
KPROMOTE_COMPONENTS = {"watcher", *WORKERS}
"""Components that run `kpromote` and call the Kubernetes API."""
NAMESPACE = "kosmos-promote"


def _crd_defined(manifest: Manifest | dict[str, Any]) -> bool:
    body = manifest.body if isinstance(manifest, Manifest) else manifest
    return body["kind"] in CRD_DEFINED.get(body["apiVersion"], set())


def _validate(body: dict[str, Any]) -> None:
    if _crd_defined(body):
        defs = load_json(CRD_SCHEMAS[body["apiVersion"]])["$defs"]
        schema = {"$ref": f"#/$defs/{body['kind']}", "$defs": defs}
        jsonschema.Draft202012Validator(schema).validate(body)
    else:
        kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)


# ---- schemas


def test_deploy_holds_the_expected_objects() -> None:
    kinds = {m.kind for m in manifests()}
    assert {
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "ScaledObject",
        "TriggerAuthentication",
    } <= kinds
    assert set(by_component()) == {"watcher", *WORKERS, "redis", "flower"}


@pytest.mark.parametrize("manifest", manifests(), ids=lambda m: m.id)
def test_manifest_is_valid_for_its_schema(manifest: Manifest) -> None:
    _validate(manifest.body)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    """The check above is not vacuous: a typo in a Deployment, or a number in KEDA metadata, fails."""
    deployment = copy.deepcopy(deployments()["kosmos-promote-watcher"])
    pod_spec(deployment)["terminationGracePeriodSecond"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)
    scaled = copy.deepcopy(by_kind("ScaledObject")["kosmos-promote-rebuild-worker"])
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 8
    with pytest.raises(jsonschema.ValidationError):
        _validate(scaled)


def test_only_the_keda_and_monitoring_kinds_bypass_the_kubernetes_schemas() -> None:
    bypassing = {(m.body["apiVersion"], m.kind, m.path.parent.name) for m in manifests() if _crd_defined(m)}
    assert bypassing == {
        ("keda.sh/v1alpha1", "ScaledObject", "keda"),
        ("keda.sh/v1alpha1", "TriggerAuthentication", "keda"),
        ("monitoring.coreos.com/v1", "PodMonitor", "monitoring"),
        ("monitoring.coreos.com/v1", "PrometheusRule", "monitoring"),
    }


# ---- kustomize structure


def _resources(path: Path) -> list[Path]:
    data = kustomization(path)
    return [path.parent / entry for entry in data.get("resources", [])] + [
        path.parent / patch["path"] for patch in data.get("patches", []) if "path" in patch
    ]


def _is_component(path: Path) -> bool:
    """The opt-in overlays are kustomize Components (an overlay inside its base would be a cycle)."""
    return kustomization(path)["kind"] == "Component"


def test_every_kustomization_resource_exists() -> None:
    for path in kustomization_files():
        data = kustomization(path)
        if path.is_relative_to(OVERLAYS):
            assert (data["apiVersion"], data["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
        else:
            assert data["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and data["kind"] == "Kustomization"
        for resource in _resources(path):
            assert resource.exists(), f"{path.relative_to(DEPLOY)} lists {resource}, which does not exist"
            assert resource.is_file() or (resource / KUSTOMIZATION).is_file(), resource
        entries = data.get("resources", [])
        assert len(entries) == len(set(entries)), f"{path} lists a resource twice"


def test_no_manifest_is_left_out_of_every_kustomization() -> None:
    listed = {resource.resolve() for path in kustomization_files() for resource in _resources(path)}
    for path in yaml_files():
        if path.name != KUSTOMIZATION:
            assert path.resolve() in listed, f"{path.relative_to(DEPLOY)} is in no kustomization"


def test_the_crd_is_the_one_the_code_serves() -> None:
    base = kustomization(DEPLOY / KUSTOMIZATION)
    assert "crds/promotepolicies.kosmos.io.yaml" in base["resources"]
    crd = DEPLOY / "crds" / "promotepolicies.kosmos.io.yaml"
    served = DEPLOY.parent / "shared" / "crds" / "promotepolicies.kosmos.io.yaml"
    assert crd.read_bytes() == served.read_bytes(), "deploy/crds must be an exact copy of shared/crds"


def test_kustomizations_agree_on_namespace_and_image() -> None:
    for path in kustomization_files():
        if not _is_component(path):  # a Component takes the namespace of the kustomization using it
            assert kustomization(path)["namespace"] == NAMESPACE, path
    (namespace,) = by_kind("Namespace")
    assert namespace == NAMESPACE
    images = {entry["name"]: entry for entry in kustomization(DEPLOY / KUSTOMIZATION)["images"]}
    assert images[IMAGE]["newTag"] == "latest"
    for deployment in deployments().values():
        for container in containers(deployment):
            name, _, tag = container["image"].partition(":")
            if name == IMAGE:
                assert tag == "latest", container["image"]
            else:
                assert name not in images and tag, f"{container['image']}: pin a tag for third-party images"
    # Objects that name a namespace name this one (ClusterRoleBinding subjects, mostly).
    for manifest in manifests():
        for subject in manifest.body.get("subjects", []):
            assert subject.get("namespace") == NAMESPACE, manifest.id


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (its built-in kustomize) is not installed; the structure tests above still ran")
    return kubectl


@pytest.mark.parametrize("overlay", ["", "keda"])
def test_kustomize_builds_every_object_into_the_namespace(overlay: str) -> None:
    root = DEPLOY / overlay
    built = subprocess.run(
        [_kubectl(), "kustomize", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    objects = [o for o in yaml.safe_load_all(built) if o]
    expected = [
        m for m in manifests() if m.path.is_relative_to(root) and (overlay or m.path.parent not in OPT_IN)
    ]
    assert not any(m.path.is_relative_to(OVERLAYS) for m in expected)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        (m.kind, m.name) for m in expected
    )
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in objects:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == NAMESPACE


# ---- workers: one Deployment per queue


def _queues_consumed(container: dict[str, Any]) -> list[str]:
    args = container["args"]
    assert args[0] == "worker", args
    for flag in ("--queues", "-Q"):
        if flag in args:
            return args[args.index(flag) + 1].split(",")
    raise AssertionError(f"no --queues in {args}")


def test_each_queue_has_one_worker_deployment_that_consumes_only_it() -> None:
    workers = {c: d for c, d in by_component().items() if main_container(d)["args"][0] == "worker"}
    assert set(workers) == set(WORKERS)
    for name, deployment in workers.items():
        assert _queues_consumed(main_container(deployment)) == [WORKERS[name]], name
        assert deployment["metadata"]["name"] == f"kosmos-promote-{name}"
        assert "--concurrency" in main_container(deployment)["args"]


def test_worker_pod_templates_differ_only_in_queue_concurrency_resources_and_account() -> None:
    def normalised(name: str) -> dict[str, Any]:
        template = copy.deepcopy(by_component()[name]["spec"]["template"])
        template["metadata"]["labels"]["app.kubernetes.io/component"] = "WORKER"
        template["spec"]["serviceAccountName"] = "ACCOUNT"
        container = template["spec"]["containers"][0]
        container["args"] = ["worker", "--queues", "QUEUE", "--concurrency", "N"]
        container.pop("resources")
        return template

    templates = {name: normalised(name) for name in WORKERS}
    for name, template in templates.items():
        assert template == templates["backup-worker"], f"{name} drifted from backup-worker"


def test_worker_grace_period_lets_the_longest_task_finish() -> None:
    """terminationGracePeriodSeconds >= the visibility timeout, the bound on a task's run time."""
    default = Settings.model_fields["visibility_timeout"].default
    configured = int(config_map("kosmos-promote-config").get("KPROMOTE_VISIBILITY_TIMEOUT", default))
    for name in WORKERS:
        grace = pod_spec(by_component()[name])["terminationGracePeriodSeconds"]
        assert grace >= max(default, configured), name
    assert pod_spec(by_component()["watcher"])["terminationGracePeriodSeconds"] == 30


def test_worker_replicas_are_left_to_scaling() -> None:
    for name in WORKERS:
        deployment = by_component()[name]
        assert "replicas" not in deployment["spec"], f"{name}: re-applying would reset a scaled count"
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_watcher_never_runs_twice() -> None:
    """kopf runs standalone (no peering): two watchers would publish every policy's jobs twice."""
    spec = by_component()["watcher"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    assert main_container(by_component()["watcher"])["args"] == ["watcher"]


def test_backups_are_one_shared_volume_mounted_by_every_worker() -> None:
    claim = by_kind("PersistentVolumeClaim")["kosmos-promote-backups"]["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"] and claim["resources"]["requests"]["storage"] == "20Gi"
    backup_dir = config_map("kosmos-promote-config")["KPROMOTE_BACKUP_DIR"]
    for name in WORKERS:
        deployment = by_component()[name]
        volumes = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec(deployment)["volumes"]
            if "persistentVolumeClaim" in v
        }
        mounts = {m["mountPath"]: m["name"] for m in main_container(deployment)["volumeMounts"]}
        assert volumes[mounts[backup_dir]] == "kosmos-promote-backups", name
        assert pod_spec(deployment)["securityContext"]["fsGroup"] == 10001


# ---- RBAC


def test_no_rule_grants_every_verb() -> None:
    for role in [*by_kind("ClusterRole").values(), *by_kind("Role").values()]:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"], (role["metadata"]["name"], rule)
            assert not ("*" in rule.get("resources", []) and "*" in rule["verbs"])
    # Namespaced grants are the claims, Leases, and the backup worker's revision probes, StatefulSets, in
    # the installation's namespace (kustomize puts the Roles and RoleBindings there), through a Role, never
    # a ClusterRole.
    for name, role in by_kind("Role").items():
        probes = [(["apps"], ["statefulsets"])] if name == "kosmos-promote-backup-worker" else []
        assert [(r["apiGroups"], r["resources"]) for r in role["rules"]] == [
            (["coordination.k8s.io"], ["leases"]),
            *probes,
        ], name
    for binding in by_kind("RoleBinding").values():
        assert binding["roleRef"]["kind"] == "Role" and "namespace" not in binding["metadata"]


def test_each_component_has_its_own_account_and_role() -> None:
    accounts = {}
    for name in KPROMOTE_COMPONENTS:
        account = pod_spec(by_component()[name])["serviceAccountName"]
        assert account == f"kosmos-promote-{name}"
        assert account in by_kind("ServiceAccount")
        accounts[name] = account
    assert len(set(accounts.values())) == len(accounts)
    for binding in by_kind("ClusterRoleBinding").values():
        (subject,) = binding["subjects"]
        assert binding["roleRef"]["name"] == subject["name"] == binding["metadata"]["name"]


def test_the_watcher_cannot_delete_pods_or_anything_else() -> None:
    rules = rules_of(by_component()["watcher"])
    assert not allows(rules, "delete", "", "pods")
    assert not any("delete" in r["verbs"] or "deletecollection" in r["verbs"] for r in rules)
    for verb in ("list", "watch", "patch"):
        assert allows(rules, verb, "kosmos.io", "promotepolicies")
    assert allows(rules, "patch", "kosmos.io", "promotepolicies/status")
    assert allows(rules, "create", "", "events")
    assert allows(rules, "get", "", "nodes") and allows(rules, "get", "", "namespaces")
    assert allows(rules, "get", "kosmos.io", "clusters")
    assert not allows(rules, "create", "", "pods")


def test_every_worker_reads_the_member_cluster_object_and_no_worker_needs_its_policy() -> None:
    for name in WORKERS:
        rules = rules_of(by_component()[name])
        assert allows(rules, "get", "kosmos.io", "clusters"), name
        if name in ("backup-worker", "detach-worker"):  # the others hold `*` get for what they rebuild
            assert not allows(rules, "get", "kosmos.io", "promotepolicies"), name
        # Policy status is the watcher's to write; what a worker asks of Kosmos' own API is only reads.
        kosmos = [rule for rule in rules if rule["apiGroups"] == ["kosmos.io"]]
        assert kosmos and all(rule["verbs"] == ["get"] for rule in kosmos), name


def test_backup_and_detach_touch_the_control_plane_read_only() -> None:
    """Their work is in the member, through the Cluster object's kubeconfig: here they only read."""
    for name in ("backup-worker", "detach-worker"):
        for rule in rules_of(by_component()[name]):
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, (name, rule)


def test_rebuild_can_create_every_kind_promote_rebuilds_but_never_delete() -> None:
    rules = rules_of(by_component()["rebuild-worker"])
    rebuilt = [gr for tier in REBUILD_TIERS for gr in tier.group_resources] + ["deployments.apps", "secrets"]
    for group_resource in rebuilt:
        group, resource = split_group_resource(group_resource)
        assert allows(rules, "create", group, resource), group_resource
        assert allows(rules, "get", group, resource), group_resource
    # Lists only where verify needs them; no Secret can be read without its name, nor watched.
    assert allows(rules, "list", "", "pods") and allows(rules, "list", "apps", "replicasets")
    for verb in ("list", "watch"):
        assert not allows(rules, verb, "", "secrets"), verb
    # It copies the application's RBAC as is, which the API server allows only with these.
    assert allows(rules, "escalate", "rbac.authorization.k8s.io", "clusterroles")
    assert allows(rules, "bind", "rbac.authorization.k8s.io", "clusterroles")
    for verb in ("delete", "deletecollection", "update", "patch"):
        assert not allows(rules, verb, "", "pods"), verb
    # Its one delete: the informer-lag barrier it made itself, by that name only.
    assert allows(rules, "delete", "", "pods", "kpromote-barrier")
    assert allows(rules, "delete", "apps", "replicasets", "kpromote-barrier")
    assert not allows(rules, "delete", "apps", "replicasets", "web-5c5fb89585")


def test_only_the_rollback_worker_may_delete() -> None:
    for name, deployment in by_component().items():
        may_delete = any(
            "delete" in rule["verbs"] and not rule.get("resourceNames") for rule in rules_of(deployment)
        )
        assert may_delete == (name == "rollback-worker"), name
    rules = rules_of(by_component()["rollback-worker"])
    assert allows(rules, "delete", "", "pods") and allows(rules, "patch", "", "configmaps")
    assert allows(rules, "patch", "", "persistentvolumes"), "PVs go to Retain before they are deleted"
    assert not allows(rules, "create", "", "pods"), "a rollback adds nothing to the control plane"


# ---- environment


def _all_env_names() -> set[str]:
    return {name for d in deployments().values() for c in containers(d) for name in env_names(c)}


def test_every_kpromote_variable_is_a_settings_field() -> None:
    """A typo (KPROMOTE_VISIBILITY_TIMOUT) would be ignored by pydantic-settings: fail here instead."""
    fields = set(Settings.model_fields)
    names = {n for n in _all_env_names() if n.startswith("KPROMOTE_")}
    assert names, "no KPROMOTE_ variable found"
    for name in names:
        assert name.removeprefix("KPROMOTE_").lower() in fields, name


def test_the_configuration_parses_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for component_name in KPROMOTE_COMPONENTS:
        env = environment(main_container(by_component()[component_name]))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        assert str(settings.backup_dir) == "/var/lib/kosmos-promote/backups"
        assert settings.kubeconfig == "/etc/kosmos-promote/kubeconfig"
        assert settings.broker_url == "redis://:REPLACE-ME-redis-password-placeholder@redis:6379/0"
        assert settings.namespace == NAMESPACE


def test_the_claims_namespace_is_the_installation_namespace() -> None:
    """The claims (Leases) live in KPROMOTE_NAMESPACE, and the Roles granting them are bound in the namespace
    kustomize puts every object in: the two must be the same, and the Namespace must be created."""
    configured = config_map("kosmos-promote-config")["KPROMOTE_NAMESPACE"]
    assert configured == kustomization(DEPLOY / KUSTOMIZATION)["namespace"] == NAMESPACE
    assert configured in by_kind("Namespace")
    for name in KPROMOTE_COMPONENTS:
        assert environment(main_container(by_component()[name]))["KPROMOTE_NAMESPACE"] == configured, name


def test_kpromote_processes_get_the_same_configuration() -> None:
    for name in [*KPROMOTE_COMPONENTS, "flower"]:
        container = main_container(by_component()[name])
        assert container["envFrom"] == [{"configMapRef": {"name": "kosmos-promote-config"}}], name
        assert environment(container)["KPROMOTE_BROKER_URL"].endswith("@redis:6379/0"), name


def test_variable_references_are_defined_before_they_are_used() -> None:
    """Kubernetes leaves `$(NAME)` as literal text when NAME is not defined earlier in `env`."""
    for deployment in deployments().values():
        for container in containers(deployment):
            defined = {n for s in container.get("envFrom", []) for n in config_map(s["configMapRef"]["name"])}
            for entry in env_list(container):
                for reference in EXPANSION.findall(entry.get("value", "")):
                    assert reference in defined, f"{entry['name']} uses $({reference}) before it is defined"
                defined.add(entry["name"])
            for argument in [*container.get("command", []), *container.get("args", [])]:
                for reference in EXPANSION.findall(argument):
                    assert reference in defined, f"{container['name']}: $({reference}) is not defined"


def test_probes_do_not_rely_on_variable_expansion() -> None:
    """Exec probes get the container environment but no `$(NAME)` expansion."""
    for deployment in deployments().values():
        for container in containers(deployment):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                for text in iter_strings(container.get(probe, {})):
                    assert "$(" not in text, (container["name"], probe)


def test_the_broker_url_is_built_from_the_redis_secret() -> None:
    for name in [*KPROMOTE_COMPONENTS, "flower"]:
        env = {e["name"]: e for e in env_list(main_container(by_component()[name]))}
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "kosmos-promote-redis",
            "key": "password",
        }
        assert env["KPROMOTE_BROKER_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@redis:6379/0"
    assert "redis" in by_kind("Service") and by_kind("Service")["redis"]["spec"]["ports"][0]["port"] == 6379


def test_secrets_are_placeholders_never_real_values() -> None:
    for name, data in ((n, s["stringData"]) for n, s in by_kind("Secret").items()):
        assert "data" not in by_kind("Secret")[name], "no base64 data: placeholders must be readable"
        for value in data.values():
            assert "REPLACE-ME" in value, f"secret {name} must hold a marked placeholder"
    password = by_kind("Secret")["kosmos-promote-redis"]["stringData"]["password"]
    assert all(c.isalnum() or c in "-_" for c in password), "pasted unescaped into a URL"


# ---- Redis and Flower


def test_redis_is_password_protected_durable_and_never_evicts() -> None:
    deployment = by_component()["redis"]
    container = main_container(deployment)
    assert container["image"] == "redis:7-alpine"
    args = container["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--requirepass"] == "$(REDIS_PASSWORD)"
    assert options["--appendonly"] == "yes" and options["--maxmemory-policy"] == "noeviction"
    assert deployment["spec"]["strategy"]["type"] == "Recreate" and deployment["spec"]["replicas"] == 1


def test_flower_requires_basic_auth_and_never_opens_its_api() -> None:
    from services.flower import CREDENTIAL_VARIABLES

    deployment = by_component()["flower"]
    container = main_container(deployment)
    # `kpromote flower` (the image's entrypoint), which checks the settings and credentials before it
    # serves, never `celery flower`, which checks neither.
    assert "command" not in container, "the image's entrypoint, kpromote, must run Flower"
    args = container["args"]
    assert args[0] == "flower", args
    assert "--address=0.0.0.0" in args, "the pod's interface: kpromote flower defaults to the loopback"
    assert "--port=5555" in args and container["ports"] == [{"name": "http", "containerPort": 5555}]
    assert by_kind("Service")["kosmos-promote-flower"]["spec"]["ports"][0]["port"] == 5555
    # Credentials required, from the Secret, through a variable kpromote flower reads (not the command line).
    assert "--no-auth" not in args and not any(a.startswith("--basic-auth") for a in args)
    auth = {e["name"]: e for e in env_list(container)}["FLOWER_BASIC_AUTH"]
    assert "FLOWER_BASIC_AUTH" in CREDENTIAL_VARIABLES
    assert auth["valueFrom"]["secretKeyRef"] == {"name": "kosmos-promote-flower", "key": "basic-auth"}
    assert "FLOWER_UNAUTHENTICATED_API" not in _all_env_names()
    assert not any("unauthenticated" in a.lower() for a in args)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthcheck"
    assert pod_spec(deployment)["enableServiceLinks"] is False, "a FLOWER_PORT service link crashes Flower"


def test_flower_variables_are_flower_options() -> None:
    """Flower silently ignores a FLOWER_ variable that names no option: a misspelt FLOWER_BASIC_AUTH
    would leave it without auth."""
    from flower.options import default_options

    for name in _all_env_names():
        if name.startswith("FLOWER_"):
            assert name.removeprefix("FLOWER_").lower() in default_options, name


# ---- pod security, probes, resources


@pytest.mark.parametrize("name", sorted(by_component()))
def test_pod_meets_the_restricted_pod_security_standard(name: str) -> None:
    spec = pod_spec(by_component()[name])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    assert not any("hostPath" in v for v in spec.get("volumes", []))
    for container in containers(by_component()[name]):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        assert not context.get("privileged")
    labels = by_kind("Namespace")[NAMESPACE]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("name", sorted(by_component()))
def test_container_has_probes_and_bounded_resources(name: str) -> None:
    container = main_container(by_component()[name])
    assert "readinessProbe" in container and "livenessProbe" in container
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    assert pod_spec(by_component()[name])["enableServiceLinks"] is False


def test_workers_check_their_own_consumer_at_startup_and_the_broker_afterwards() -> None:
    for name in WORKERS:
        container = main_container(by_component()[name])
        startup = container["startupProbe"]["exec"]["command"]
        assert startup[:2] == ["python", "-c"] and "inspect(" in startup[2] and "gethostname()" in startup[2]
        liveness = container["livenessProbe"]["exec"]["command"]
        assert liveness[:2] == ["python", "-c"] and "create_connection" in liveness[2]
        assert "celery" not in liveness[2], "liveness must stay cheap: no Celery import"
        budget = container["livenessProbe"]["periodSeconds"] * container["livenessProbe"]["failureThreshold"]
        assert budget >= 300, "a Redis restart must not restart every worker"


def test_only_pods_that_call_the_kubernetes_api_carry_a_token() -> None:
    for name, deployment in by_component().items():
        spec = pod_spec(deployment)
        if name in KPROMOTE_COMPONENTS:
            assert spec.get("automountServiceAccountToken", True) is True, name
        else:
            assert spec["automountServiceAccountToken"] is False, name
            assert "serviceAccountName" not in spec, name


# ---- the in-cluster kubeconfig


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _in_cluster_kubeconfig(tmp_path: Path) -> Path:
    """The committed in-cluster kubeconfig, with the pod's token and CA files faked under tmp_path."""
    (tmp_path / "token").write_text("the-pod-token")  # Kubernetes writes it without a newline
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    kubeconfig = tmp_path / "kubeconfig"
    text = config_map("kosmos-promote-kubeconfig")["kubeconfig"]
    assert f"{SERVICE_ACCOUNT_DIR}/token" in text and f"{SERVICE_ACCOUNT_DIR}/ca.crt" in text
    kubeconfig.write_text(text.replace(SERVICE_ACCOUNT_DIR, str(tmp_path)))
    return kubeconfig


def test_the_in_cluster_kubeconfig_is_mounted_where_the_settings_point() -> None:
    settings = config_map("kosmos-promote-config")
    for name in KPROMOTE_COMPONENTS:
        deployment = by_component()[name]
        mounts = {m["name"]: m for m in main_container(deployment)["volumeMounts"]}
        (volume,) = (
            v
            for v in pod_spec(deployment)["volumes"]
            if v.get("configMap", {}).get("name") == "kosmos-promote-kubeconfig"
        )
        assert f"{mounts[volume['name']]['mountPath']}/kubeconfig" == settings["KPROMOTE_KUBECONFIG"]


def test_workers_reach_the_api_server_with_the_pod_service_account(tmp_path: Path) -> None:
    """The Kube client every worker task uses sends the pod's token to the in-cluster API server."""
    kube = Kube.from_kubeconfig(_in_cluster_kubeconfig(tmp_path))
    try:
        assert kube.url == "https://kubernetes.default.svc"
        assert kube._headers(None)["authorization"] == "Bearer the-pod-token"
        assert kube._api.configuration.ssl_ca_cert == str(tmp_path / "ca.crt")
    finally:
        kube.close()


def test_the_watcher_logs_in_with_the_pod_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.watcher import handlers

    class Configured:
        settings = Settings(kubeconfig=str(_in_cluster_kubeconfig(tmp_path)))

    monkeypatch.setattr(handlers, "runtime", lambda: Configured)
    info = handlers.login()
    assert info.server == "https://kubernetes.default.svc"
    assert (info.scheme, info.token) == ("Bearer", "the-pod-token")


# ---- KEDA


def test_each_queue_has_a_scaled_object_on_its_own_list() -> None:
    scaled = by_kind("ScaledObject")
    prefix = config_map("kosmos-promote-config").get("KPROMOTE_KEY_PREFIX", "")
    assert len(scaled) == len(QUEUES)
    for name, queue in WORKERS.items():
        spec = scaled[f"kosmos-promote-{name}"]["spec"]
        assert spec["scaleTargetRef"]["name"] == by_component()[name]["metadata"]["name"]
        assert spec["minReplicaCount"] >= 1, "LLEN misses running tasks: never scale a queue to zero"
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == prefix + queue
        assert trigger["metadata"]["address"] == f"redis.{NAMESPACE}.svc:6379"
        assert trigger["authenticationRef"]["name"] in by_kind("TriggerAuthentication")
    (auth,) = by_kind("TriggerAuthentication").values()
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "kosmos-promote-redis", "key": "password"}
    ]
