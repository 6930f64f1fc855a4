"""Dockerfile and .dockerignore: one non-root image whose entrypoint is `kpromote`, built from a context
that holds everything `pip install .` reads and no credentials. (No Docker engine runs here: the image
is not built; what can be read from the files is checked.)"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import PurePosixPath

from tests.deploy.support import (
    DOCKERFILE,
    DOCKERIGNORE,
    IMAGE,
    REPO,
    by_component,
    compose_services,
    pod_spec,
)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            lines.append(pending.strip())
            pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def _args() -> dict[str, str]:
    return dict(arg.split("=", 1) for op, arg in _final_stage() if op == "ARG")


def test_the_image_is_python_3_11_slim_and_installs_the_project_with_pip() -> None:
    froms = [arg.split()[0] for op, arg in _instructions() if op == "FROM"]
    assert froms and all(image == "python:3.11-slim" for image in froms)
    assert any(op == "RUN" and "pip install ." in arg for op, arg in _instructions())


def test_it_runs_as_the_non_root_user_the_manifests_expect() -> None:
    args = _args()
    (user,) = (arg for op, arg in _final_stage() if op == "USER")
    uid, gid = (
        part.replace("${UID}", args["UID"]).replace("${GID}", args["GID"]) for part in user.split(":")
    )
    assert uid.isdigit() and int(uid) > 0, "numeric, so Kubernetes can check runAsNonRoot"
    for name, deployment in by_component().items():
        if pod_spec(deployment)["containers"][0]["image"].startswith(IMAGE):
            context = pod_spec(deployment)["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid)), name
    for name, service in compose_services().items():
        if service.get("image", "").startswith(IMAGE):
            assert service["user"] == f"{uid}:{gid}", name


def test_the_entrypoint_is_the_kpromote_console_script() -> None:
    (entrypoint,) = (arg for op, arg in _final_stage() if op == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["kpromote"], "exec form: kpromote is PID 1 and gets SIGTERM itself"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kpromote"] == "services.cli:main"


def test_every_container_of_the_image_runs_kpromote() -> None:
    """No Deployment or compose service overrides the entrypoint: each one, Flower included, starts through
    `kpromote`, which checks its settings (and Flower's credentials) before it serves anything."""
    for name, deployment in by_component().items():
        for container in pod_spec(deployment)["containers"]:
            if container["image"].startswith(IMAGE):
                assert "command" not in container, f"{name}: {container['command']} instead of kpromote"
    for name, service in compose_services().items():
        if service.get("image", "").startswith(IMAGE):
            assert "entrypoint" not in service, f"{name}: {service['entrypoint']} instead of kpromote"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes; a pattern matching a directory
    excludes what is below it."""
    verdict = False
    parts = PurePosixPath(path).parts
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(c, body) or fnmatch.fnmatchcase(c, body.replace("**/", ""))
            for c in candidates
        ):
            verdict = not negate
    return verdict


def _patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_build_context_keeps_what_pip_install_reads() -> None:
    patterns = _patterns()
    copied = [
        source
        for op, arg in _instructions()
        if op == "COPY" and "--from" not in arg
        for source in arg.split()[:-1]
    ]
    assert {"pyproject.toml", "README.md", "shared", "services", "kubesim"} <= set(copied)
    for source in copied:
        assert (REPO / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is copied but excluded by .dockerignore"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["readme"] in copied, "setuptools reads the readme while building"
    for package in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied, package
    for data in ("shared/crds/promotepolicies.kosmos.io.yaml", "shared/settings.py", "kubesim/__init__.py"):
        assert not _ignored(data, patterns), data


def test_the_build_context_leaves_out_credentials_and_local_state() -> None:
    patterns = _patterns()
    for path in (
        "kubeconfig",
        "control-plane.kubeconfig",
        ".env",
        ".git/config",
        ".venv/bin/python",
        "var/x",
    ):
        assert _ignored(path, patterns), path
