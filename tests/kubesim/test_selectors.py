"""Label and field selectors must accept, reject and match exactly like kube-apiserver."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubesim.selectors import LabelSelector, SelectorError, parse_field_selector

APP_WEB = {"app": "web", "tier": "frontend"}


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        pytest.param("", {"app": "web"}, True, id="empty-selects-everything"),
        pytest.param("", None, True, id="empty-selects-unlabelled"),
        pytest.param("app=web", APP_WEB, True, id="equals-match"),
        pytest.param("app=db", APP_WEB, False, id="equals-other-value"),
        pytest.param("app=web", None, False, id="equals-no-labels"),
        pytest.param("app==web", APP_WEB, True, id="double-equals-match"),
        pytest.param("app==db", APP_WEB, False, id="double-equals-other-value"),
        pytest.param("app!=db", APP_WEB, True, id="not-equals-other-value"),
        pytest.param("app!=web", APP_WEB, False, id="not-equals-same-value"),
        pytest.param("env!=prod", APP_WEB, True, id="not-equals-matches-missing-key"),
        pytest.param("app in (db,web)", APP_WEB, True, id="in-match"),
        pytest.param("app in (db,cache)", APP_WEB, False, id="in-no-match"),
        pytest.param("env in (prod)", APP_WEB, False, id="in-missing-key"),
        pytest.param("app notin (db,cache)", APP_WEB, True, id="notin-match"),
        pytest.param("app notin (web)", APP_WEB, False, id="notin-excluded-value"),
        pytest.param("env notin (prod)", APP_WEB, True, id="notin-matches-missing-key"),
        pytest.param("app", APP_WEB, True, id="exists-present"),
        pytest.param("env", APP_WEB, False, id="exists-missing"),
        pytest.param("!env", APP_WEB, True, id="does-not-exist-missing"),
        pytest.param("!app", APP_WEB, False, id="does-not-exist-present"),
        pytest.param("!app", None, True, id="does-not-exist-no-labels"),
        pytest.param("app=web,tier=frontend", APP_WEB, True, id="and-all-match"),
        pytest.param("app=web,tier=backend", APP_WEB, False, id="and-one-fails"),
        pytest.param("app=web,!env,tier in (frontend)", APP_WEB, True, id="and-mixed-operators"),
        pytest.param("  app =  web ,\ttier\n", APP_WEB, True, id="whitespace-tolerant"),
        pytest.param("app in ( db , web )", APP_WEB, True, id="whitespace-inside-set"),
        pytest.param("example.com/team=core", {"example.com/team": "core"}, True, id="dns-prefixed-key"),
        pytest.param("example.com/team=core", {"team": "core"}, False, id="dns-prefix-is-part-of-key"),
        pytest.param("app=", {"app": ""}, True, id="empty-value-matches-empty-label"),
        pytest.param("app=", APP_WEB, False, id="empty-value-rejects-non-empty-label"),
        pytest.param("app in ()", {"app": ""}, True, id="empty-set-means-empty-value"),
        pytest.param("app in (,web)", APP_WEB, True, id="set-with-empty-member"),
        pytest.param("app in (in)", {"app": "in"}, True, id="in-keyword-as-value"),
        pytest.param("notin=in", {"notin": "in"}, True, id="keywords-as-key-and-value"),
        pytest.param("replicas>2", {"replicas": "3"}, True, id="greater-than-match"),
        pytest.param("replicas>2", {"replicas": "2"}, False, id="greater-than-equal-bound"),
        pytest.param("replicas<2", {"replicas": "1"}, True, id="less-than-match"),
        pytest.param("replicas<2", {"replicas": "one"}, False, id="less-than-non-integer-label"),
        pytest.param("replicas>2", {}, False, id="greater-than-missing-key"),
    ],
)
def test_label_selector_matches(text: str, labels: dict[str, str] | None, expected: bool) -> None:
    assert LabelSelector.parse(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("app=web,", "found '', expected: identifier after ','", id="trailing-comma"),
        pytest.param("app,,tier", "found ',', expected: identifier after ','", id="double-comma"),
        pytest.param("app=web tier", "found 'tier', expected: ',' or 'end of string'", id="missing-comma"),
        pytest.param("=web", "found '=', expected: !, identifier, or 'end of string'", id="missing-key"),
        pytest.param("app in web", "found 'web' expected: '('", id="in-without-parens"),
        pytest.param("app in (web", "found '', expected: ',' or ')'", id="unclosed-set"),
        pytest.param("app in (a b)", "found 'b', expected: ',' or ')'", id="set-missing-comma"),
        pytest.param("app in (=)", "found '=', expected: ',', ')' or identifier", id="operator-in-set"),
        pytest.param("app=(", "found '(', expected: identifier", id="paren-as-value"),
        pytest.param("app!web", "expected: in, notin, =, ==, !=, gt, lt", id="bang-as-operator"),
        pytest.param("!app=web", "found '=', expected: ',' or 'end of string'", id="negated-with-value"),
        pytest.param("app=a=b", "found '=', expected: ',' or 'end of string'", id="two-equals"),
        pytest.param("app@=web", 'Invalid value: "app@"', id="invalid-key-character"),
        pytest.param("a/b/c=web", "a qualified name must consist of", id="two-slashes-in-key"),
        pytest.param("/app=web", "prefix part must be non-empty", id="empty-prefix"),
        pytest.param(
            "Example.com/app=web", "prefix part a lowercase RFC 1123 subdomain", id="uppercase-prefix"
        ),
        pytest.param(f"{'k' * 64}=v", "name part must be no more than 63 characters", id="key-too-long"),
        pytest.param("app=-web", 'values[0][app]: Invalid value: "-web"', id="invalid-value-character"),
        pytest.param(f"app={'v' * 64}", "must be no more than 63 characters", id="value-too-long"),
        pytest.param("replicas>two", "the value must be an integer", id="greater-than-non-integer"),
    ],
)
def test_label_selector_rejects_invalid_syntax(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as excinfo:
        LabelSelector.parse(text)
    assert message in str(excinfo.value)


def test_requirement_errors_are_prefixed_like_the_apiserver() -> None:
    with pytest.raises(SelectorError) as excinfo:
        LabelSelector.parse("app in web")
    assert str(excinfo.value).startswith("unable to parse requirement: ")


def test_requirements_are_sorted_by_key_with_sorted_values() -> None:
    selector = LabelSelector.parse("zone in (b,a),app=web")
    assert [(r.key, r.values) for r in selector.requirements] == [("app", ("web",)), ("zone", ("a", "b"))]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param(None, {"app": "web"}, True, id="none-selects-everything"),
        pytest.param({}, {"app": "web"}, True, id="empty-object-selects-everything"),
        pytest.param({"matchLabels": {}, "matchExpressions": []}, None, True, id="empty-parts"),
        pytest.param({"matchLabels": {"app": "web"}}, APP_WEB, True, id="match-labels-hit"),
        pytest.param({"matchLabels": {"app": "db"}}, APP_WEB, False, id="match-labels-miss"),
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]},
            APP_WEB,
            True,
            id="in",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
            APP_WEB,
            False,
            id="not-in",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
            APP_WEB,
            True,
            id="not-in-missing-key",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, APP_WEB, True, id="exists"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
            APP_WEB,
            False,
            id="does-not-exist",
        ),
        pytest.param(
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["backend"]}],
            },
            APP_WEB,
            False,
            id="labels-and-expressions-are-anded",
        ),
    ],
)
def test_label_selector_from_api(
    selector: dict[str, Any] | None, labels: dict[str, str] | None, expected: bool
) -> None:
    assert LabelSelector.from_api(selector).matches(labels) is expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]},
            '"Equals" is not a valid label selector operator',
            id="unknown-operator",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
            "values set can't be empty",
            id="in-without-values",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]},
            "values set must be empty for exists and does not exist",
            id="exists-with-values",
        ),
        pytest.param({"matchLabels": {"bad key": "web"}}, 'key: Invalid value: "bad key"', id="invalid-key"),
        pytest.param({"matchLabels": {"app": 1}}, "must be a string", id="non-string-value"),
        pytest.param(["app"], "label selector must be an object", id="not-an-object"),
    ],
)
def test_label_selector_from_api_rejects_invalid(selector: Any, message: str) -> None:
    with pytest.raises(SelectorError) as excinfo:
        LabelSelector.from_api(selector)
    assert message in str(excinfo.value)


def test_from_api_does_not_mutate_the_selector() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "z", "operator": "In", "values": ["b", "a"]}],
    }
    before = copy.deepcopy(selector)
    LabelSelector.from_api(selector)
    assert selector == before


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param(LabelSelector.parse(""), True, id="parsed-empty"),
        pytest.param(LabelSelector.parse("app"), False, id="parsed-exists"),
        pytest.param(LabelSelector.from_api(None), True, id="api-none"),
        pytest.param(LabelSelector.from_api({"matchLabels": {"app": "web"}}), False, id="api-labels"),
    ],
)
def test_label_selector_is_empty(selector: LabelSelector, expected: bool) -> None:
    assert selector.is_empty() is expected


POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
    "spec": {"nodeName": "node-a", "hostNetwork": True, "priority": 7},
    "status": {"phase": "Running"},
}
PENDING_POD: dict[str, Any] = {"metadata": {"name": "web-2", "namespace": "default"}, "spec": {}}


@pytest.mark.parametrize(
    ("text", "obj", "expected"),
    [
        pytest.param("", POD, True, id="empty-selects-everything"),
        pytest.param("metadata.name=web-1", POD, True, id="equals-match"),
        pytest.param("metadata.name=web-2", POD, False, id="equals-other-value"),
        pytest.param("metadata.namespace==default", POD, True, id="double-equals"),
        pytest.param("status.phase!=Running", POD, False, id="not-equals-same-value"),
        pytest.param("status.phase!=Succeeded", POD, True, id="not-equals-other-value"),
        pytest.param("metadata.name=web-1,spec.nodeName=node-a", POD, True, id="and-all-match"),
        pytest.param("metadata.name=web-1,spec.nodeName=node-b", POD, False, id="and-one-fails"),
        pytest.param("spec.nodeName=", PENDING_POD, True, id="missing-field-equals-empty"),
        pytest.param("spec.nodeName!=", PENDING_POD, False, id="missing-field-not-empty-fails"),
        pytest.param("spec.nodeName!=", POD, True, id="unscheduled-filter"),
        pytest.param("status.phase!=Running", PENDING_POD, True, id="missing-parent-compares-empty"),
        pytest.param("spec.hostNetwork=true", POD, True, id="bool-renders-lowercase"),
        pytest.param("spec.priority=7", POD, True, id="integer-renders-decimal"),
        pytest.param("metadata.labels=app", POD, False, id="object-field-never-equal"),
        pytest.param("metadata.labels!=app", POD, True, id="object-field-always-not-equal"),
        pytest.param(r"metadata.name=a\,b", {"metadata": {"name": "a,b"}}, True, id="escaped-comma"),
        pytest.param(r"metadata.name=a\=b", {"metadata": {"name": "a=b"}}, True, id="escaped-equals"),
        pytest.param(r"metadata.name=a\\b", {"metadata": {"name": "a\\b"}}, True, id="escaped-backslash"),
        pytest.param("metadata.name=web-1,", POD, True, id="empty-terms-ignored"),
    ],
)
def test_field_selector_matches(text: str, obj: dict[str, Any], expected: bool) -> None:
    assert parse_field_selector(text).matches(obj) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'", id="no-op"
        ),
        pytest.param("a=b,status.phase", "can't understand 'status.phase'", id="second-term-no-op"),
        pytest.param("metadata.name=a=b", "unescaped character in value: =", id="unescaped-equals"),
        pytest.param(r"metadata.name=a\x", r"invalid escape sequence: \x", id="unknown-escape"),
        pytest.param("metadata.name=a\\", "invalid escape sequence: \\", id="trailing-backslash"),
    ],
)
def test_field_selector_rejects_invalid_syntax(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as excinfo:
        parse_field_selector(text)
    assert message in str(excinfo.value)


def test_field_selector_exposes_requirements_without_trimming() -> None:
    selector = parse_field_selector("spec.nodeName!=,metadata.name = x")
    assert [(r.field, r.operator.value, r.value) for r in selector.requirements] == [
        ("metadata.name ", "=", " x"),
        ("spec.nodeName", "!=", ""),
    ]
    assert not selector.is_empty()
    assert parse_field_selector("").is_empty()


def test_matching_does_not_mutate_inputs() -> None:
    obj = copy.deepcopy(POD)
    labels = dict(APP_WEB)
    assert parse_field_selector("spec.nodeName=node-a").matches(obj)
    assert LabelSelector.parse("app=web").matches(labels)
    assert obj == POD
    assert labels == APP_WEB
