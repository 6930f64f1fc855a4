"""The controllers of kube-controller-manager that promote depends on, one module each."""

from __future__ import annotations

from kubesim.controllers.base import Controller, ControllerManager
from kubesim.controllers.crds import CustomResourceDefinitionController
from kubesim.controllers.cronjobs import CronJobController
from kubesim.controllers.daemonsets import DaemonSetController
from kubesim.controllers.deployments import DeploymentController
from kubesim.controllers.garbage_collector import GarbageCollector
from kubesim.controllers.jobs import JobController
from kubesim.controllers.namespaces import (
    NamespaceController,
    NamespaceProvisioner,
    RootCAPublisher,
    ServiceAccountController,
)
from kubesim.controllers.persistent_volumes import PersistentVolumeController
from kubesim.controllers.rbac_aggregation import ClusterRoleAggregationController
from kubesim.controllers.replicasets import ReplicaSetController
from kubesim.controllers.resource_quotas import ResourceQuotaController
from kubesim.controllers.statefulsets import StatefulSetController
from kubesim.store import Store
from kubesim.versions import GIT_VERSION

CONTROLLER_TYPES: list[type[Controller]] = [
    CustomResourceDefinitionController,
    GarbageCollector,
    NamespaceController,
    ServiceAccountController,
    NamespaceProvisioner,
    RootCAPublisher,
    ResourceQuotaController,
    PersistentVolumeController,
    ReplicaSetController,
    DeploymentController,
    StatefulSetController,
    DaemonSetController,
    JobController,
    CronJobController,
    ClusterRoleAggregationController,
]


def default_controllers(store: Store, git_version: str = GIT_VERSION) -> list[Controller]:
    controllers = [controller_type(store) for controller_type in CONTROLLER_TYPES]
    for controller in controllers:
        controller.git_version = git_version
    return controllers


__all__ = ["CONTROLLER_TYPES", "Controller", "ControllerManager", "default_controllers"]
