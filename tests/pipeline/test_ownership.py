"""One owner per namespace, a frozen run, safe deletion, shared objects kept, requests validated.

What a careless or hostile operator does to a running migration, against the real watcher and workers:
two policies racing for one namespace, a spec edited after the run, a policy deleted mid-detach, two
policies sharing a CRD, rollback requests that cannot be honoured, and stale messages of an earlier run
arriving after a newer run of the same namespace completed. Every test compares member pod UIDs before
and after: no pod is ever deleted or re-created.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.seed import seed_namespace
from kubesim.testing import MERGE_PATCH, SimAdmin, crd_body, wait_until
from services.pipeline import compensate_namespace, rollback_namespace, start_namespace
from shared.claims import Claims, ClaimState, lease_name
from shared.kube import Kube
from shared.markers import PROMOTED_BY, PROMOTED_IN_RUN
from shared.progress import NamespaceRun
from tests.pipeline.conftest import Installation
from tests.pipeline.snapshots import deployment_as_in_git, diff, pod_uids, snapshot
from tests.pipeline.test_cli_e2e import explain, kpromote

INSTALL_NAMESPACE = "kosmos-promote"
WIDGETS = "widgets.example.com"
GADGETS = "gadgets.example.org"
CRDS = "customresourcedefinitions.apiextensions.k8s.io"


def _claim(installation: Installation, namespace: str) -> dict[str, Any] | None:
    leases = client.CoordinationV1Api(installation.cp_api)
    try:
        lease = leases.read_namespaced_lease(lease_name("member1", namespace), INSTALL_NAMESPACE)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return dict(lease.metadata.annotations or {})


def _events(installation: Installation, policy: str) -> list[client.CoreV1Event]:
    core = client.CoreV1Api(installation.cp_api)
    return [e for e in core.list_event_for_all_namespaces().items if e.involved_object.name == policy]


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def _still_used(installation: Installation, crd: str) -> bool:
    """Whether a live claim (of any test's namespace) records `crd` among the objects it uses."""
    leases = client.CoordinationV1Api(installation.cp_api).list_namespaced_lease(INSTALL_NAMESPACE).items
    return any(
        crd in (lease.metadata.annotations or {}).get("promote.kosmos.io/cluster-objects", "")
        and (lease.metadata.annotations or {}).get("promote.kosmos.io/state") != "rolling-back"
        for lease in leases
    )


def _spec(installation: Installation, name: str) -> dict[str, Any]:
    policy = installation.policies.get_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", name)
    return dict(policy["spec"])


def _policy_gone(installation: Installation, name: str) -> bool:
    try:
        installation.policies.get_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", name)
    except client.ApiException as error:
        return error.status == 404
    return False


def _annotated_by(api: client.ApiClient, namespace: str) -> set[tuple[str | None, str | None]]:
    """(policy, run) annotations of the control plane's Deployments, ReplicaSets and pods in `namespace`."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    objects = [
        *apps.list_namespaced_deployment(namespace).items,
        *apps.list_namespaced_replica_set(namespace).items,
        *core.list_namespaced_pod(namespace).items,
    ]
    return {
        ((o.metadata.annotations or {}).get(PROMOTED_BY), (o.metadata.annotations or {}).get(PROMOTED_IN_RUN))
        for o in objects
    }


def test_two_policies_racing_for_one_namespace_exactly_one_promotes_it(installation: Installation) -> None:
    seeded = seed_namespace(installation.member_api, "race-1", full=False)
    before = snapshot(installation.member_api, "race-1")
    with ThreadPoolExecutor(2) as pool:
        list(
            pool.map(
                lambda name: installation.apply(name, includedNamespaces=["race-1"]), ("race-a", "race-b")
            )
        )
    statuses = {name: installation.wait_done(name) for name in ("race-a", "race-b")}

    phases = sorted(s["phase"] for s in statuses.values())
    assert phases == ["Completed", "FailedPrecheck"], statuses
    winner = next(name for name, s in statuses.items() if s["phase"] == "Completed")
    loser = next(name for name, s in statuses.items() if s["phase"] == "FailedPrecheck")
    assert any(f'claimed by PromotePolicy "{winner}"' in e for e in statuses[loser]["precheckErrors"]), (
        statuses
    )
    assert _condition(statuses[loser], "Prechecked")["status"] == "False"
    assert any(e.reason == "PrecheckFailed" for e in _events(installation, loser))
    assert _annotated_by(installation.cp_api, "race-1") == {(winner, statuses[winner]["runId"])}
    assert _claim(installation, "race-1")["promote.kosmos.io/policy"] == winner

    installation.request_rollback(winner)
    assert installation.wait_done(winner, phases=("RolledBack", "FailedRollback"))["phase"] == "RolledBack"
    assert diff(before, snapshot(installation.member_api, "race-1")) == []
    assert pod_uids(installation.member_api, "race-1") == seeded.pods
    assert _claim(installation, "race-1") is None, "released once rolled back"


def test_a_spec_edited_after_the_run_changes_nothing_it_does(installation: Installation) -> None:
    seeded = seed_namespace(installation.member_api, "edit-1", full=False)
    before = snapshot(installation.member_api, "edit-1")
    installation.apply("edit", includedNamespaces=["edit-1"])
    done = installation.wait_done("edit")
    assert done["phase"] == "Completed" and done["clusterName"] == "member1"
    generation = done["observedGeneration"]

    # A server older than 1.25 runs no CEL rules: the edit goes through, and the watcher's own check
    # must catch it.
    control_plane = SimAdmin(installation.control_plane.url)
    control_plane.enforce_crd_schemas(validation_rules=False)
    try:
        _edit_spec(
            installation, "edit", clusterName="another-member", includedNamespaces=["edit-1", "edit-2"]
        )
    finally:
        control_plane.enforce_crd_schemas()

    def reported() -> dict[str, Any] | None:
        return _condition(installation.status("edit"), "SpecChanged")

    changed = wait_until(reported, what="the spec change to be reported")
    assert changed["status"] == "True" and "clusterName" in changed["message"], changed
    assert "includedNamespaces" in changed["message"] and "not applied" in changed["message"]
    assert any(
        e.reason == "SpecChangedAfterRun" and e.type == "Warning" for e in _events(installation, "edit")
    )
    status = installation.status("edit")
    assert (status["observedGeneration"], status["clusterName"]) == (generation, "member1")

    installation.request_rollback("edit")
    rolled = installation.wait_done("edit", phases=("RolledBack", "FailedRollback"))
    assert rolled["phase"] == "RolledBack", rolled
    assert [ns["name"] for ns in rolled["namespaces"]] == ["edit-1"], "the added namespace is not acted on"
    assert diff(before, snapshot(installation.member_api, "edit-1")) == []
    assert pod_uids(installation.member_api, "edit-1") == seeded.pods
    assert installation.link.member_deletions == []


def test_the_control_plane_refuses_an_edit_of_a_run_spec_and_takes_the_rollback_request(
    installation: Installation,
) -> None:
    """The CRD's transition rules (Kubernetes >= 1.25): the spec keeps telling what the run acts on."""
    seeded = seed_namespace(installation.member_api, "frozen-1", full=False)
    installation.apply("frozen", includedNamespaces=["frozen-1"])
    assert installation.wait_done("frozen")["phase"] == "Completed"

    refusals = {
        "clusterName is immutable": {"clusterName": "another-member"},
        "the namespace lists are immutable": {"includedNamespaces": ["frozen-1", "frozen-2"]},
        "the resource filters are immutable": {"excludedNamespaceScopedResources": ["secrets"]},
    }
    for message, change in refusals.items():
        with pytest.raises(ApiException) as refused:
            _edit_spec(installation, "frozen", **change)
        assert refused.value.status == 422, change
        assert message in refused.value.body, refused.value.body
    status = installation.status("frozen")
    assert _condition(status, "SpecChanged") is None, "nothing changed, nothing to report"

    installation.request_rollback("frozen")
    rolled = installation.wait_done("frozen", phases=("RolledBack", "FailedRollback"))
    assert rolled["phase"] == "RolledBack", rolled
    assert pod_uids(installation.member_api, "frozen-1") == seeded.pods


def _edit_spec(installation: Installation, policy: str, **spec: Any) -> None:
    installation.policies.patch_cluster_custom_object(
        "kosmos.io", "v1alpha1", "promotepolicies", policy, {"spec": spec}, _content_type=MERGE_PATCH
    )


def test_a_policy_deleted_mid_detach_rolls_its_namespace_back_and_then_goes(
    installation: Installation,
) -> None:
    seeded = seed_namespace(installation.member_api, "del-1", full=False)
    before = snapshot(installation.member_api, "del-1")
    member = SimAdmin(installation.member.url)
    held = member.add_fault(
        verb="delete",
        resource="replicasets.apps",
        namespace="del-1",
        status="timeout",
        timeout_seconds=6,
        times=1,
    )
    installation.apply("del", includedNamespaces=["del-1"])
    member.wait_fired(held["id"], "detach to be deleting owners", timeout=10)
    installation.policies.delete_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", "del")
    wait_until(lambda: _policy_gone(installation, "del"), timeout=90, what="the deleted policy to go")
    member.clear_faults()

    assert diff(before, snapshot(installation.member_api, "del-1")) == [], "wholly rolled back"
    assert pod_uids(installation.member_api, "del-1") == seeded.pods
    assert _claim(installation, "del-1") is None
    core = client.CoreV1Api(installation.cp_api)
    wait_until(
        lambda: "del-1" not in {n.metadata.name for n in core.list_namespace().items},
        what="the control-plane namespace to be gone",
    )
    assert installation.link.member_deletions == []


def test_a_completed_namespace_stays_promoted_when_its_policy_is_deleted(installation: Installation) -> None:
    seeded = seed_namespace(installation.member_api, "keep-1", full=False)
    installation.apply("keep", includedNamespaces=["keep-1"])
    assert installation.wait_done("keep")["phase"] == "Completed"
    installation.policies.delete_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", "keep")
    wait_until(lambda: _policy_gone(installation, "keep"), what="the deleted policy to go")
    assert _claim(installation, "keep-1") is None, "released with its policy"
    apps = client.AppsV1Api(installation.cp_api)
    assert [d.metadata.name for d in apps.list_namespaced_deployment("keep-1").items] == ["web"]
    assert pod_uids(installation.member_api, "keep-1") == seeded.pods


def test_rolling_back_one_of_two_policies_sharing_a_crd_keeps_the_others_custom_resources(
    installation: Installation,
) -> None:
    seeded = {ns: seed_namespace(installation.member_api, ns) for ns in ("share-1", "share-2")}
    installation.apply("share-a", includedNamespaces=["share-1"])
    installation.apply("share-b", includedNamespaces=["share-2"])
    for name in ("share-a", "share-b"):
        assert installation.wait_done(name)["phase"] == "Completed"
    custom = client.CustomObjectsApi(installation.cp_api)
    extensions = client.ApiextensionsV1Api(installation.cp_api)
    widgets_of_b = custom.list_namespaced_custom_object("example.com", "v1", "share-2", "widgets")["items"]
    assert widgets_of_b

    installation.request_rollback("share-a")
    rolled = installation.wait_done("share-a", phases=("RolledBack", "FailedRollback"))
    assert rolled["phase"] == "RolledBack", rolled
    assert f"{WIDGETS}" in rolled["namespaces"][0]["message"], "what was kept is reported"
    extensions.read_custom_resource_definition(WIDGETS)  # still there
    assert (
        custom.list_namespaced_custom_object("example.com", "v1", "share-2", "widgets")["items"]
        == widgets_of_b
    )
    assert installation.status("share-b")["phase"] == "Completed"

    installation.request_rollback("share-b")
    assert installation.wait_done("share-b", phases=("RolledBack", "FailedRollback"))["phase"] == "RolledBack"
    names = {crd.metadata.name for crd in extensions.list_custom_resource_definition().items}
    # Other tests of the session may have promoted namespaces using it too: then it stays for them.
    assert (WIDGETS in names) == _still_used(installation, WIDGETS), "the last namespace using it takes it"
    for namespace, seed in seeded.items():
        assert pod_uids(installation.member_api, namespace) == seed.pods


def test_a_namespace_using_a_crd_that_a_rollback_may_delete_waits_for_that_rollback_to_end(
    installation: Installation,
) -> None:
    seeded = {ns: seed_namespace(installation.member_api, ns) for ns in ("deleting-1", "deleting-2")}
    installation.apply("deleting-a", includedNamespaces=["deleting-1"])
    assert installation.wait_done("deleting-a")["phase"] == "Completed"
    with Kube.from_kubeconfig(installation.control_plane.kubeconfig()) as kube:
        # deleting-1's rollback has begun (its claim says so) and has not read the claims yet.
        rolling = Claims(kube, INSTALL_NAMESPACE).roll_back(
            "member1", "deleting-1", installation.status("deleting-a")["runId"], ClaimState.COMPLETED
        )
    assert rolling is not None and any(name == WIDGETS for _, name in rolling.cluster_objects), rolling

    installation.apply("deleting-b", includedNamespaces=["deleting-2"])

    def waiting() -> dict[str, Any] | None:
        entries = installation.status("deleting-b").get("namespaces") or [{}]
        return entries[0] if "wait for the rollback of deleting-1" in (entries[0].get("step") or "") else None

    entry = wait_until(waiting, timeout=30, what="deleting-2 to wait for the rollback of deleting-1")
    assert entry["phase"] == "BackingUp"
    time.sleep(1.0)
    assert client.AppsV1Api(installation.member_api).read_namespaced_deployment("web", "deleting-2")
    assert installation.status("deleting-b")["namespaces"][0]["phase"] == "BackingUp", "nothing detached"

    installation.request_rollback("deleting-a")
    assert (
        installation.wait_done("deleting-a", phases=("RolledBack", "FailedRollback"))["phase"] == "RolledBack"
    )
    assert installation.wait_done("deleting-b")["phase"] == "Completed"
    client.ApiextensionsV1Api(installation.cp_api).read_custom_resource_definition(WIDGETS)
    custom = client.CustomObjectsApi(installation.cp_api)
    assert custom.list_namespaced_custom_object("example.com", "v1", "deleting-2", "widgets")["items"]
    for namespace, seed in seeded.items():
        assert pod_uids(installation.member_api, namespace) == seed.pods


def _gadget_namespaces(api: client.ApiClient, *namespaces: str) -> None:
    """Namespaces holding one Gadget each, of a CRD no other test uses: whether it survives is theirs."""
    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        crd_body("example.org", "gadgets", "Gadget")
    )
    custom = client.CustomObjectsApi(api)
    wait_until(
        lambda: any(r.name == "gadgets" for r in custom.get_api_resources("example.org", "v1").resources)
    )
    for namespace in namespaces:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        gadget = {
            "apiVersion": "example.org/v1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {"n": 1},
        }
        custom.create_namespaced_custom_object("example.org", "v1", namespace, "gadgets", gadget)


