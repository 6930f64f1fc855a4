"""What a person would compare before and after a promote that was undone: the member, normalised."""

from __future__ import annotations

from typing import Any

from kubernetes import client


def snapshot(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """Everything a person would compare, normalised: re-created owners may only differ in identity."""
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    listings = {
        "pod": core.list_namespaced_pod(namespace),
        "service": core.list_namespaced_service(namespace),
        "configmap": core.list_namespaced_config_map(namespace),
        "secret": core.list_namespaced_secret(namespace),
        "serviceaccount": core.list_namespaced_service_account(namespace),
        "pvc": core.list_namespaced_persistent_volume_claim(namespace),
        "deployment": apps.list_namespaced_deployment(namespace),
        "replicaset": apps.list_namespaced_replica_set(namespace),
        "statefulset": apps.list_namespaced_stateful_set(namespace),
        "daemonset": apps.list_namespaced_daemon_set(namespace),
        "cronjob": batch.list_namespaced_cron_job(namespace),
        "job": batch.list_namespaced_job(namespace),
    }
    snapshot: dict[str, dict[str, Any]] = {}
    for kind, listing in listings.items():
        for item in api.sanitize_for_serialization(listing)["items"]:
            metadata = item["metadata"]
            owners = sorted((r["kind"], r["name"]) for r in metadata.get("ownerReferences") or [])
            entry = {
                "labels": metadata.get("labels") or {},
                "annotations": metadata.get("annotations") or {},
                "owners": owners,
                "spec": item.get("spec"),
            }
            if kind == "pod":
                entry["uid"] = metadata["uid"]
                entry["terminating"] = bool(metadata.get("deletionTimestamp"))
            snapshot[f"{kind}/{metadata['name']}"] = entry
    for volume in core.list_persistent_volume().items:
        if volume.spec.claim_ref and volume.spec.claim_ref.namespace == namespace:
            snapshot[f"pv/{volume.metadata.name}"] = {
                "reclaim": volume.spec.persistent_volume_reclaim_policy,
                "claim": volume.spec.claim_ref.name,
            }
    return snapshot


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Every difference between two snapshots, one line each: empty means the member is as it was."""
    problems = [f"{key} missing after rollback" for key in before if key not in after]
    problems += [f"{key} appeared" for key in after if key not in before]
    problems += [
        f"{key} differs: {before[key]} != {after[key]}"
        for key in before
        if key in after and before[key] != after[key]
    ]
    return problems


def pod_uids(api: client.ApiClient, namespace: str) -> dict[str, str]:
    """Pod name -> UID: equal before and after means no pod was deleted or re-created."""
    return {
        p.metadata.name: p.metadata.uid for p in client.CoreV1Api(api).list_namespaced_pod(namespace).items
    }


def deployment_as_in_git(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """The namespace's one Deployment as a GitOps tool would apply it again: name, labels and spec."""
    [deployment] = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment.metadata.name, "labels": deployment.metadata.labels},
        "spec": api.sanitize_for_serialization(deployment.spec),
    }
