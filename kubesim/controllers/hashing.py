"""The hashes kube-controller-manager derives object names from.

Both names are pure functions of the template (plus a collision count), which is why a Deployment or
StatefulSet re-created in another cluster finds its ReplicaSet or ControllerRevision under the same name
(docs/control-plane-traps.md#adoption). The FNV variants and the encoding follow the Go sources:
`controller.ComputeHash` uses FNV-1a, `history.HashControllerRevision` uses FNV-1, and both encode the
decimal value with `rand.SafeEncodeString`.
"""

from __future__ import annotations

from typing import Any

from kubesim.objects import go_json

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""`k8s.io/apimachinery/pkg/util/rand` alphanums: no vowels, so no words appear in names."""

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF


def fnv1_32(data: bytes) -> int:
    """FNV-1 (multiply, then xor), Go's `hash/fnv.New32`."""
    value = _FNV32_OFFSET
    for byte in data:
        value = ((value * _FNV32_PRIME) & _MASK32) ^ byte
    return value


def fnv1a_32(data: bytes) -> int:
    """FNV-1a (xor, then multiply), Go's `hash/fnv.New32a`."""
    value = _FNV32_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV32_PRIME) & _MASK32
    return value


def safe_encode(value: int) -> str:
    """`rand.SafeEncodeString(fmt.Sprint(value))`: each decimal digit mapped into SAFE_ALPHABET."""
    return "".join(SAFE_ALPHABET[ord(char) % len(SAFE_ALPHABET)] for char in str(value))


def pod_template_hash(template: dict[str, Any], collision_count: int | None) -> str:
    """The `pod-template-hash` label and ReplicaSet name suffix of a Deployment's template.

    Go hashes a spew dump of the typed template; the simulator hashes its Go JSON encoding instead,
    which keeps the property that matters: equal templates give equal names in every cluster.
    """
    data = go_json(template)
    if collision_count is not None:
        data += str(collision_count).encode()
    return safe_encode(fnv1a_32(data))


def revision_hash(data: bytes, collision_count: int) -> str:
    """The ControllerRevision name suffix: FNV-1 of the stored `data` bytes, then the collision count."""
    return safe_encode(fnv1_32(data + str(collision_count).encode()))
