"""`kpromote watcher`: run the kopf operator over the control plane named by the kubeconfig."""

from __future__ import annotations

import os

import kopf


def run(kubeconfig: str | None) -> None:
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
        os.environ["KPROMOTE_KUBECONFIG"] = kubeconfig
    import services.watcher.handlers  # noqa: F401  - registers the handlers

    kopf.run(clusterwide=True, standalone=True)
