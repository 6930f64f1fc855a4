"""The `kpromote` console commands, run as real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client, config

from kubesim.testing import SimAdmin, wait_until

KPROMOTE = [sys.executable, "-m", "services"]
S3_URL = "s3://demo-backups/kpromote"


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*KPROMOTE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sim_writes_its_kubeconfig_when_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "sim.kubeconfig"
    process = _spawn(
        "sim",
        *("--kubeconfig-out", str(kubeconfig), "--name", "edge"),
        *("--latency-ms", "1", "--informer-lag-ms", "250"),
    )
    try:
        wait_until(kubeconfig.exists, timeout=30, what="the kubeconfig")
        assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
        api = config.new_client_from_config(str(kubeconfig))
        assert client.VersionApi(api).get_code().git_version.startswith("v1.")
        assert "default" in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
        assert SimAdmin(api.configuration.host).informer_lag()["seconds"] == 0.25
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "serving at http://127.0.0.1:" in output


def test_sim_pair_links_a_member_to_the_control_plane(tmp_path: Path) -> None:
    process = _spawn("sim-pair", "--dir", str(tmp_path), "--cluster", "east", "--informer-lag-ms", "500")
    try:
        wait_until(lambda: (tmp_path / "control-plane.kubeconfig").exists(), timeout=30, what="kubeconfigs")
        control_plane = config.new_client_from_config(str(tmp_path / "control-plane.kubeconfig"))
        member = config.new_client_from_config(str(tmp_path / "east.kubeconfig"))
        assert client.CoreV1Api(control_plane).read_node("kosmos-east").metadata.name == "kosmos-east"
        assert client.CoreV1Api(member).list_node().items == []
        for cluster in (control_plane, member):
            assert SimAdmin(cluster.configuration.host).informer_lag()["seconds"] == 0.5
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output


def test_demo_promotes_the_seeded_namespace_and_reports_continuity(tmp_path: Path, redis_url: str) -> None:
    """`demo --wait`: the promote, the continuity report, then the export lines, which drive the running
    demo from another process (`kpromote get`, `kpromote logs`) until Ctrl-C ends it cleanly."""
    env = {**os.environ, "COLUMNS": "200", "KPROMOTE_BROKER_URL": redis_url}
    process = subprocess.Popen(
        [*KPROMOTE, "demo", "--wait", "--namespaces", "1", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    before: list[str] = []
    try:
        deadline = time.monotonic() + 240
        for line in process.stdout:
            before.append(line)
            if line.startswith("Clusters stay up until Ctrl-C.") or time.monotonic() > deadline:
                break
        exported = dict(
            re.fullmatch(r"export (\w+)=(\S+)", line.strip()).groups()  # type: ignore[union-attr]
            for line in before
            if line.startswith("export ")
        )
        assert set(exported) == {
            "KUBECONFIG",
            "KPROMOTE_KUBECONFIG",
            "KPROMOTE_BACKUP_DIR",
            "KPROMOTE_BROKER_URL",
            "KPROMOTE_KEY_PREFIX",
        }, "".join(before)
        assert exported["KUBECONFIG"] == str(tmp_path / "control-plane.kubeconfig")
        assert exported["KPROMOTE_BACKUP_DIR"] == str(tmp_path / "backups")
        assert exported["KPROMOTE_BROKER_URL"] == redis_url
        driven = {**{k: v for k, v in os.environ.items() if not k.startswith("KPROMOTE_")}, **exported}
        got = subprocess.run(
            [*KPROMOTE, "get", "-o", "json"], env=driven, capture_output=True, text=True, timeout=60
        )
        assert got.returncode == 0, got.stderr
        [policy] = json.loads(got.stdout)
        assert (policy["name"], policy["phase"], policy["namespacesDone"]) == ("promote-shop", "Completed", 1)
        logged = subprocess.run(
            [*KPROMOTE, "logs", "promote-shop"], env=driven, capture_output=True, text=True, timeout=60
        )
        assert logged.returncode == 0 and " shop-1 " in logged.stdout, logged.stderr
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    output = "".join(before) + rest
    assert process.returncode == 0, output
    assert "Promote completed; no pod restarted." in output
    seeded = re.search(r"Seeded 1 namespace\(s\), (\d+) pods", output)
    assert seeded and int(seeded[1]) > 0, output
    # One continuity row per seeded member pod, each the same pod (the same UID) after the promote.
    assert "RESTARTED" not in output and output.count("same pod") == int(seeded[1])
    assert (tmp_path / "control-plane.kubeconfig").exists() and (tmp_path / "member1.kubeconfig").exists()
    assert list((tmp_path / "backups" / "promote-shop" / "shop-1").glob("*/backup.tar.gz"))


def test_demo_keeps_its_backups_in_s3_it_serves_itself(tmp_path: Path, redis_url: str) -> None:
    """`demo --backup-url s3://…` with no endpoint named: the demo starts an S3 server of its own, the
    workers back up into it, and the promote keeps every pod."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPROMOTE_", "AWS_"))}
    demo = subprocess.run(
        [*KPROMOTE, "demo", "--namespaces", "1", "--workdir", str(tmp_path), "--backup-url", S3_URL],
        env={**env, "COLUMNS": "200", "KPROMOTE_BROKER_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    assert "Promote completed; no pod restarted." in output
    seeded = re.search(r"Seeded 1 namespace\(s\), (\d+) pods", output)
    assert seeded and output.count("same pod") == int(seeded[1]) > 0, output
    assert "werkzeug" not in output, "the demo's own S3 server does not log every request"
    # The archive went to the store: the local folder holds only the run's log (logs stay on the worker).
    assert not list((tmp_path / "backups").rglob("backup.tar.gz"))
    assert list((tmp_path / "backups").rglob("run.log"))