def test_a_crd_a_rollback_deletes_while_another_namespace_starts_using_it_is_made_anew_for_that_namespace(
    installation: Installation,
) -> None:
    _gadget_namespaces(installation.member_api, "gone-1", "gone-2")
    installation.apply("gone-a", includedNamespaces=["gone-1"])
    assert installation.wait_done("gone-a")["phase"] == "Completed"
    control_plane = SimAdmin(installation.control_plane.url)
    # The rollback of gone-1 has read the claims (no one else uses the CRD) and is about to delete it.
    held = control_plane.add_fault(
        verb="delete", resource=CRDS, name=GADGETS, status="timeout", timeout_seconds=4, nth=1
    )["id"]

    installation.request_rollback("gone-a")
    control_plane.wait_fired(held, "the rollback of gone-1 to delete the Gadget CRD")
    installation.apply("gone-b", includedNamespaces=["gone-2"])

    assert installation.wait_done("gone-a", phases=("RolledBack", "FailedRollback"))["phase"] == "RolledBack"
    assert installation.wait_done("gone-b")["phase"] == "Completed"
    crd = client.ApiextensionsV1Api(installation.cp_api).read_custom_resource_definition(GADGETS)
    assert not crd.metadata.deletion_timestamp
    gadgets = client.CustomObjectsApi(installation.cp_api).list_namespaced_custom_object(
        "example.org", "v1", "gone-2", "gadgets"
    )["items"]
    assert [gadget["metadata"]["name"] for gadget in gadgets] == ["g"]


