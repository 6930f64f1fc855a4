"""How many namespaces one policy may select."""

from __future__ import annotations

from shared.models import PromotePolicySpec
from shared.selection import MAX_NAMESPACES, select_namespaces


def spec(included: list[str]) -> PromotePolicySpec:
    return PromotePolicySpec.model_validate({"clusterName": "member1", "includedNamespaces": included})


def test_a_policy_of_the_largest_size_is_accepted() -> None:
    names = [f"app-{i:05d}" for i in range(MAX_NAMESPACES)]
    chosen, errors = select_namespaces(spec(names), names, protected=["kube-system"])
    assert errors == [] and chosen == names


def test_one_namespace_more_is_refused_with_what_to_do() -> None:
    names = [f"app-{i:05d}" for i in range(MAX_NAMESPACES + 1)]
    _, errors = select_namespaces(spec(names), names, protected=["kube-system"])
    assert errors == [
        f"the policy selects {MAX_NAMESPACES + 1} namespaces, more than the {MAX_NAMESPACES} one policy can "
        "report in its status (an object must stay under 1.5 MiB): split includedNamespaces over several "
        "policies"
    ]


def test_the_wildcard_counts_what_it_expands_to() -> None:
    names = [f"app-{i:05d}" for i in range(MAX_NAMESPACES + 5)]
    _, errors = select_namespaces(spec(["*"]), [*names, "default", "kube-system"], protected=["kube-system"])
    assert len(errors) == 1 and f"selects {MAX_NAMESPACES + 5} namespaces" in errors[0]
