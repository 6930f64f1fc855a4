"""`kpromote flower`: Flower on the project's own Celery app.

Loading the app rather than passing a bare broker URL gives Flower the same broker, key prefix and
transport options as the workers, so it sees their events and reads queue lengths under the same keys.
A task shows under its shadow name, step then policy/namespace (`backup.run promote-shop/shop-1`,
`rebuild.batch promote-shop/shop-1 pods[0:250]`; services/pipeline.py), with its references as keyword
arguments (policy, namespace, run_id, cluster, attempt, …); `TASKS_COLUMNS` puts both on the tasks page,
so a namespace's whole run can be followed by searching `kwargs:namespace=NAME`.

Flower shows every task's arguments and can revoke tasks and shut workers down, so it never starts open
by accident: credentials are required unless `--no-auth` says otherwise, and it listens on the loopback
interface unless `--address` names another one (a container passes 0.0.0.0).
"""

from __future__ import annotations

import logging
import os

from shared import logs
from shared.settings import PLACEHOLDER_PREFIX, ConfigurationError, startup_settings

log = logging.getLogger(__name__)

TASKS_COLUMNS = ("name", "state", "kwargs", "received", "runtime", "worker")
"""The tasks page's columns: Flower's default has no arguments (so no run id); UUID and Started would push
the worker off a 1600-pixel page. A task's name links to its own page, which has those and every field."""

CREDENTIAL_VARIABLES = ("KPROMOTE_FLOWER_BASIC_AUTH", "FLOWER_BASIC_AUTH")
"""Where credentials may come from besides --basic-auth, off the command line; the first one set wins.
FLOWER_BASIC_AUTH is Flower's own name (deploy/ sets it from the kosmos-promote-flower Secret)."""


def credentials(basic_auth: list[str]) -> list[str]:
    """`user:password` pairs from --basic-auth, else the first variable set; each one checked."""
    given = [part for option in basic_auth for part in option.split(",")]
    source = "--basic-auth"
    if not given:
        for variable in CREDENTIAL_VARIABLES:
            if os.environ.get(variable):
                given, source = os.environ[variable].split(","), variable
                break
    for credential in given:
        user, _, password = credential.strip().partition(":")
        if not user or not password:
            raise ConfigurationError(f"{source}: expected user:password (several separated by commas)")
        if password.startswith(PLACEHOLDER_PREFIX):
            raise ConfigurationError(
                f"{source}: the password of {user!r} is the placeholder shipped in deploy/secrets.yaml: "
                f"set a real one (e.g. openssl rand -hex 16) in the kosmos-promote-flower Secret or your .env"
            )
    return [credential.strip() for credential in given]


def run(port: int, address: str, basic_auth: list[str], no_auth: bool) -> None:
    """Serve Flower until SIGTERM; `ConfigurationError` (before anything is served) when it must not."""
    startup_settings()
    users = credentials(basic_auth)
    oauth = bool(os.environ.get("FLOWER_AUTH"))
    if no_auth and (users or oauth):
        raise ConfigurationError("--no-auth and credentials contradict each other: drop one of them")
    if not no_auth and not users and not oauth:
        raise ConfigurationError(
            "Flower needs credentials: pass --basic-auth user:password or set KPROMOTE_FLOWER_BASIC_AUTH "
            "(or FLOWER_BASIC_AUTH); --no-auth serves it open to anyone who reaches the port"
        )
    logs.configure("flower")
    from services.celery_app import app

    where = f"http://{address}:{port}"
    if no_auth:
        log.warning(
            "Flower serves %s WITHOUT authentication (--no-auth): anyone who reaches it can "
            "see task arguments and control workers",
            where,
        )
    else:
        how = f"basic auth, {len(users)} user(s)" if users else "OAuth (FLOWER_AUTH)"
        log.info("Flower serves %s with authentication on (%s)", where, how)
    app.start(flower_argv(port, address, users))


def flower_argv(port: int, address: str, users: list[str]) -> list[str]:
    """Flower's command line: where it listens, the tasks page's columns, the credentials if any."""
    argv = ["flower", f"--address={address}", f"--port={port}", f"--tasks_columns={','.join(TASKS_COLUMNS)}"]
    if users:
        argv.append(f"--basic-auth={','.join(users)}")
    return argv
