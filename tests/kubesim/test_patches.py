"""PATCH bodies must transform objects exactly like kube-apiserver, without touching their inputs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubesim.patches import PatchError, apply_json_patch, apply_merge_patch, apply_strategic_merge_patch


def names(*values: str) -> list[dict[str, str]]:
    return [{"name": value} for value in values]


# ----------------------------------------------------------------------------- JSON merge patch
@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="replace-value"),
        pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="add-key"),
        pytest.param({"a": "b"}, {"a": None}, {}, id="null-deletes"),
        pytest.param({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}, id="null-deletes-only-that-key"),
        pytest.param({"a": ["b"]}, {"a": "c"}, {"a": "c"}, id="scalar-replaces-list"),
        pytest.param({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}, id="list-replaces-scalar"),
        pytest.param({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}, id="nested-merge"),
        pytest.param({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}, id="lists-replace-wholesale"),
        pytest.param(["a", "b"], ["c", "d"], ["c", "d"], id="array-replaces-array"),
        pytest.param({"a": "b"}, ["c"], ["c"], id="array-replaces-object"),
        pytest.param({"a": "foo"}, None, None, id="null-replaces-document"),
        pytest.param({"a": "foo"}, "bar", "bar", id="string-replaces-document"),
        pytest.param({"e": None}, {"a": 1}, {"e": None, "a": 1}, id="existing-null-kept"),
        pytest.param([1, 2], {"a": "b", "c": None}, {"a": "b"}, id="object-replaces-array"),
        pytest.param(
            {}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}, id="nulls-stripped-from-new-objects"
        ),
        pytest.param(
            {"metadata": {"labels": {"a": "1", "b": "2"}}},
            {"metadata": {"labels": {"b": None, "c": "3"}}},
            {"metadata": {"labels": {"a": "1", "c": "3"}}},
            id="kubernetes-labels",
        ),
    ],
)
def test_merge_patch(target: Any, patch: Any, expected: Any) -> None:
    assert apply_merge_patch(target, patch) == expected


def test_merge_patch_never_mutates_or_aliases_inputs() -> None:
    target = {"spec": {"template": {"labels": {"a": "1"}}, "keep": [1, 2]}}
    patch = {"spec": {"template": {"labels": {"b": "2"}}, "new": {"deep": [3]}}}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = apply_merge_patch(target, patch)
    result["spec"]["keep"].append(9)
    result["spec"]["new"]["deep"].append(9)
    result["spec"]["template"]["labels"]["c"] = "3"
    assert target == target_before
    assert patch == patch_before


# ----------------------------------------------------------------------------------- JSON patch
DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"replicas": 1, "args": ["a", "b"]},
}


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        pytest.param(
            [{"op": "add", "path": "/metadata/labels/tier", "value": "fe"}],
            {**DEPLOYMENT, "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}}},
            id="add-key",
        ),
        pytest.param(
            [{"op": "add", "path": "/spec/args/-", "value": "c"}],
            {**DEPLOYMENT, "spec": {"replicas": 1, "args": ["a", "b", "c"]}},
            id="append-to-list",
        ),
        pytest.param(
            [{"op": "add", "path": "/spec/args/0", "value": "z"}],
            {**DEPLOYMENT, "spec": {"replicas": 1, "args": ["z", "a", "b"]}},
            id="insert-into-list",
        ),
        pytest.param(
            [{"op": "remove", "path": "/metadata/labels/app"}],
            {**DEPLOYMENT, "metadata": {"name": "web", "labels": {}}},
            id="remove",
        ),
        pytest.param(
            [{"op": "replace", "path": "/spec/replicas", "value": 3}],
            {**DEPLOYMENT, "spec": {"replicas": 3, "args": ["a", "b"]}},
            id="replace",
        ),
        pytest.param(
            [{"op": "move", "from": "/spec/args", "path": "/spec/command"}],
            {**DEPLOYMENT, "spec": {"replicas": 1, "command": ["a", "b"]}},
            id="move",
        ),
        pytest.param(
            [{"op": "copy", "from": "/spec/replicas", "path": "/spec/minReplicas"}],
            {**DEPLOYMENT, "spec": {"replicas": 1, "args": ["a", "b"], "minReplicas": 1}},
            id="copy",
        ),
        pytest.param(
            [
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 2},
            ],
            {**DEPLOYMENT, "spec": {"replicas": 2, "args": ["a", "b"]}},
            id="test-guards-replace",
        ),
        pytest.param(
            [{"op": "add", "path": "/metadata/annotations~1x", "value": "1"}],
            {**DEPLOYMENT, "metadata": {**DEPLOYMENT["metadata"], "annotations/x": "1"}},
            id="escaped-slash-in-pointer",
        ),
        pytest.param([], DEPLOYMENT, id="empty-patch"),
    ],
)
def test_json_patch(operations: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert apply_json_patch(DEPLOYMENT, operations) == expected


@pytest.mark.parametrize(
    ("operations", "code"),
    [
        pytest.param([{"op": "test", "path": "/spec/replicas", "value": 5}], 422, id="failing-test"),
        pytest.param(
            [{"op": "test", "path": "/spec/replicas", "value": True}], 422, id="test-is-type-strict"
        ),
        pytest.param([{"op": "remove", "path": "/spec/missing"}], 422, id="remove-missing"),
        pytest.param([{"op": "replace", "path": "/spec/missing", "value": 1}], 422, id="replace-missing"),
        pytest.param([{"op": "add", "path": "/nope/deeper", "value": 1}], 422, id="add-under-missing-parent"),
        pytest.param([{"op": "add", "path": "/spec/args/9", "value": "x"}], 422, id="index-out-of-range"),
        pytest.param([{"op": "replace", "path": "spec", "value": 1}], 422, id="pointer-without-slash"),
        pytest.param([{"op": "frobnicate", "path": "/spec"}], 422, id="unknown-op"),
        pytest.param([{"op": "add", "path": "/spec/x"}], 422, id="add-without-value"),
        pytest.param([{"op": "replace", "path": "", "value": [1]}], 422, id="result-not-an-object"),
        pytest.param({"op": "add", "path": "/a", "value": 1}, 400, id="body-not-a-list"),
    ],
)
def test_json_patch_errors(operations: Any, code: int) -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_json_patch(DEPLOYMENT, operations)
    assert excinfo.value.code == code
    assert str(excinfo.value)


def test_json_patch_never_mutates_or_aliases_inputs() -> None:
    target = copy.deepcopy(DEPLOYMENT)
    operations = [
        {"op": "add", "path": "/spec/template", "value": {"labels": {"a": "1"}}},
        {"op": "remove", "path": "/spec/args/0"},
    ]
    target_before, operations_before = copy.deepcopy(target), copy.deepcopy(operations)
    result = apply_json_patch(target, operations)
    result["spec"]["template"]["labels"]["b"] = "2"
    assert target == target_before
    assert operations == operations_before


# ---------------------------------------------------------------------- strategic merge patch
@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        # Maps behave like JSON merge patch.
        pytest.param(
            {"a": 1, "m": {"x": 1}}, {"m": {"y": 2}}, {"a": 1, "m": {"x": 1, "y": 2}}, id="map-merge"
        ),
        pytest.param({"a": 1, "b": 2}, {"a": None}, {"b": 2}, id="null-deletes-key"),
        pytest.param({"a": 1}, {"missing": None}, {"a": 1}, id="null-for-missing-key-ignored"),
        pytest.param({"m": {"x": 1}}, {"m": "scalar"}, {"m": "scalar"}, id="type-change-replaces"),
        pytest.param({}, {"m": {"x": 1, "y": None}}, {"m": {"x": 1}}, id="nulls-stripped-from-new-map"),
        # Merge-keyed lists of maps.
        pytest.param(
            {"containers": [{"name": "app", "image": "v1"}, {"name": "log", "image": "v1"}]},
            {"containers": [{"name": "app", "image": "v2"}]},
            {"containers": [{"name": "app", "image": "v2"}, {"name": "log", "image": "v1"}]},
            id="containers-by-name",
        ),
        pytest.param(
            {"initContainers": names("init")},
            {"initContainers": [{"name": "init", "image": "busybox"}]},
            {"initContainers": [{"name": "init", "image": "busybox"}]},
            id="init-containers-by-name",
        ),
        pytest.param(
            {"ephemeralContainers": names("debug")},
            {"ephemeralContainers": [{"name": "debug", "tty": True}]},
            {"ephemeralContainers": [{"name": "debug", "tty": True}]},
            id="ephemeral-containers-by-name",
        ),
        pytest.param(
            {"volumes": [{"name": "data", "emptyDir": {}}]},
            {"volumes": [{"name": "cfg", "configMap": {"name": "c"}}]},
            {"volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "data", "emptyDir": {}}]},
            id="volumes-new-item-goes-first",
        ),
        pytest.param(
            {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"env": [{"name": "B", "value": "3"}]},
            {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]},
            id="env-by-name",
        ),
        pytest.param(
            {"env": [{"name": "A", "value": "1"}]},
            {
                "env": [
                    {"name": "A", "value": None, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                ]
            },
            {"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]},
            id="null-inside-merged-item",
        ),
        pytest.param(
            {"imagePullSecrets": names("a")},
            {"imagePullSecrets": names("a", "b")},
            {"imagePullSecrets": names("a", "b")},
            id="image-pull-secrets-by-name",
        ),
        pytest.param(
            {"resourceClaims": [{"name": "gpu", "source": {}}]},
            {"resourceClaims": [{"name": "gpu", "resourceClaimName": "c"}]},
            {"resourceClaims": [{"name": "gpu", "source": {}, "resourceClaimName": "c"}]},
            id="resource-claims-by-name",
        ),
        pytest.param(
            {"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]},
            {"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}]},
            {"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}]},
            id="host-aliases-by-ip",
        ),
        pytest.param(
            {
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "data", "mountPath": "/cache"},
                ]
            },
            {"volumeMounts": [{"mountPath": "/data", "readOnly": True}]},
            {
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data", "readOnly": True},
                    {"name": "data", "mountPath": "/cache"},
                ]
            },
            id="volume-mounts-by-mount-path",
        ),
        pytest.param(
            {"volumeDevices": [{"name": "blk", "devicePath": "/dev/xvda"}]},
            {"volumeDevices": [{"name": "blk2", "devicePath": "/dev/xvda"}]},
            {"volumeDevices": [{"name": "blk2", "devicePath": "/dev/xvda"}]},
            id="volume-devices-by-device-path",
        ),
        pytest.param(
            {"ports": [{"containerPort": 80, "name": "http"}]},
            {"ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]},
            {"ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}]},
            id="container-ports-by-container-port",
        ),
        pytest.param(
            {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            {"ports": [{"port": 80, "targetPort": 9090}]},
            {"ports": [{"name": "http", "port": 80, "targetPort": 9090}]},
            id="service-ports-by-port",
        ),
        pytest.param(
            {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}]},
            {"conditions": [{"type": "Ready", "status": "True"}]},
            {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}]},
            id="conditions-by-type",
        ),
        pytest.param(
            {"ownerReferences": [{"uid": "u1", "name": "a"}]},
            {"ownerReferences": [{"uid": "u1", "controller": True}]},
            {"ownerReferences": [{"uid": "u1", "name": "a", "controller": True}]},
            id="owner-references-by-uid",
        ),
        pytest.param(
            {"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}]},
            {"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]},
            {"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]},
            id="topology-spread-by-topology-key",
        ),
        pytest.param(
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}
                    }
                }
            },
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}
                    }
                }
            },
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                                }
                            ]
                        }
                    }
                }
            },
            id="nested-merge-lists",
        ),
        # Ordering follows normalizeElementOrder: patch order wins, live order fills in.
        pytest.param(
            {"containers": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]},
            {
                "containers": [
                    {"name": "3", "value": "c"},
                    {"name": "1", "value": "a"},
                    {"name": "2", "other": "x"},
                ]
            },
            {
                "containers": [
                    {"name": "3", "value": "c"},
                    {"name": "1", "value": "a"},
                    {"name": "2", "value": "b", "other": "x"},
                ]
            },
            id="patch-order-wins",
        ),
        pytest.param(
            {"containers": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]},
            {"containers": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]},
            {
                "containers": [
                    {"name": "2", "value": "b"},
                    {"name": "3", "value": "c"},
                    {"name": "1", "value": "a"},
                ]
            },
            id="server-only-items-interleave-by-live-order",
        ),
        # Lists of scalars with the merge strategy.
        pytest.param(
            {"metadata": {"finalizers": ["a", "b"]}},
            {"metadata": {"finalizers": ["b", "c"]}},
            {"metadata": {"finalizers": ["a", "b", "c"]}},
            id="finalizers-union",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["a", "b"]}},
            {"metadata": {"finalizers": ["c"]}},
            {"metadata": {"finalizers": ["c", "a", "b"]}},
            id="finalizers-new-item-goes-first",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["a", "b", "c"]}},
            {"metadata": {"finalizers": ["c", "a"]}},
            {"metadata": {"finalizers": ["b", "c", "a"]}},
            id="finalizers-patch-order-wins",
        ),
        pytest.param({}, {"finalizers": ["a"]}, {"finalizers": ["a"]}, id="finalizers-new-list"),
        # Every other list is replaced wholesale.
        pytest.param(
            {"tolerations": [{"key": "a", "operator": "Exists"}]},
            {"tolerations": [{"key": "b", "operator": "Exists"}]},
            {"tolerations": [{"key": "b", "operator": "Exists"}]},
            id="tolerations-replace",
        ),
        pytest.param({"args": ["a", "b"]}, {"args": ["c"]}, {"args": ["c"]}, id="args-replace"),
        pytest.param(
            {"command": ["sh"]},
            {"command": ["bash", "-c"]},
            {"command": ["bash", "-c"]},
            id="command-replace",
        ),
        pytest.param(
            {"accessModes": ["ReadWriteOnce"]},
            {"accessModes": ["ReadOnlyMany"]},
            {"accessModes": ["ReadOnlyMany"]},
            id="access-modes-replace",
        ),
        pytest.param(
            {"taints": [{"key": "a", "effect": "NoSchedule"}]},
            {"taints": [{"key": "b", "effect": "NoSchedule"}]},
            {"taints": [{"key": "b", "effect": "NoSchedule"}]},
            id="node-taints-replace",
        ),
        pytest.param({"args": ["a"]}, {"args": []}, {"args": []}, id="replace-with-empty-list"),
        pytest.param(
            {"containers": names("a")}, {"containers": []}, {"containers": names("a")}, id="merge-empty-list"
        ),
        pytest.param({"containers": names("a")}, {"containers": None}, {}, id="null-deletes-merge-list"),
        # $patch directives.
        pytest.param(
            {"spec": {"a": 1, "b": 2}},
            {"spec": {"$patch": "replace", "c": 3}},
            {"spec": {"c": 3}},
            id="map-replace",
        ),
        pytest.param({"a": 1, "b": 2}, {"$patch": "replace", "c": 3}, {"c": 3}, id="top-level-replace"),
        pytest.param(
            {"spec": {"a": 1}},
            {"spec": {"$patch": "replace", "b": None}},
            {"spec": {}},
            id="map-replace-drops-nulls",
        ),
        pytest.param(
            {"spec": {"a": 1}, "x": 1}, {"spec": {"$patch": "delete"}}, {"spec": {}, "x": 1}, id="map-delete"
        ),
        pytest.param(
            {"containers": names("a", "b", "c")},
            {"containers": [{"name": "b", "$patch": "delete"}]},
            {"containers": names("a", "c")},
            id="list-item-delete",
        ),
        pytest.param(
            {"containers": [{"name": "a"}, {"name": "a", "image": "dup"}, {"name": "b"}]},
            {"containers": [{"name": "a", "$patch": "delete"}]},
            {"containers": names("b")},
            id="list-item-delete-removes-duplicates",
        ),
        pytest.param(
            {"containers": names("a")},
            {"containers": [{"name": "zzz", "$patch": "delete"}]},
            {"containers": names("a")},
            id="list-item-delete-unknown-key",
        ),
        pytest.param(
            {"containers": names("a", "b")},
            {"containers": [{"$patch": "replace"}, {"name": "c", "image": "x", "dropped": None}]},
            {"containers": [{"name": "c", "image": "x"}]},
            id="list-replace",
        ),
        pytest.param(
            {"containers": names("a", "b")},
            {"containers": [{"$patch": "replace"}]},
            {"containers": []},
            id="list-replace-with-nothing",
        ),
        # $retainKeys.
        pytest.param(
            {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
            {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
            {"strategy": {"type": "Recreate"}},
            id="retain-keys-clears-unlisted",
        ),
        pytest.param(
            {"volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]},
            {
                "volumes": [
                    {"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {"medium": "Memory"}}
                ]
            },
            {"volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}]},
            id="retain-keys-in-list-item",
        ),
        pytest.param(
            {"spec": {"a": 1, "b": 2}},
            {"spec": {"$retainKeys": ["a", "b"], "b": None}},
            {"spec": {"a": 1}},
            id="retain-keys-allows-null-deletes",
        ),
        # $setElementOrder.
        pytest.param(
            {"containers": [{"name": "1", "other": "a"}, {"name": "2", "value": "2"}]},
            {
                "$setElementOrder/containers": names("4", "1", "2", "3"),
                "containers": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}],
            },
            {
                "containers": [
                    {"name": "4", "value": "4"},
                    {"name": "1", "other": "a"},
                    {"name": "2", "value": "2"},
                    {"name": "3", "value": "3"},
                ]
            },
            id="set-element-order-with-additions",
        ),
        pytest.param(
            {"containers": names("a", "b", "c")},
            {"$setElementOrder/containers": names("c", "b", "a")},
            {"containers": names("c", "b", "a")},
            id="set-element-order-only",
        ),
        pytest.param(
            {"containers": names("a", "b", "c")},
            {"$setElementOrder/containers": names("c", "a")},
            {"containers": names("b", "c", "a")},
            id="set-element-order-keeps-server-only-in-live-position",
        ),
        pytest.param(
            {"containers": names("1", "3")},
            {
                "$setElementOrder/containers": names("3", "2", "1"),
                "containers": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}],
            },
            {"containers": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]},
            id="set-element-order-mentions-absent-item",
        ),
        pytest.param(
            {"containers": names("hello2")},
            {
                "$setElementOrder/containers": names("hello", "gone"),
                "containers": [{"name": "hello"}, {"name": "gone", "$patch": "delete"}],
            },
            {"containers": names("hello", "hello2")},
            id="set-element-order-with-delete",
        ),
        pytest.param(
            {"finalizers": ["a", "b", "c"]},
            {"$setElementOrder/finalizers": ["c", "b", "a"]},
            {"finalizers": ["c", "b", "a"]},
            id="set-element-order-scalars",
        ),
        pytest.param(
            {},
            {
                "$setElementOrder/containers": names("b", "a"),
                "containers": [{"name": "b", "image": "x"}, {"name": "a", "$patch": "delete"}],
            },
            {"containers": [{"name": "b", "image": "x"}]},
            id="set-element-order-new-list",
        ),
        pytest.param(
            {"x": 1}, {"$setElementOrder/finalizers": ["a"]}, {"x": 1}, id="set-element-order-for-absent-list"
        ),
        # $deleteFromPrimitiveList.
        pytest.param(
            {"metadata": {"finalizers": ["a", "b", "c"]}},
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
            {"metadata": {"finalizers": ["a", "c"]}},
            id="delete-from-primitive-list",
        ),
        pytest.param(
            {"finalizers": ["a", "b", "b"]},
            {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]},
            {"finalizers": ["a"]},
            id="delete-from-primitive-list-all-copies",
        ),
        pytest.param(
            {"args": ["a", "b", "c"]},
            {"$deleteFromPrimitiveList/args": ["a"]},
            {"args": ["b", "c"]},
            id="delete-from-primitive-list-non-merge-list",
        ),
        pytest.param(
            {"x": 1},
            {"$deleteFromPrimitiveList/finalizers": ["a"]},
            {"x": 1},
            id="delete-from-absent-primitive-list",
        ),
        pytest.param(
            {"finalizers": [1, 2, 3, 4]},
            {
                "$setElementOrder/finalizers": [1, 2, 5],
                "$deleteFromPrimitiveList/finalizers": [3],
                "finalizers": [5],
            },
            {"finalizers": [1, 2, 5, 4]},
            id="all-list-directives-together",
        ),
        # Directives inside values that are new to the object are applied, never stored.
        pytest.param(
            {},
            {
                "spec": {
                    "$retainKeys": ["containers", "securityContext"],
                    "containers": [
                        {
                            "name": "a",
                            "env": [{"name": "X", "value": None}, {"name": "Y", "$patch": "delete"}],
                        },
                        {"name": "b", "$patch": "delete"},
                    ],
                    "securityContext": {"$patch": "replace", "runAsUser": 1},
                }
            },
            {
                "spec": {
                    "containers": [{"name": "a", "env": [{"name": "X"}]}],
                    "securityContext": {"runAsUser": 1},
                }
            },
            id="directives-in-new-values",
        ),
    ],
)
def test_strategic_merge_patch(
    target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert apply_strategic_merge_patch(target, patch) == expected


def test_strategic_top_level_delete_empties_the_object() -> None:
    assert apply_strategic_merge_patch({"metadata": {"name": "a"}}, {"$patch": "delete"}) == {}


def test_strategic_ports_pick_merge_key_from_element_shape() -> None:
    pod_ports = {"ports": [{"containerPort": 80, "name": "http"}]}
    service_ports = {"ports": [{"port": 80, "name": "http"}]}
    assert apply_strategic_merge_patch(pod_ports, {"ports": [{"containerPort": 80, "port": 1}]}) == {
        "ports": [{"containerPort": 80, "name": "http", "port": 1}]
    }
    assert apply_strategic_merge_patch(service_ports, {"ports": [{"port": 443, "name": "https"}]}) == {
        "ports": [{"port": 443, "name": "https"}, {"port": 80, "name": "http"}]
    }


@pytest.mark.parametrize(
    ("target", "patch", "code", "message"),
    [
        pytest.param({}, ["not", "a", "map"], 400, "must be a JSON object", id="body-not-an-object"),
        pytest.param(
            {"containers": [{"name": "a"}]},
            {"containers": [{"image": "x"}]},
            422,
            "does not contain declared merge key: name",
            id="missing-merge-key",
        ),
        pytest.param(
            {"containers": [{"name": "a"}]},
            {"containers": [{"image": "x", "$patch": "delete"}]},
            422,
            "does not contain declared merge key: name",
            id="delete-without-merge-key",
        ),
        pytest.param(
            {"conditions": [{"status": "True"}]},
            {"conditions": [{"type": "Ready"}]},
            422,
            "does not contain declared merge key: type",
            id="live-item-without-merge-key",
        ),
        pytest.param(
            {"containers": names("a")},
            {"containers": [{"name": "a", "$patch": "merge"}]},
            422,
            "merging lists cannot yet be specified in the patch",
            id="list-merge-directive",
        ),
        pytest.param(
            {"containers": names("a")},
            {"containers": [{"name": "a", "$patch": "explode"}]},
            422,
            "unknown patch type: explode",
            id="unknown-list-directive",
        ),
        pytest.param(
            {"spec": {}},
            {"spec": {"$patch": "merge"}},
            422,
            "unknown patch type: merge",
            id="map-merge-directive",
        ),
        pytest.param(
            {"containers": [["a"]]},
            {"containers": [["b"]]},
            422,
            "lists of lists are not supported",
            id="list-of-lists",
        ),
        pytest.param(
            {"containers": names("a")},
            {"containers": ["b"]},
            422,
            "list element types are not identical",
            id="mixed-element-types",
        ),
        pytest.param(
            {"finalizers": ["a"]},
            {"finalizers": [{"name": "b"}]},
            422,
            "list element types are not identical",
            id="maps-in-scalar-list",
        ),
        pytest.param(
            {"finalizers": [{"name": "a"}]},
            {"finalizers": [{"name": "b"}]},
            422,
            "cannot merge lists without merge key for finalizers",
            id="maps-in-merged-scalar-list",
        ),
        pytest.param(
            {"spec": {"a": 1}},
            {"spec": {"$retainKeys": "a"}},
            400,
            "invalid patch format of retainKeys",
            id="retain-keys-not-a-list",
        ),
        pytest.param(
            {"spec": {"a": 1}},
            {"spec": {"$retainKeys": ["a"], "b": 2}},
            400,
            "invalid patch format of retainKeys",
            id="retain-keys-missing-patched-key",
        ),
        pytest.param(
            {"containers": names("1", "3", "2")},
            {
                "$setElementOrder/containers": names("1", "2", "3"),
                "containers": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}],
            },
            400,
            "doesn't match $setElementOrder list",
            id="set-element-order-contradicts-patch",
        ),
        pytest.param(
            {"finalizers": ["a"]},
            {"$setElementOrder/finalizers": ["a"], "finalizers": ["b"]},
            400,
            "doesn't match $setElementOrder list",
            id="set-element-order-misses-patched-item",
        ),
        pytest.param(
            {"containers": names("a")},
            {"$setElementOrder/containers": [{"image": "x"}]},
            422,
            "does not contain declared merge key: name",
            id="set-element-order-without-merge-key",
        ),
        pytest.param(
            {"finalizers": ["a"]},
            {"$setElementOrder/finalizers": "a"},
            400,
            "invalid patch format of setElementOrder list",
            id="set-element-order-not-a-list",
        ),
        pytest.param(
            {"finalizers": ["a"]},
            {"$setElementOrderfinalizers": ["a"]},
            400,
            "invalid patch format of setElementOrder list",
            id="set-element-order-without-slash",
        ),
        pytest.param(
            {"finalizers": ["a"]},
            {"$deleteFromPrimitiveList/finalizers": "a"},
            400,
            "invalid patch format of primitive list",
            id="delete-from-primitive-list-not-a-list",
        ),
        pytest.param(
            {"finalizers": ["a"]},
            {"$deleteFromPrimitiveListfinalizers": ["a"]},
            400,
            "invalid patch format of primitive list",
            id="delete-from-primitive-list-without-slash",
        ),
        pytest.param(
            {"containers": names("a")},
            {"$deleteFromPrimitiveList/containers": [{"name": "a"}]},
            400,
            "invalid patch format of primitive list",
            id="delete-from-primitive-list-of-maps",
        ),
    ],
)
def test_strategic_merge_patch_errors(target: dict[str, Any], patch: Any, code: int, message: str) -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_strategic_merge_patch(target, patch)
    assert excinfo.value.code == code
    assert message in str(excinfo.value)


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(_keys(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(item) for item in value))
    return set()


def test_strategic_merge_patch_never_mutates_aliases_or_leaks_directives() -> None:
    target = {
        "metadata": {"finalizers": ["a", "b"], "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}, {"name": "side"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        },
    }
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "labels": {"app": None, "tier": "fe"}},
        "spec": {
            "$setElementOrder/containers": names("side", "app"),
            "containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}],
            "volumes": [{"name": "data", "$patch": "delete"}, {"name": "cfg", "configMap": {"name": "c"}}],
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"$patch": "replace", "metadata": {"labels": {"x": "1"}}},
        },
    }
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = apply_strategic_merge_patch(target, patch)
    assert result == {
        "metadata": {"finalizers": ["b"], "labels": {"tier": "fe"}},
        "spec": {
            "containers": [
                {"name": "side"},
                {"name": "app", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]},
            ],
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": {"x": "1"}}},
        },
    }
    assert not {key for key in _keys(result) if key.startswith("$")}
    result["spec"]["containers"][1]["env"].append({"name": "C"})
    result["spec"]["volumes"][0]["configMap"]["name"] = "changed"
    result["metadata"]["labels"]["new"] = "x"
    assert target == target_before
    assert patch == patch_before
