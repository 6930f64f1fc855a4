"""The Velero-style commands without a cluster: each run's own log (the handler the workers install, and
`kpromote logs` reading it), `get`'s table, `backups show POLICY/NAMESPACE`, what `backups prune` keeps
and why, `status --watch`, `--version`, and the retry line that said "GET GET"."""

from __future__ import annotations

import http.server
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console
from typer.testing import CliRunner

from services.cli import app
from services.console import backups, get, runlog, status
from services.console.common import human_duration, parse_age
from services.console.watch import count_cells, rollback_summary
from shared import logs
from shared.backup import BackupDir, backup_root
from shared.claims import Claim, ClaimState, RunSpec
from shared.kube import Kube, RetryPolicy
from tests.shared import kinds_builders as build

DAY = 86400.0


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for variable in ("KPROMOTE_KUBECONFIG", "KPROMOTE_BACKUP_DIR", "KPROMOTE_MEMBER_KUBECONFIGS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


@pytest.fixture
def run_log(tmp_path: Path) -> Iterator[tuple[Path, logging.Logger]]:
    """The handler a worker installs, on a logger of its own (not the root: pytest's handlers sit there)."""
    handler = logs.RunLog(tmp_path, "worker")
    logger = logging.getLogger("test.runlog")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    yield tmp_path, logger
    logger.removeHandler(handler)


def in_task(
    logger: logging.Logger, message: str, *args: Any, level: int = logging.INFO, **context: str
) -> None:
    """A record as TaskContext sees it inside a task: its references set on the running task's context."""
    token = logs._task.set({"step": "backup.backup_type", **context})
    try:
        logger.log(level, message, *args)
    finally:
        logs._task.reset(token)


# ------------------------------------------------------------------------------------------ run log
def test_a_runs_lines_go_beside_its_backup_as_private_json_lines(
    run_log: tuple[Path, logging.Logger],
) -> None:
    base, logger = run_log
    refs = {"policy": "p", "namespace": "shop", "run": "r1"}
    in_task(logger, "create %s", "configmaps shop/a on control-plane", level=logging.DEBUG, **refs)
    in_task(logger, "retry 1/8 of GET /api/v1 on member1 in 0.10s: 503", **refs)
    in_task(logger, "nothing to say about a run", policy="p")  # no namespace/run: not a run line
    logger.info("outside any task")
    path = base / "p" / "shop" / "r1" / logs.RUN_LOG_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("DEBUG", "create configmaps shop/a on control-plane"),
        ("INFO", "retry 1/8 of GET /api/v1 on member1 in 0.10s: 503"),
    ]
    assert {(line["policy"], line["namespace"], line["run"], line["step"]) for line in lines} == {
        ("p", "shop", "r1", "backup.backup_type")
    }
    assert [p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()] == ["p/shop/r1/run.log"]


def test_a_run_log_masks_secrets_and_never_leaves_the_backup_dir(
    run_log: tuple[Path, logging.Logger],
) -> None:
    base, logger = run_log
    secret = '{"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}}'
    in_task(logger, "could not create %s", secret, policy="p", namespace="shop", run="r1")
    text = (base / "p" / "shop" / "r1" / logs.RUN_LOG_NAME).read_text()
    assert "aHVudGVyMg==" not in text and logs.MASK in text
    for bad in ("..", "a/b", ""):
        in_task(logger, "escape", policy="p", namespace=bad, run="r1")
    assert sorted(p.name for p in base.rglob("*")) == ["p", "r1", "run.log", "shop"]


def test_run_log_lines_stay_whole_under_threads_and_below_pipe_buf(
    run_log: tuple[Path, logging.Logger],
) -> None:
    base, logger = run_log
    refs = {"policy": "p", "namespace": "shop", "run": "r1"}

    def write(index: int) -> None:
        in_task(logger, "line %d %s", index, "x" * (index % 7 * 300), **refs)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(400)))
    in_task(logger, "huge %s", "y" * 20000, **refs)
    lines = (base / "p" / "shop" / "r1" / logs.RUN_LOG_NAME).read_bytes().splitlines()
    assert len(lines) == 401
    assert all(len(line) + 1 < 4096 for line in lines)
    numbers = sorted(int(json.loads(line)["message"].split()[1]) for line in lines[:-1] if b"line" in line)
    assert numbers == list(range(400))
    assert json.loads(lines[-1])["message"].endswith("...[cut]")


