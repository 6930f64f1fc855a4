"""`kpromote flower`: Flower on the project's own Celery app.

Loading the app rather than passing a bare broker URL gives Flower the same broker, key prefix and
transport options as the workers, so it sees their events and reads queue lengths under the same keys.
Tasks show as `kosmos_promote.<queue>.<step>` with the references policy, namespace, run id as their
first arguments: a namespace's whole run can be followed by filtering on its name.
"""

from __future__ import annotations

import logging
import os

from shared import logs

log = logging.getLogger(__name__)


def run(port: int, basic_auth: list[str]) -> None:
    """Serve Flower until SIGTERM. Credentials may also come from FLOWER_BASIC_AUTH, which keeps them
    off the command line; without any, Flower 2 leaves its UI open and its API disabled."""
    logs.configure("flower")
    from shared.celery_app import app

    if not basic_auth and not os.environ.get("FLOWER_BASIC_AUTH") and not os.environ.get("FLOWER_AUTH"):
        log.warning("Flower runs without authentication: its UI is open to anyone who reaches the port")
    app.start(["flower", f"--port={port}", *(f"--basic-auth={credential}" for credential in basic_auth)])
