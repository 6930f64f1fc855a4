"""The Job and CronJob controllers over HTTP: the pods, labels, finalizers and status a real one writes.

There is no kubelet: a test reports a Job's pod Succeeded or Failed through its status, as the kubelet
would, and checks what kube-controller-manager then does.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from kubesim.testing import MERGE_PATCH, wait_until

TRACKING = "batch.kubernetes.io/job-tracking"


@pytest.fixture
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    name = f"batch-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_until(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        what=f"the default ServiceAccount of {name}",
    )
    return name


def _job(name: str, **spec: Any) -> dict[str, Any]:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "busybox:1.36"}]}}
    return {"metadata": {"name": name}, "spec": {"template": template, **spec}}


def _pods(core: client.CoreV1Api, namespace: str, job: str) -> list[client.V1Pod]:
    return [
        pod
        for pod in core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
        if pod.metadata.deletion_timestamp is None
    ]


def _finish(core: client.CoreV1Api, namespace: str, pod: str, phase: str = "Succeeded") -> None:
    """What the kubelet reports when the container exits."""
    code = 0 if phase == "Succeeded" else 1
    state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
    status = {
        "phase": phase,
        "containerStatuses": [
            {
                "name": "app",
                "ready": False,
                "restartCount": 0,
                "image": "busybox:1.36",
                "imageID": "",
                "state": state,
            }
        ],
    }
    core.patch_namespaced_pod_status(pod, namespace, {"status": status}, _content_type=MERGE_PATCH)


def _reasons(core: client.CoreV1Api, namespace: str) -> list[str]:
    return [event.reason for event in core.list_namespaced_event(namespace).items]


def test_a_job_runs_a_pod_with_the_real_labels_owner_and_tracking_finalizer(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    job = batch.create_namespaced_job(namespace, _job("migrate"))
    (pod,) = wait_until(lambda: _pods(core, namespace, "migrate"), what="the Job's pod")

    uid = job.spec.selector.match_labels["batch.kubernetes.io/controller-uid"]
    assert pod.metadata.generate_name == "migrate-"
    assert pod.metadata.labels == {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": "migrate",
        "controller-uid": uid,
        "job-name": "migrate",
    }
    assert pod.metadata.finalizers == [TRACKING]
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller, owner.block_owner_deletion) == (
        "Job",
        "migrate",
        job.metadata.uid,
        True,
        True,
    )
    status = wait_until(
        lambda: (
            batch.read_namespaced_job_status("migrate", namespace).status.active
            and (batch.read_namespaced_job_status("migrate", namespace).status)
        )
    )
    assert (status.active, status.ready, status.succeeded, status.start_time is not None) == (
        1,
        0,
        None,
        True,
    )
    assert "SuccessfulCreate" in _reasons(core, namespace)


def test_a_job_completes_when_its_pod_succeeds(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, _job("migrate"))
    (pod,) = wait_until(lambda: _pods(core, namespace, "migrate"), what="the Job's pod")
    _finish(core, namespace, pod.metadata.name)

    def complete() -> client.V1JobStatus | None:
        status = batch.read_namespaced_job_status("migrate", namespace).status
        return (
            status
            if any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])
            else None
        )

    status = wait_until(complete, what="the Complete condition")
    assert (status.succeeded, status.active, status.failed) == (1, None, None)
    assert status.completion_time is not None
    assert status.uncounted_terminated_pods == client.V1UncountedTerminatedPods()
    assert core.read_namespaced_pod(pod.metadata.name, namespace).metadata.finalizers is None
    assert "Completed" in _reasons(core, namespace)


def test_a_job_runs_parallel_pods_until_its_completions(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, _job("fan", completions=3, parallelism=2))
    first = wait_until(lambda: len(_pods(core, namespace, "fan")) == 2 and _pods(core, namespace, "fan"))
    _finish(core, namespace, first[0].metadata.name)
    running = wait_until(
        lambda: (
            [p for p in _pods(core, namespace, "fan") if p.status.phase != "Succeeded"]
            if len(_pods(core, namespace, "fan")) == 3
            else None
        ),
        what="a replacement pod",
    )
    for pod in running:
        _finish(core, namespace, pod.metadata.name)
    wait_until(
        lambda: batch.read_namespaced_job_status("fan", namespace).status.succeeded == 3, what="3 done"
    )
    assert len(_pods(core, namespace, "fan")) == 3, "no pod beyond the completions"


def test_a_job_fails_after_its_backoff_limit(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, _job("flaky", backoffLimit=1))
    for attempt in range(2):
        pod = wait_until(
            lambda: [p for p in _pods(core, namespace, "flaky") if p.status.phase != "Failed"],
            what=f"attempt {attempt}",
        )[0]
        _finish(core, namespace, pod.metadata.name, "Failed")

    def failed() -> Any:
        status = batch.read_namespaced_job_status("flaky", namespace).status
        return next((c for c in status.conditions or [] if c.type == "Failed"), None)

    condition = wait_until(failed, what="the Failed condition")
    assert (condition.status, condition.reason) == ("True", "BackoffLimitExceeded")
    assert batch.read_namespaced_job_status("flaky", namespace).status.failed == 2


def test_suspending_a_job_deletes_its_pod_and_resuming_creates_one(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, _job("paused"))
    wait_until(lambda: _pods(core, namespace, "paused"), what="the Job's pod")

    batch.patch_namespaced_job("paused", namespace, {"spec": {"suspend": True}})
    wait_until(lambda: not _pods(core, namespace, "paused"), what="the pod deleted")
    status = wait_until(
        lambda: (
            batch.read_namespaced_job_status("paused", namespace).status.conditions
            and (batch.read_namespaced_job_status("paused", namespace).status)
        )
    )
    (suspended,) = status.conditions
    assert (suspended.type, suspended.status, suspended.reason) == ("Suspended", "True", "JobSuspended")
    assert status.start_time is None and not status.active

    batch.patch_namespaced_job("paused", namespace, {"spec": {"suspend": False}})
    wait_until(lambda: _pods(core, namespace, "paused"), what="a pod after resuming")
    assert {"Suspended", "Resumed"} <= set(_reasons(core, namespace))


def test_a_cronjob_tracks_its_jobs_and_trims_history_even_when_suspended(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    cronjob = batch.create_namespaced_cron_job(
        namespace,
        {
            "metadata": {"name": "report"},
            "spec": {
                "schedule": "*/30 * * * *",
                "suspend": True,
                "successfulJobsHistoryLimit": 1,
                "jobTemplate": {"spec": _job("unused")["spec"]},
            },
        },
    )
    assert (cronjob.spec.suspend, cronjob.spec.failed_jobs_history_limit) == (True, 1)
    owner = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": "report",
        "uid": cronjob.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for name in ("report-1", "report-2"):
        body = _job(name)
        body["metadata"]["ownerReferences"] = [owner]
        batch.create_namespaced_job(namespace, body)
    wait_until(
        lambda: (
            {ref.name for ref in batch.read_namespaced_cron_job("report", namespace).status.active or []}
            == {"report-1", "report-2"}
        ),
        what="both Jobs active",
    )
    for name in ("report-1", "report-2"):
        (pod,) = wait_until(lambda name=name: _pods(core, namespace, name), what=f"{name}'s pod")
        _finish(core, namespace, pod.metadata.name)
        wait_until(lambda name=name: batch.read_namespaced_job_status(name, namespace).status.succeeded == 1)

    status = wait_until(
        lambda: (
            (s := batch.read_namespaced_cron_job("report", namespace).status).last_successful_time
            and not s.active
            and s
        ),
        what="the CronJob to see both complete",
    )
    assert status.last_schedule_time is None, "nothing was scheduled"
    wait_until(lambda: [j.metadata.name for j in batch.list_namespaced_job(namespace).items] == ["report-2"])
    assert {"SawCompletedJob", "SuccessfulDelete"} <= set(_reasons(core, namespace))