def test_the_worker_installs_the_run_log_and_keeps_writes_off_stderr(tmp_path: Path) -> None:
    stream = StringIO()
    handler = logs.configure("worker", stream=stream, level="INFO", format="json")
    run_handler = logs.install_run_log(tmp_path, "worker")
    try:
        writes = logging.getLogger(logs.WRITES)
        token = logs._task.set({"policy": "p", "namespace": "shop", "run": "r1", "step": "rebuild.tier"})
        try:
            writes.debug("create pods shop/web-1 on control-plane")
        finally:
            logs._task.reset(token)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().removeHandler(run_handler)
        logging.getLogger(logs.WRITES).setLevel(logging.NOTSET)
    assert stream.getvalue() == "", "writes are DEBUG: on stderr only with KPROMOTE_LOG_LEVEL=DEBUG"
    [line] = (tmp_path / "p" / "shop" / "r1" / logs.RUN_LOG_NAME).read_text().splitlines()
    assert json.loads(line)["message"] == "create pods shop/web-1 on control-plane"


def write_log(base: Path, policy: str, namespace: str, run: str, *lines: tuple[str, str]) -> None:
    folder = backup_root(base, policy, namespace, run)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / logs.RUN_LOG_NAME).open("a") as file:
        for time, message in lines:
            fields = {"time": time, "level": "INFO", "logger": "x", "message": message}
            file.write(json.dumps({**fields, "namespace": namespace, "run": run, "step": "s"}) + "\n")


def test_logs_merges_a_runs_namespaces_in_time_order(runner: CliRunner, tmp_path: Path) -> None:
    write_log(
        tmp_path,
        "p",
        "a",
        "r1",
        ("2026-01-01T10:00:01.000+00:00", "a one"),
        ("2026-01-01T10:00:03.000+00:00", "a three"),
    )
    write_log(tmp_path, "p", "b", "r1", ("2026-01-01T10:00:02.000+00:00", "b two"))
    write_log(tmp_path, "p", "b", "r0", ("2025-01-01T10:00:00.000+00:00", "older run"))
    base = ["logs", "p", "--run", "r1", "--dir", str(tmp_path)]
    result = runner.invoke(app, base)
    assert result.exit_code == 0, result.output
    assert [line.split(": ", 1)[1] for line in result.stdout.splitlines()] == ["a one", "b two", "a three"]
    assert result.stdout.splitlines()[1].startswith("2026-01-01 10:00:02.000 INFO    b s: ")
    only_b = runner.invoke(app, [*base, "-n", "b", "-o", "json"])
    assert [json.loads(line)["message"] for line in only_b.stdout.splitlines()] == ["b two"]
    missing = runner.invoke(app, ["logs", "p", "--run", "r9", "--dir", str(tmp_path)])
    assert missing.exit_code == 2 and "no run log" in missing.stderr
    escape = runner.invoke(app, ["logs", "..", "--run", "r1", "--dir", str(tmp_path)])
    assert escape.exit_code == 2 and "is not a Kubernetes name" in escape.stderr
    files = runlog.log_files(tmp_path, "p", None, None)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "p/a/r1/run.log",
        "p/b/r0/run.log",
        "p/b/r1/run.log",
    ]
    lines = runlog.read_lines(files)
    assert lines[0].fields["message"] == "older run"
    assert runlog.text(lines[0], with_run=True).split()[3] == "b@r0"


# -------------------------------------------------------------------------------------------- get
def test_get_shows_phase_progress_age_and_duration() -> None:
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    running = {
        "metadata": {"name": "web", "creationTimestamp": "2027-01-15T07:00:00Z"},
        "spec": {"clusterName": "member1", "includedNamespaces": ["a", "b", "c"]},
        "status": {
            "phase": "Running",
            "namespacesDone": 1,
            "namespacesTotal": 3,
            "startTime": "2027-01-15T07:50:00Z",
        },
    }
    done = {
        "metadata": {"name": "api", "creationTimestamp": "2027-01-12T08:00:00Z"},
        "spec": {"clusterName": "member2", "includedNamespaces": ["x"], "rollback": "true"},
        "status": {
            "phase": "Completed",
            "namespacesDone": 1,
            "namespacesTotal": 1,
            "startTime": "2027-01-12T08:00:05Z",
            "completionTime": "2027-01-12T08:01:35Z",
        },
    }
    fresh = {"metadata": {"name": "new"}, "spec": {"clusterName": "m", "includedNamespaces": ["q"]}}
    rows = [get.row(policy, now) for policy in (running, done, fresh)]
    assert [(r["phase"], r["namespacesDone"], r["namespacesTotal"]) for r in rows] == [
        ("Running", 1, 3),
        ("Completed", 1, 1),
        ("Pending", 0, 1),
    ]
    assert [(r["ageSeconds"], r["durationSeconds"]) for r in rows] == [
        (3600, 600),
        (3 * 86400, 90),
        (None, None),
    ]
    buffer = StringIO()
    get.render(Console(file=buffer, width=200, color_system=None), rows)
    text = buffer.getvalue().splitlines()
    assert text[0].split() == ["NAME", "CLUSTER", "PHASE", "DONE", "AGE", "DURATION"]
    assert text[2].split() == ["web", "member1", "Running", "1/3", "1h", "10m"]
    assert text[3].split() == ["api", "member2", "Completed", "(rollback", "requested)", "1/1", "3d", "1m30s"]
    assert text[4].split() == ["new", "m", "Pending", "0/1", "-", "-"]


