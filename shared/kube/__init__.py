"""Kubernetes API access for the whole product: nothing else in kosmos-promote talks to a cluster."""

from shared.kube.client import Kube, PatchType, Propagation, RetryPolicy, resource_path
from shared.kube.connect import KOSMOS_CLUSTERS, MemberUnavailable, connect_member, member_kubeconfig
from shared.kube.discovery import AmbiguousResource, ApiResource, Discovery, NotServed, UnknownResource
from shared.kube.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Invalid,
    KubeError,
    NotFound,
    Unreachable,
)
from shared.kube.limits import ClusterLimits

__all__ = [
    "KOSMOS_CLUSTERS",
    "AlreadyExists",
    "AmbiguousResource",
    "ApiResource",
    "ClusterLimits",
    "Conflict",
    "Discovery",
    "Forbidden",
    "Invalid",
    "Kube",
    "KubeError",
    "MemberUnavailable",
    "NotFound",
    "NotServed",
    "PatchType",
    "Propagation",
    "RetryPolicy",
    "UnknownResource",
    "Unreachable",
    "connect_member",
    "member_kubeconfig",
    "resource_path",
]