def test_an_owner_re_created_in_the_member_mid_run_fails_the_namespace_which_is_rolled_back(
    installation: Installation,
) -> None:
    """A GitOps tool syncing the member namespace puts back the Deployment detach deleted: its ReplicaSet
    takes the running pods back, and both clusters would manage them. Verify says so at once, and the
    namespace is compensated with every pod kept."""
    seeded = seed_namespace(installation.member_api, "gitops-1", full=False)
    apps = client.AppsV1Api(installation.member_api)
    as_in_git = deployment_as_in_git(installation.member_api, "gitops-1")
    control_plane = SimAdmin(installation.control_plane.url)
    held = control_plane.add_fault(
        verb="create",
        resource="deployments.apps",
        namespace="gitops-1",
        status="timeout",
        timeout_seconds=3,
        nth=1,
    )["id"]
    started = time.monotonic()
    installation.apply("gitops", includedNamespaces=["gitops-1"])
    control_plane.wait_fired(held, "the rebuild to create the Deployment, detach done")
    apps.create_namespaced_deployment("gitops-1", as_in_git)

    status = installation.wait_done("gitops", phases=("Failed", "PartiallyFailed", "FailedRollback"))
    [namespace] = status["namespaces"]
    assert namespace["phase"] == "RolledBack", namespace
    assert "is controlled again in the member, by ReplicaSet" in namespace["message"], namespace
    assert time.monotonic() - started < 20, "failed at once, not after the adoption timeout (20 s)"
    assert pod_uids(installation.member_api, "gitops-1") == seeded.pods
    assert not client.CoreV1Api(installation.cp_api).list_namespaced_pod("gitops-1").items
    assert installation.link.member_deletions == []


