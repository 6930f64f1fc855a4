"""`kpromote watcher`: run the kopf operator over the control plane named by the kubeconfig."""

from __future__ import annotations

import os

import kopf

from shared import logs, metrics
from shared.models.policy import GROUP, PLURAL, VERSION
from shared.settings import settings


def run(kubeconfig: str | None) -> None:
    logs.configure("watcher")
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
        os.environ["KPROMOTE_KUBECONFIG"] = kubeconfig
        settings.cache_clear()
    import services.watcher.handlers  # noqa: F401  - registers the handlers

    kopf.on.event(GROUP, VERSION, PLURAL)(metrics.observe_policy)
    metrics.serve(settings().watcher_metrics_port)
    kopf.run(clusterwide=True, standalone=True)
