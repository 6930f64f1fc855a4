"""`kpromote watcher`: run the kopf operator over the control plane named by the kubeconfig."""

from __future__ import annotations

import os

from shared import logs, metrics
from shared.models.policy import GROUP, PLURAL, VERSION
from shared.settings import check_kubeconfig, control_plane_kubeconfig, settings, startup_settings


def run(kubeconfig: str | None) -> None:
    """Watch until SIGTERM; `ConfigurationError` before anything starts when the configuration is bad
    (settings out of range, a kubeconfig that is missing or not one), instead of retrying for ever."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
        os.environ["KPROMOTE_KUBECONFIG"] = kubeconfig
        settings.cache_clear()
    current = startup_settings()
    path = control_plane_kubeconfig(current)
    check_kubeconfig(path)
    # kopf's login falls back on KUBECONFIG when KPROMOTE_KUBECONFIG is unset: the file just checked,
    # which the precheck and the status writer use too.
    os.environ["KUBECONFIG"] = str(path)
    logs.configure("watcher")
    import kopf

    import services.watcher.handlers  # noqa: F401  - registers the handlers
    from services.watcher import aftercare

    aftercare.register()

    kopf.on.event(GROUP, VERSION, PLURAL)(metrics.observe_policy)
    if current.watcher_metrics_port:
        from services.celery_app import QUEUES

        metrics.watch_queues(current.broker_url, QUEUES, current.key_prefix)
    metrics.serve(current.watcher_metrics_port)
    kopf.run(clusterwide=True, standalone=True)