def test_an_owner_scaled_between_backup_and_detach_is_not_deleted_and_the_namespace_is_rolled_back(
    installation: Installation,
) -> None:
    """An autoscaler scales the Deployment after the backup: deleting it would leave its new pod
    unmanaged in the member, the control plane would get a stale copy, and a rollback would scale it
    back. Detach refuses, and the compensation keeps the member as its users made it."""
    seeded = seed_namespace(installation.member_api, "scaled-1", full=False)
    apps = client.AppsV1Api(installation.member_api)
    [deployment] = apps.list_namespaced_deployment("scaled-1").items
    member = SimAdmin(installation.member.url)
    held = member.add_fault(
        verb="get",
        resource="deployments.apps",
        namespace="scaled-1",
        status="timeout",
        timeout_seconds=2,
        nth=1,
    )["id"]
    installation.apply("scaled", includedNamespaces=["scaled-1"])
    member.wait_fired(held, "detach to read the Deployment before deleting it")
    apps.patch_namespaced_deployment_scale(deployment.metadata.name, "scaled-1", {"spec": {"replicas": 3}})

    status = installation.wait_done("scaled", phases=("Failed", "PartiallyFailed", "FailedRollback"))
    [namespace] = status["namespaces"]
    assert namespace["phase"] == "RolledBack", namespace["message"]
    name = deployment.metadata.name
    assert f"Deployment {name} changed in the member after the backup" in namespace["message"], namespace
    kept = apps.read_namespaced_deployment(name, "scaled-1")
    assert (kept.metadata.uid, kept.spec.replicas) == (deployment.metadata.uid, 3), "as its users made it"
    pods = pod_uids(installation.member_api, "scaled-1")
    assert seeded.pods.items() <= pods.items() and len(pods) == len(seeded.pods) + 1, pods
    assert not client.CoreV1Api(installation.cp_api).list_namespaced_pod("scaled-1").items
    assert installation.link.member_deletions == []


