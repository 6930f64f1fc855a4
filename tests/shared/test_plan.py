"""The namespace plan: one pure function decides, per object, every step's action; the plan round-trips
through the bytes the backup records, and orders owners from their rules alone."""

from __future__ import annotations

import pytest

from shared.errors import PlanMismatch
from shared.items import Obj
from shared.kinds import Context, DetachKind, Move
from shared.markers import POD_MARKER
from shared.plan import NamespacePlan, RollbackAction, plan_namespace
from tests.shared import kinds_builders as b

CTX = Context(cluster="member1", policy="p1", run="run-1")


def scenario() -> list[tuple[str, Obj]]:
    web = b.deployment()
    web_rs = b.replicaset(owners=[b.owner("Deployment", "web", web["metadata"]["uid"])])
    web_pod = b.pod(owners=[b.owner("ReplicaSet", "web-5c5fb89585", web_rs["metadata"]["uid"])])
    sts = b.statefulset(collision_count=1)
    sts_pod = b.pod("db-0", owners=[b.owner("StatefulSet", "db", sts["metadata"]["uid"])])
    return [
        ("deployments.apps", web),
        ("replicasets.apps", web_rs),
        ("pods", web_pod),
        ("statefulsets.apps", sts),
        ("pods", sts_pod),
        ("cronjobs.batch", b.cronjob()),
        ("configmaps", b.configmap()),
        ("serviceaccounts", b.service_account("default")),
        ("persistentvolumes", b.pv()),
    ]


def test_every_object_gets_its_move_detach_tier_and_rollback() -> None:
    items = scenario()
    plan = plan_namespace(items, CTX)
    by_name = {(gr, obj["metadata"]["name"]): plan.of(obj) for gr, obj in items}

    web = by_name["deployments.apps", "web"]
    assert (web.move, web.detach and web.detach.kind, web.tier, web.rollback) == (
        Move.PROMOTE,
        DetachKind.ORPHAN_DELETE,
        "controllers",
        RollbackAction.RECREATE,
    )
    pod = by_name["pods", "web-5c5fb89585-abcde"]
    assert pod.detach is not None and pod.detach.kind is DetachKind.MARK
    assert pod.detach.patch == {"metadata": {"labels": {POD_MARKER: "true"}}}
    assert (pod.tier, pod.rollback) == ("pods", RollbackAction.RESTORE)

    db_pod = by_name["pods", "db-0"]
    assert (db_pod.move, db_pod.reason, db_pod.detach, db_pod.tier) == (
        Move.STAY,
        "its StatefulSet db stays in the member",
        None,
        "",
    )
    assert db_pod.rollback is RollbackAction.NONE
    default_sa = by_name["serviceaccounts", "default"]
    assert default_sa.move is Move.SKIP and default_sa.reason
    pv = by_name["persistentvolumes", "pv-0"]
    assert (pv.move, pv.detach and pv.detach.kind, pv.rollback) == (
        Move.PROMOTE,
        DetachKind.NONE,
        RollbackAction.NONE,
    )
    assert {ref.name for ref, _ in plan.not_moved()} == {"db", "db-0", "default"}


def test_owners_are_ordered_by_their_rules_top_down_for_detach_and_bottom_up_for_rollback() -> None:
    plan = plan_namespace(scenario(), CTX)
    top_down = plan.owners_top_down()
    assert top_down.index("deployments.apps") < top_down.index("replicasets.apps")
    assert "statefulsets.apps" not in top_down  # it stays: detach leaves it, rollback has nothing to make
    bottom_up = plan.owners_bottom_up()
    assert bottom_up.index("replicasets.apps") < bottom_up.index("deployments.apps")
    assert sorted(top_down) == sorted(bottom_up) == ["cronjobs.batch", "deployments.apps", "replicasets.apps"]


def test_the_recorded_bytes_give_back_the_same_plan() -> None:
    plan = plan_namespace(scenario(), CTX)
    data = plan.dumps()
    assert NamespacePlan.loads(data) == plan
    assert plan_namespace(scenario(), CTX).dumps() == data  # the same objects, the same bytes


def test_the_plan_does_not_depend_on_the_run_or_policy() -> None:
    other = Context(cluster="member1", policy="another", run="run-2")
    assert plan_namespace(scenario(), other).dumps() == plan_namespace(scenario(), CTX).dumps()


def test_an_object_the_plan_does_not_know_is_refused() -> None:
    plan = plan_namespace(scenario(), CTX)
    with pytest.raises(PlanMismatch, match="no entry for ConfigMap stranger"):
        plan.of(b.configmap("stranger"))


def test_a_plan_of_another_format_is_refused() -> None:
    with pytest.raises(PlanMismatch, match="format"):
        NamespacePlan.loads(b'{"format": 99, "objects": []}')
