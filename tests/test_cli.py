"""The `kpromote` console commands, run as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from kubernetes import client, config

from kubesim.testing import SimAdmin, wait_until

KPROMOTE = [sys.executable, "-m", "services"]


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
    env = {**os.environ, "COLUMNS": "200", "KPROMOTE_BROKER_URL": redis_url}
    result = subprocess.run(
        [*KPROMOTE, "demo", "--no-wait", "--namespaces", "1", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Promote completed; no pod restarted." in result.stdout
    seeded = re.search(r"Seeded 1 namespace\(s\), (\d+) pods", result.stdout)
    assert seeded and int(seeded[1]) > 0, result.stdout
    # One continuity row per seeded member pod, each the same pod (the same UID) after the promote.
    assert "RESTARTED" not in result.stdout and result.stdout.count("same pod") == int(seeded[1])
    assert (tmp_path / "control-plane.kubeconfig").exists() and (tmp_path / "member1.kubeconfig").exists()
    assert list((tmp_path / "backups" / "promote-shop" / "shop-1").glob("*/backup.tar.gz"))
