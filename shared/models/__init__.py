"""Typed boundaries of kosmos-promote: the PromotePolicy API as the rest of the code sees it."""

from shared.models.policy import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ItemCounts,
    NamespacePhase,
    NamespaceStatus,
    PolicyPhase,
    PromotePolicy,
    PromotePolicySpec,
    PromotePolicyStatus,
    SkippedItem,
)

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ItemCounts",
    "NamespacePhase",
    "NamespaceStatus",
    "PolicyPhase",
    "PromotePolicy",
    "PromotePolicySpec",
    "PromotePolicyStatus",
    "SkippedItem",
]