def test_a_deployment_rolling_out_is_not_promoted_and_nothing_changes(installation: Installation) -> None:
    """Promoted mid-rollout, the control plane's Deployment controller would carry the rollout on: its new
    pods cannot run on the virtual node, and the old ones would be deleted in both clusters."""
    seeded = seed_namespace(installation.member_api, "rolling-1", full=False)
    apps = client.AppsV1Api(installation.member_api)
    [deployment] = apps.list_namespaced_deployment("rolling-1").items
    name, container = deployment.metadata.name, deployment.spec.template.spec.containers[0].name
    image = {"spec": {"template": {"spec": {"containers": [{"name": container, "image": "nginx:next"}]}}}}
    apps.patch_namespaced_deployment(name, "rolling-1", image)

    def rolling() -> bool:
        status = apps.read_namespaced_deployment(name, "rolling-1").status
        return bool(status.updated_replicas) and (status.replicas or 0) > status.updated_replicas

    wait_until(rolling, what="the rollout to start (its new pod never becomes ready)")
    before = snapshot(installation.member_api, "rolling-1")

    installation.apply("rolling", includedNamespaces=["rolling-1"])
    status = installation.wait_done("rolling", phases=("Failed", "PartiallyFailed", "FailedRollback"))

    [namespace] = status["namespaces"]
    assert namespace["phase"] == "RolledBack", namespace["message"]
    assert f"deployments.apps {name}: rolling out: 1 of 2 replicas updated" in namespace["message"]
    assert namespace["counts"].get("detached", 0) == 0, "refused before detach"
    assert diff(before, snapshot(installation.member_api, "rolling-1")) == []
    assert seeded.pods.items() <= pod_uids(installation.member_api, "rolling-1").items()
    assert not client.CoreV1Api(installation.cp_api).list_namespaced_pod("rolling-1").items


