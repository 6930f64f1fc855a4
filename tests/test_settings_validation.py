"""Findings 2 and 6 of issue 11: a bad configuration stops a process at start, in one line, with status 2.

Each process is run for real (`python -m services ...`) with the bad value in its environment: the line
names the variable, the value given and what is allowed, and no traceback is printed. Nothing here needs
Redis or a cluster: the processes must refuse before reaching either.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import (
    ConfigurationError,
    Settings,
    check_kubeconfig,
    invalid_settings_line,
    placeholder_problem,
)

REPO = Path(__file__).resolve().parents[1]
REDIS_PLACEHOLDER = "redis://:REPLACE-ME-redis-password-placeholder@redis:6379/0"
"""deploy/ as shipped: the Secret's placeholder pasted into the URL (deploy/secrets.yaml)."""


def kpromote(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m services ARGS` with only these KPROMOTE_* variables, in an empty folder."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KPROMOTE_", "FLOWER_", "KUBECONFIG"))}
    clean["HOME"] = str(tmp_path)  # no ~/.kube/config of the machine's user
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("KPROMOTE_REBUILD_BATCH_SIZE", "0", "a whole number of at least 1"),
        ("KPROMOTE_API_CONCURRENCY", "many", "a whole number of at least 1"),
        ("KPROMOTE_METRICS_PORT", "70000", "a whole number from 0 to 65535"),
        ("KPROMOTE_DETACH_TIMEOUT", "-5", "a number greater than 0"),
        ("KPROMOTE_MEMBER_KUBECONFIGS", '{"member1": ', "a JSON object"),
    ],
)
def test_worker_refuses_a_bad_setting_in_one_line(
    tmp_path: Path, variable: str, value: str, allowed: str
) -> None:
    result = kpromote(tmp_path, "worker", "--queues", "backup", **{variable: value})
    assert_refused(result, variable, repr(value), allowed)


def test_watcher_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = kpromote(tmp_path, "watcher", KPROMOTE_STALL_TIMEOUT="0")
    assert_refused(result, "KPROMOTE_STALL_TIMEOUT", "'0'", "a number greater than 0")


def test_a_cli_command_reading_settings_says_the_same(tmp_path: Path) -> None:
    result = kpromote(tmp_path, "backups", "list", KPROMOTE_PROTECTED_NAMESPACES="kube-system")
    assert_refused(result, "KPROMOTE_PROTECTED_NAMESPACES", "'kube-system'", "not valid JSON", "a JSON list")


def test_the_shipped_redis_placeholder_stops_the_worker(tmp_path: Path) -> None:
    result = kpromote(tmp_path, "worker", "--queues", "backup", KPROMOTE_BROKER_URL=REDIS_PLACEHOLDER)
    line = assert_refused(result, "KPROMOTE_BROKER_URL", "placeholder", "deploy/secrets.yaml")
    assert "REPLACE-ME-redis-password-placeholder" not in line, "a password, even this one, is not echoed"


def test_watcher_with_a_missing_kubeconfig_stops_at_once_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "kubeconfig"
    result = kpromote(tmp_path, "watcher", "--kubeconfig", str(missing))
    assert_refused(result, f"no kubeconfig at {missing}")


def test_watcher_with_an_unparsable_kubeconfig_stops_at_once_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [\n")
    result = kpromote(tmp_path, "watcher", KPROMOTE_KUBECONFIG=str(broken))
    assert_refused(result, f"the kubeconfig at {broken} is not valid YAML")


# ---- in process: every rule, without a process each


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KPROMOTE_REBUILD_BATCH_SIZE", "-1"),
        ("KPROMOTE_API_CONCURRENCY", "0"),
        ("KPROMOTE_API_QPS", "-0.5"),
        ("KPROMOTE_API_BURST", "0"),
        ("KPROMOTE_API_MAX_IN_FLIGHT", "-1"),
        ("KPROMOTE_ADOPTION_TIMEOUT", "0"),
        ("KPROMOTE_DETACH_TIMEOUT", "nan-ish"),
        ("KPROMOTE_STALL_TIMEOUT", "-300"),
        ("KPROMOTE_MAX_RESUMES", "-1"),
        ("KPROMOTE_VISIBILITY_TIMEOUT", "0"),
        ("KPROMOTE_METRICS_PORT", "-1"),
        ("KPROMOTE_WATCHER_METRICS_PORT", "65536"),
        ("KPROMOTE_ROLLBACK_RETRY_BUDGET", "0"),
        ("KPROMOTE_NAMESPACE", "Kosmos_Promote"),
        ("KPROMOTE_NAMESPACE", "x" * 64),
        ("KPROMOTE_BROKER_URL", "http://127.0.0.1:6379/0"),
        ("KPROMOTE_MEMBER_KUBECONFIGS", "[1, 2]"),
        ("KPROMOTE_PROTECTED_NAMESPACES", "{not json"),
    ],
)
def test_each_out_of_range_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = invalid_settings_line(raised.value)
    assert "\n" not in line and f"{variable}: " in line and "given" in line and "must be" in line, line


def test_good_values_and_the_defaults_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("KPROMOTE_")]:
        monkeypatch.delenv(name)
    assert Settings().rebuild_batch_size == 250
    for variable, value in {
        "KPROMOTE_REBUILD_BATCH_SIZE": "1",
        "KPROMOTE_API_QPS": "0",
        "KPROMOTE_METRICS_PORT": "0",
        "KPROMOTE_MAX_RESUMES": "0",
        "KPROMOTE_NAMESPACE": "kosmos-promote-2",
        "KPROMOTE_MEMBER_KUBECONFIGS": '{"member1": "/k/m1"}',
        "KPROMOTE_PROTECTED_NAMESPACES": '["kube-system"]',
        "KPROMOTE_BROKER_URL": "rediss://:s3cret@redis:6380/1",
    }.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert settings.member_kubeconfigs == {"member1": "/k/m1"} and settings.protected_namespaces == [
        "kube-system"
    ]
    assert placeholder_problem(settings) is None


def test_secret_values_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPROMOTE_BACKUP_SIGNING_KEY", "too-short-but-secret")
    monkeypatch.setenv("KPROMOTE_BROKER_URL", "http://:hunter2@redis:6379/0")
    with pytest.raises(ValidationError) as raised:
        Settings()
    text = str(raised.value) + " ".join(problem["msg"] for problem in raised.value.errors())
    assert "too-short-but-secret" not in text and "hunter2" not in text
    assert "KPROMOTE_BACKUP_SIGNING_KEY" in text and "at least 32 characters" in text


def test_a_placeholder_signing_key_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPROMOTE_BACKUP_SIGNING_KEY", "REPLACE-ME-backup-signing-key-placeholder")
    problem = placeholder_problem(Settings())
    assert problem and "KPROMOTE_BACKUP_SIGNING_KEY" in problem and "placeholder" in problem


def test_kubeconfig_without_a_usable_current_context_is_named(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
        "contexts: [{name: a, context: {cluster: c}}]\ncurrent-context: b\n"
    )
    with pytest.raises(ConfigurationError, match="current-context 'b' is not one of its contexts"):
        check_kubeconfig(path)


def test_worker_with_a_named_kubeconfig_that_is_missing_stops_at_once(tmp_path: Path) -> None:
    missing = tmp_path / "kubeconfig"
    result = kpromote(tmp_path, "worker", "--queues", "backup", KPROMOTE_KUBECONFIG=str(missing))
    assert_refused(result, f"no kubeconfig at {missing}")