def test_durations_and_ages_read_as_kubectl_and_velero_write_them() -> None:
    assert [human_duration(s) for s in (5, 90, 600, 7200 + 300, 9 * 3600, 2 * DAY + 3600, 30 * DAY)] == [
        "5s",
        "1m30s",
        "10m",
        "2h5m",
        "9h",
        "2d1h",
        "30d",
    ]
    assert [parse_age(text) for text in ("30d", "12h", "90m", "1d12h", "2w")] == [
        30 * DAY,
        12 * 3600,
        5400,
        1.5 * DAY,
        14 * DAY,
    ]
    for bad in ("30", "d", "-1d", "30 days", ""):
        with pytest.raises(ValueError):
            parse_age(bad)


# ---------------------------------------------------------------------------------- backups by name
def sealed(base: Path, policy: str, namespace: str, run: str) -> Path:
    backup = BackupDir(backup_root(base, policy, namespace, run))
    backup.write_part("configmaps", [build.configmap("a")])
    backup.seal({"policy": policy, "namespace": namespace, "run": run, "cluster": "member1"})
    return backup.root


def test_backups_show_and_verify_address_a_backup_by_policy_and_namespace(
    runner: CliRunner, tmp_path: Path
) -> None:
    older = sealed(tmp_path, "p", "shop", "r1")
    newer = sealed(tmp_path, "p", "shop", "r2")
    os.utime(older / "backup.tar.gz", (1_000_000_000, 1_000_000_000))
    env = {"KPROMOTE_BACKUP_DIR": str(tmp_path)}
    shown = runner.invoke(app, ["backups", "show", "p/shop"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "configmaps\tapp/a" in shown.stdout.splitlines()
    assert "showing the newest, r2 (older: r1)" in shown.stderr
    assert backups.resolve("p/shop", tmp_path) == newer
    assert backups.resolve("p/shop/r1", tmp_path) == older
    verified = runner.invoke(app, ["backups", "verify", "p/shop/r1", "--dir", str(tmp_path)])
    assert verified.exit_code == 0 and "OK, 1 item(s)" in verified.stdout, verified.output
    for bad, message in (("p/nope", "no backup of namespace nope"), ("p/../x", "is not a Kubernetes name")):
        result = runner.invoke(app, ["backups", "show", bad], env=env)
        assert result.exit_code == 2 and message in result.stderr, result.output


# --------------------------------------------------------------------------------------------- prune
def claim(policy: str, namespace: str, run: str) -> Claim:
    spec = RunSpec(policy=policy, policy_uid="u", run_id=run, generation=1, cluster="member1")
    return Claim("member1", namespace, spec, attempt=1, state=ClaimState.COMPLETED)


def test_prune_removes_only_old_folders_no_live_policy_or_claim_needs() -> None:
    now = 100 * DAY
    policies = [
        {"metadata": {"name": "live"}, "status": {"phase": "Completed", "runId": "r2"}},
        {"metadata": {"name": "pending"}},
    ]
    live_runs, claimed = backups.in_use(policies, [claim("gone", "kept-ns", "r7")])
    folders = [
        backups.Folder(Path("/b/live/shop/r1"), now - 40 * DAY, 10),  # the live policy's earlier run
        backups.Folder(Path("/b/live/shop/r2"), now - 40 * DAY, 20),  # its current run: it may roll back
        backups.Folder(Path("/b/gone/kept-ns/r7"), now - 90 * DAY, 30),  # claimed (policy deleted)
        backups.Folder(Path("/b/gone/other/r7"), now - 90 * DAY, 40),
        backups.Folder(Path("/b/gone/young/r8"), now - 2 * DAY, 50),
    ]
    decisions = backups.decide(folders, now=now, older_than=30 * DAY, live_runs=live_runs, claimed=claimed)
    assert [(d.run, d.namespace, d.remove) for d in decisions] == [
        ("r1", "shop", True),
        ("r2", "shop", False),
        ("r7", "kept-ns", False),
        ("r7", "other", True),
        ("r8", "young", False),
    ]
    reasons = [d.reason for d in decisions]
    assert reasons[1] == "PromotePolicy live (Completed) may roll back from it"
    assert reasons[2] == "the claim of kept-ns on member1 (completed) records it"
    assert reasons[4] == "younger than 30d" and reasons[0].startswith("older than 30d")
    buffer = StringIO()
    backups.render_prune(Console(file=buffer, width=250, color_system=None), decisions, dry_run=True)
    assert "Would remove 2 run folder(s) (50 B); kept 3." in buffer.getvalue()
    assert buffer.getvalue().count("would remove") == 2


def test_a_folders_age_is_its_last_change_anywhere_inside(tmp_path: Path) -> None:
    root = sealed(tmp_path, "p", "shop", "r1")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (1_000_000, 1_000_000))
    assert backups.folder_facts(root).changed == 1_000_000
    (root / logs.RUN_LOG_NAME).write_text("{}\n")  # a rollback logged into it just now
    facts = backups.folder_facts(root)
    assert facts.changed > 1_000_000 and facts.size > 3
    assert [p.relative_to(tmp_path).as_posix() for p in backups.run_folders(tmp_path)] == ["p/shop/r1"]


def test_prune_refuses_a_bad_age_before_touching_anything(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["backups", "prune", "--older-than", "30 days", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "--older-than" in result.stderr, result.output


# -------------------------------------------------------------------------------- status --watch etc.
class Policies:
    def __init__(self, policies: Iterator[dict[str, Any]]) -> None:
        self.policies, self.discovery = policies, self

    def by_group_resource(self, group_resource: str) -> str:
        return group_resource

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        return next(self.policies)


def test_status_watch_ends_with_the_policy_or_ctrl_c_and_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.console import watch

    monkeypatch.setattr(watch.time, "sleep", lambda seconds: None)
    spec = {"clusterName": "member1", "includedNamespaces": ["shop"]}
    states = iter(
        {"metadata": {"name": "p"}, "spec": spec, "status": {"phase": phase}}
        for phase in ("Running", "Completed")
    )
    assert status.watch_policy(cast(Kube, Policies(states)), "p") == 0

    def interrupted() -> Iterator[dict[str, Any]]:
        yield {"metadata": {"name": "p"}, "spec": spec, "status": {"phase": "Running"}}
        raise KeyboardInterrupt

    assert status.watch_policy(cast(Kube, Policies(interrupted())), "p") == 0
    assert status.ended({"status": {"phase": "RolledBack"}})
    assert not status.ended({"spec": {"rollback": "true"}, "status": {"phase": "Completed"}})
    assert not status.ended({"status": {"phase": "RollingBack"}})


def test_watch_and_an_output_format_do_not_mix(runner: CliRunner) -> None:
    result = runner.invoke(app, ["status", "p", "--watch", "-o", "json"])
    assert result.exit_code == 2 and "--watch shows the table" in result.output


def test_version_is_the_installed_packages(runner: CliRunner) -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"kpromote {version('kosmos-promote')}\n"


# ----------------------------------------------------------------------------------- the retry line
class Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first request, then the API's discovery document."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        body = b'{"kind":"APIResourceList","groupVersion":"v1","resources":[]}'
        self.send_response(503 if type(self).calls == 1 else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_retry_line_names_the_method_once(caplog: pytest.LogCaptureFixture) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "flaky", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "flaky", "user": "u"}}],
        "current-context": "c",
    }
    try:
        with caplog.at_level(logging.INFO, logger="shared.kube.client"):
            retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
            with Kube.from_kubeconfig(kubeconfig, retry=retry) as kube:
                kube.raw_get("/api/v1")
    finally:
        server.shutdown()
    [line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("retry")]
    assert re.match(r"retry 1/2 of GET /api/v1 on flaky in ", line), line


def test_counts_read_against_their_totals_and_a_rollback_says_what_it_did() -> None:
    namespace = {
        "name": "shop-1",
        "counts": {"backedUp": 80, "detached": 12, "rebuilt": 76, "skipped": 4},
        "totals": {"backedUp": 80, "rebuilt": 80, "skipped": 4},
        "rollback": {"podsUnmarked": 3, "ownersRecreated": 2, "objectsDeleted": 70, "kept": 1},
    }
    assert count_cells(namespace) == ["80/80", "12", "76/80", "4/4"]
    assert rollback_summary(namespace) == "unmarked 3, re-created 2, deleted 70, kept 1"
    assert rollback_summary({"name": "shop-2"}) == ""