def test_rollback_requests_that_cannot_be_honoured_are_refused_and_reset(installation: Installation) -> None:
    seed_namespace(installation.member_api, "ask-1", full=False)
    before = snapshot(installation.member_api, "ask-1")

    installation.apply("ask-early", includedNamespaces=["ask-1"], rollback="true")
    early = installation.wait_done("ask-early")
    assert early["phase"] == "FailedPrecheck" and "nothing to roll back" in early["precheckErrors"][0], early
    assert _claim(installation, "ask-1") is None and "runId" not in early

    installation.apply("ask-never", includedNamespaces=["no-such-namespace"])
    assert installation.wait_done("ask-never")["phase"] == "FailedPrecheck"
    installation.request_rollback("ask-never")
    refused = wait_until(
        lambda: _condition(installation.status("ask-never"), "RollbackRefused"), what="the refusal"
    )
    assert "never ran" in refused["message"]
    wait_until(lambda: "rollback" not in _spec(installation, "ask-never"), what="the request to be reset")

    installation.apply("ask", includedNamespaces=["ask-1"])
    assert installation.wait_done("ask")["phase"] == "Completed"
    installation.policies.patch_cluster_custom_object(
        "kosmos.io",
        "v1alpha1",
        "promotepolicies",
        "ask",
        {"spec": {"rollback": "yes"}},
        _content_type=MERGE_PATCH,
    )
    refused = wait_until(
        lambda: _condition(installation.status("ask"), "RollbackRefused"), what="the refusal"
    )
    assert '"yes" is not a request' in refused["message"]
    assert any(e.reason == "RollbackRefused" for e in _events(installation, "ask"))
    assert installation.status("ask")["phase"] == "Completed"
    wait_until(lambda: "rollback" not in _spec(installation, "ask"), what="the refused request to be reset")
    installation.request_rollback("ask")
    assert installation.wait_done("ask", phases=("RolledBack", "FailedRollback"))["phase"] == "RolledBack"
    assert diff(before, snapshot(installation.member_api, "ask-1")) == []


