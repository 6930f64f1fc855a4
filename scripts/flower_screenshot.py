"""A screenshot of Flower's tasks page during a promote, taken by a real headless browser.

Starts what `kpromote demo` starts (a simulated Kosmos control plane and member, Redis, the watcher and a
worker as separate processes), plus `kpromote flower` exactly as deployed (basic auth, the shipped tasks
columns), applies a PromotePolicy for a few seeded namespaces and, while it runs, has Chromium render
Flower's /tasks page (filled in by JavaScript) into a PNG:

    apt-get install -y chromium                  # Debian's package; not a Python dependency
    python scripts/flower_screenshot.py          # writes docs/flower-tasks.png

Flower keeps its authentication: the credential is a throwaway one made for this run, given to Chromium
in the page's URL (`http://shot:…@127.0.0.1:PORT/tasks`; Chromium then sends it with the page's own API
requests too). Prints what Flower's API listed at the moment of the screenshot. Not a test: Chromium is
not part of the Python install; tests/pipeline/test_observability.py checks the same names through
Flower's API.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client  # noqa: E402

from kubesim import SimulatorThread  # noqa: E402
from kubesim.seed import seed_cluster_scoped, seed_namespace  # noqa: E402
from kubesim.serve import pair_paths, start_pair  # noqa: E402
from kubesim.testing import api_client, wait_until  # noqa: E402
from services.demo import MEMBER, POLICY, TERMINAL, apply_policy  # noqa: E402
from services.install import install  # noqa: E402
from shared.embedded_redis import broker_url  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=3, help="namespaces to seed and promote")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "flower-tasks.png")
    parser.add_argument("--window-size", default="1600,900", help="Chromium's window, WIDTH,HEIGHT")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--after-run", action="store_true", help="shoot once the promote has finished")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    options = parser.parse_args()
    if not shutil.which(options.chromium):
        print(f"{options.chromium}: not found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="flower-shot-"))
    try:
        return shoot(options, workdir)
    finally:
        if options.keep:
            print(f"logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def shoot(options: argparse.Namespace, workdir: Path) -> int:
    credential = f"shot:{secrets.token_hex(12)}"
    auth = "Basic " + base64.b64encode(credential.encode()).decode()
    with SimulatorThread() as simulator, broker_url(os.environ.get("KPROMOTE_BROKER_URL")) as redis_url:
        control_plane, member, link = simulator.run(start_pair(MEMBER))
        simulator.clusters.extend([control_plane, member])
        paths = pair_paths(workdir, MEMBER)
        member.write_kubeconfig(paths.member)
        control_plane.write_kubeconfig(paths.control_plane)
        env = {
            **os.environ,
            "KPROMOTE_BROKER_URL": redis_url,
            "KPROMOTE_BACKUP_DIR": str(workdir / "backups"),
            "KPROMOTE_KUBECONFIG": str(paths.control_plane),
            "KPROMOTE_KEY_PREFIX": f"flower-shot-{uuid.uuid4().hex[:8]}:",
            # Small batches, so the rebuild of a namespace fans out into rows of its own.
            "KPROMOTE_REBUILD_BATCH_SIZE": "4",
            "KPROMOTE_METRICS_PORT": "0",
            "KPROMOTE_WATCHER_METRICS_PORT": "0",
            "KPROMOTE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
        flower_port = _free_port()
        flower = f"http://127.0.0.1:{flower_port}"
        processes = [
            _spawn(
                ["worker", "-Q", "backup,detach,rebuild,rollback", "-c", "4"], env, workdir / "worker.log"
            ),
            _spawn(["watcher"], env, workdir / "watcher.log"),
            _spawn(
                ["flower", "--port", str(flower_port), "--basic-auth", credential],
                env,
                workdir / "flower.log",
            ),
        ]
        try:
            wait_until(lambda: _get(f"{flower}/healthcheck") == "OK", timeout=60, what="Flower to answer")
            wait_until(
                lambda: "flower_worker_online{" in (_get(f"{flower}/metrics", auth) or ""),
                timeout=60,
                what="Flower to see the worker",
            )
            with api_client(member.url) as member_api, api_client(control_plane.url) as cp_api:
                install(cp_api, env.get("KPROMOTE_NAMESPACE", "kosmos-promote"))
                seed_cluster_scoped(member_api)
                namespaces = [f"shop-{i}" for i in range(1, options.namespaces + 1)]
                for namespace in namespaces:
                    seed_namespace(member_api, namespace)
                policies = client.CustomObjectsApi(cp_api)
                apply_policy(policies, namespaces)

                def phase() -> str:
                    obj = policies.get_cluster_custom_object(
                        "kosmos.io", "v1alpha1", "promotepolicies", POLICY
                    )
                    return str((obj.get("status") or {}).get("phase", "Pending"))

                def ready() -> dict[str, Any] | None:
                    tasks = _tasks(flower, auth)
                    if options.after_run:
                        return tasks if phase() in TERMINAL else None
                    # Mid-run: every namespace has rows and the rebuild has begun somewhere.
                    names = [str(t.get("name")) for t in tasks.values()]
                    started = all(any(f"/{ns}" in n for n in names) for ns in namespaces)
                    return tasks if started and any(n.startswith("rebuild.") for n in names) else None

                tasks = wait_until(ready, timeout=300, interval=0.2, what="Flower to list the run's tasks")
                _screenshot(options, f"http://{credential}@127.0.0.1:{flower_port}/tasks", workdir)
                at_shot = phase()
                wait_until(lambda: phase() in TERMINAL or None, timeout=300, what="the promote to finish")
                final = phase()
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            simulator.run(link.stop())
    states: dict[str, int] = {}
    for task in tasks.values():
        states[str(task.get("state"))] = states.get(str(task.get("state")), 0) + 1
    print(f"{options.output}: {options.output.stat().st_size // 1024} KB")
    print(f"policy {POLICY} was {at_shot} at the screenshot, then {final}")
    print(f"Flower listed {len(tasks)} tasks as Chromium started: {states}")
    for task in sorted(tasks.values(), key=lambda t: t.get("received") or 0)[:8]:
        print(f"  {task.get('state'):8} {task.get('name')}")
    return 0 if final == "Completed" else 1


def _screenshot(options: argparse.Namespace, url: str, workdir: Path) -> None:
    options.output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        options.chromium,
        "--headless",
        "--no-sandbox",  # root in a container has no user namespaces for Chromium's sandbox
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={workdir / 'chromium'}",
        f"--window-size={options.window_size}",
        "--virtual-time-budget=10000",  # the tasks table fills in by JavaScript after the page loads
        f"--screenshot={options.output.resolve()}",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not options.output.exists():
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")


def _tasks(flower: str, auth: str) -> dict[str, Any]:
    text = _get(f"{flower}/api/tasks?limit=100000", auth)
    return json.loads(text) if text else {}


def _get(url: str, auth: str | None = None) -> str | None:
    request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, ConnectionError):
        return None


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services", *args],
        env=env,
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


if __name__ == "__main__":
    sys.exit(main())