def test_stale_messages_of_an_earlier_run_never_undo_a_later_promote(installation: Installation) -> None:
    """What a Redis restart leaves behind: redelivered forward steps, compensations and rollbacks of a run
    that has since been rolled back, arriving after a new policy of the same name promoted the namespace
    again. Each finds that the claim is not its run's and does nothing."""
    seeded = seed_namespace(installation.member_api, "stale-1", full=False)
    installation.apply("stale", includedNamespaces=["stale-1"])
    first = installation.wait_done("stale")
    assert first["phase"] == "Completed"
    installation.request_rollback("stale")
    assert installation.wait_done("stale", phases=("RolledBack",))["phase"] == "RolledBack"
    installation.policies.delete_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", "stale")
    wait_until(lambda: _policy_gone(installation, "stale"), what="the policy to go")

    installation.apply("stale", includedNamespaces=["stale-1"])
    second = installation.wait_done("stale")
    assert second["phase"] == "Completed" and second["runId"] != first["runId"]
    promoted = snapshot(installation.cp_api, "stale-1")

    old = NamespaceRun("stale", "stale-1", first["runId"], "member1")
    superseded = NamespaceRun("stale", "stale-1", second["runId"], "member1", attempt=0)
    app = installation.celery()
    try:
        compensate_namespace(app, old)
        rollback_namespace(app, old)
        start_namespace(app, old)
        compensate_namespace(app, superseded)  # the new run's, but of an attempt that is not the claim's
    finally:
        app.close()

    def ignored() -> bool:
        logs = "".join(p.read_text() for p in installation.workdir.glob("worker-*.log"))
        dropped = [line for line in logs.splitlines() if "does nothing" in line and "stale-1" in line]
        return len(dropped) >= 4

    wait_until(ignored, timeout=30, what="the stale messages to be dropped")
    time.sleep(1.0)
    assert installation.status("stale")["phase"] == "Completed"
    assert diff(promoted, snapshot(installation.cp_api, "stale-1")) == [], "the control plane is untouched"
    assert _annotated_by(installation.cp_api, "stale-1") == {("stale", second["runId"])}
    assert pod_uids(installation.member_api, "stale-1") == seeded.pods
    assert _claim(installation, "stale-1")["promote.kosmos.io/run"] == second["runId"]


def test_a_namespace_whose_policy_is_gone_is_rolled_back_from_its_backup_alone(
    installation: Installation,
) -> None:
    """Deleting a completed policy leaves its namespace promoted; the sealed backup still says everything a
    rollback needs, and `kpromote rollback --backup` takes the namespace back without the policy."""
    seeded = seed_namespace(installation.member_api, "orphan-1", full=False)
    before = snapshot(installation.member_api, "orphan-1")
    installation.apply("orphan", includedNamespaces=["orphan-1"])
    [promoted] = installation.wait_done("orphan")["namespaces"]
    installation.policies.delete_cluster_custom_object("kosmos.io", "v1alpha1", "promotepolicies", "orphan")
    wait_until(lambda: _policy_gone(installation, "orphan"), what="the policy to go")

    rolled = kpromote(installation, "rollback", "--backup", promoted["backupLocation"])
    assert rolled.returncode == 0, explain(rolled)
    assert "Rolled back:" in rolled.stdout
    assert diff(before, snapshot(installation.member_api, "orphan-1")) == []
    assert pod_uids(installation.member_api, "orphan-1") == seeded.pods
    assert _claim(installation, "orphan-1") is None
    core = client.CoreV1Api(installation.cp_api)
    wait_until(
        lambda: "orphan-1" not in {n.metadata.name for n in core.list_namespace().items},
        what="the control-plane namespace to be gone",
    )

    again = kpromote(installation, "rollback", "--backup", promoted["backupLocation"])
    assert again.returncode == 0, explain(again)  # idempotent: nothing left to do
    assert diff(before, snapshot(installation.member_api, "orphan-1")) == []


def test_kpromote_plan_names_the_policy_that_holds_a_namespace_mid_run(
    installation: Installation, tmp_path: Any
) -> None:
    """The plan reads the claims the watcher will check, so a second policy is told before it is applied
    (here while the first one is still detaching, before the namespace exists in the control plane)."""
    seed_namespace(installation.member_api, "held-1", full=False)
    member = SimAdmin(installation.member.url)
    held = member.add_fault(
        verb="delete",
        resource="deployments.apps",
        namespace="held-1",
        status="timeout",
        timeout_seconds=6,
        times=1,
    )
    try:
        installation.apply("held-first", includedNamespaces=["held-1"])
        member.wait_fired(held["id"], "the first policy to be detaching", timeout=10)
        second = tmp_path / "second.yaml"
        second.write_text(
            "apiVersion: kosmos.io/v1alpha1\n"
            "kind: PromotePolicy\n"
            "metadata: {name: held-second}\n"
            "spec: {clusterName: member1, includedNamespaces: [held-1]}\n"
        )
        planned = kpromote(installation, "plan", "-f", str(second))
    finally:
        member.clear_faults()
    assert planned.returncode == 3, explain(planned)
    assert 'claimed by PromotePolicy "held-first"' in planned.stdout, explain(planned)
    assert installation.wait_done("held-first")["phase"] == "Completed"
