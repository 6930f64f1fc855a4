"""The three PATCH bodies kube-apiserver accepts: JSON merge, JSON patch and strategic merge patch.

The strategic merge patch follows ``k8s.io/apimachinery/pkg/util/strategicpatch`` as the apiserver
runs it (``MergeParallelList`` and ``IgnoreUnmatchedNulls`` on), including how merged lists are
ordered. Without OpenAPI schemas, each list's patch strategy is looked up by field name in a table of
what the built-in types declare. Unlike upstream, which leaves it to typed decoding to drop stray
directives and nulls, every value coming from the patch is merged into "nothing", so directives and
nulls never reach the result.

All functions work on deep copies: inputs are never mutated and results never share structure with
them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import jsonpatch


class PatchError(ValueError):
    """A patch could not be applied; ``code`` is the HTTP status the apiserver answers with."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, the rest replaces."""
    return _merge_patch_into(copy.deepcopy(target), patch)


def _merge_patch_into(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch_into(merged.get(key), value)
    return merged


def apply_json_patch(target: dict[str, Any], patch: list[Any]) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch; a body that is not a list is a 400, a failing operation a 422."""
    if not isinstance(patch, list):
        raise PatchError("json patch must be a list of operations", code=400)
    try:
        result = jsonpatch.JsonPatch(copy.deepcopy(patch)).apply(target)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise PatchError(str(exc)) from exc
    if not isinstance(result, dict):
        raise PatchError("json patch must produce an object")
    return result


_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ELEMENT_ORDER = "$setElementOrder"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"

_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
_BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"

# patchMergeKey of the list fields the built-in API types declare with patchStrategy "merge".
# `ports` is resolved separately: Container ports merge by containerPort, Service ports by port.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "secrets": "name",
    "hostAliases": "ip",
    "podIPs": "ip",
    "hostIPs": "ip",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of scalars declared with patchStrategy "merge": the patch adds to them instead of replacing.
_MERGED_SCALAR_LISTS = frozenset({"finalizers", "podCIDRs"})


def apply_strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a strategic merge patch as kube-apiserver does for built-in resources."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object", code=400)
    return _merge_map(copy.deepcopy(target), copy.deepcopy(patch))


def _merge_map(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into ``original``; both are private copies and may be mutated."""
    if _DIRECTIVE in patch:
        directive = patch.pop(_DIRECTIVE)
        if directive == "replace":
            return _merge_map({}, patch)
        if directive == "delete":
            return {}
        raise PatchError(f"unknown patch type: {directive} in map: {patch}")
    _apply_retain_keys(original, patch)
    _apply_element_orders(original, patch)
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM_PRIMITIVE_LIST):
            field = _directive_field(key, _DELETE_FROM_PRIMITIVE_LIST, _BAD_PRIMITIVE_LIST)
            if not isinstance(value, list):
                raise PatchError(_BAD_PRIMITIVE_LIST, code=400)
            if isinstance(original.get(field), list):
                original[field] = _delete_from_list(original[field], value)
        elif value is None:
            original.pop(key, None)
        elif isinstance(original.get(key), dict) and isinstance(value, dict):
            original[key] = _merge_map(original[key], value)
        elif isinstance(original.get(key), list) and isinstance(value, list):
            original[key] = _merge_list(key, original[key], value)
        else:
            original[key] = _materialize(key, value)
    return original


def _materialize(field: str, value: Any) -> Any:
    """Turn a patch fragment into plain data by merging it into nothing."""
    if isinstance(value, dict):
        return _merge_map({}, value)
    if isinstance(value, list):
        return _merge_list(field, [], value)
    return value


def _directive_field(key: str, prefix: str, error: str) -> str:
    head, separator, field = key.partition("/")
    if head != prefix or not separator:
        raise PatchError(error, code=400)
    return field


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """Clear the keys ``$retainKeys`` does not list; the patch itself may only set listed keys."""
    if _RETAIN_KEYS not in patch:
        return
    retained = patch.pop(_RETAIN_KEYS)
    if not isinstance(retained, list):
        raise PatchError(_BAD_RETAIN_KEYS, code=400)
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)):
            continue
        if key not in retained:
            raise PatchError(_BAD_RETAIN_KEYS, code=400)
    for key in [key for key in original if key not in retained]:
        del original[key]


def _apply_element_orders(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge each list named by a ``$setElementOrder/<field>`` and order it by that directive.

    Items the directive lists come in its order; items only the server has keep their place
    relative to them, as in the live list. The merged list is removed from the patch.
    """
    for key in [key for key in patch if key.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        field = _directive_field(key, _SET_ELEMENT_ORDER, _BAD_SET_ELEMENT_ORDER)
        live = original.get(field)
        live = live if isinstance(live, list) else None
        if not isinstance(order, list) or (field in patch and not isinstance(patch[field], list)):
            raise PatchError(_BAD_SET_ELEMENT_ORDER, code=400)
        patch_list: list[Any] | None = patch.pop(field, None)
        if live is None and patch_list is None:
            continue
        merge_key = _list_merge_key(field, [*(live or []), *(patch_list or []), *order])
        if merge_key is not None:
            _require_merge_keys(order, merge_key)
        if patch_list is not None:
            _check_patch_follows_order(patch_list, order, merge_key)
            merged = _merge_list(field, live or [], patch_list)
        else:
            merged = live or []
        ordered, server_only = _partition(merged, order, merge_key)
        original[field] = _normalize_order(ordered, server_only, order, live or [], merge_key)


def _check_patch_follows_order(patch_list: list[Any], order: list[Any], merge_key: str | None) -> None:
    """Reject a patch list whose items are missing from, or ordered differently than, the directive."""
    if not order:
        return
    pending = [item for item in patch_list if not (isinstance(item, dict) and _DIRECTIVE in item)]
    position = 0
    for wanted in order:
        if position < len(pending) and _same(
            _identity(pending[position], merge_key), _identity(wanted, merge_key)
        ):
            position += 1
    if position < len(pending):
        raise PatchError(
            f"The order in patch list:\n{patch_list}\n doesn't match {_SET_ELEMENT_ORDER} list:\n{order}\n",
            code=400,
        )


def _merge_list(field: str, original: list[Any], patch: list[Any]) -> list[Any]:
    """Merge or replace a list according to the strategy Kubernetes declares for ``field``."""
    if field not in _MERGE_KEYS and field not in _MERGED_SCALAR_LISTS and field != "ports":
        return [_merge_map({}, item) if isinstance(item, dict) else item for item in patch]
    if not original and not patch:
        return []
    merge_key = _list_merge_key(field, [*original, *patch])
    if merge_key is None:
        merged = _dedupe([*original, *patch])
    else:
        original, patch = _apply_list_directives(original, patch, merge_key)
        merged = _merge_items(original, patch, merge_key)
    patch_items, server_only = _partition(merged, patch, merge_key)
    return _normalize_order(patch_items, server_only, patch, original, merge_key)


def _list_merge_key(field: str, items: list[Any]) -> str | None:
    """The merge key for a list of maps, or ``None`` for a list of scalars."""
    kinds = {
        "map" if isinstance(item, dict) else "list" if isinstance(item, list) else "scalar" for item in items
    }
    if "list" in kinds:
        raise PatchError("lists of lists are not supported")
    if len(kinds) > 1:
        raise PatchError(f"list element types are not identical: {items}")
    if kinds != {"map"}:
        return None
    if field == "ports":
        return "containerPort" if any("containerPort" in item for item in items) else "port"
    if field not in _MERGE_KEYS:
        raise PatchError(f"cannot merge lists without merge key for {field}")
    return _MERGE_KEYS[field]


def _apply_list_directives(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    """Handle ``$patch`` items: ``delete`` drops live items by key, ``replace`` discards the live list."""
    remaining: list[Any] = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            remaining.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            _require_merge_keys([item], merge_key)
            original = [live for live in original if not _same(_identity(live, merge_key), item[merge_key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise PatchError(f"unknown patch type: {directive} in map: {item}")
    if replace:
        return [_merge_map({}, item) for item in remaining], []
    return original, remaining


def _merge_items(original: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    merged = list(original)
    for item in patch:
        _require_merge_keys([item], merge_key)
        index = _position(merged, item, merge_key)
        if index < 0:
            merged.append(_merge_map({}, item))
        else:
            merged[index] = _merge_map(merged[index], item)
    return merged


def _delete_from_list(current: list[Any], values: list[Any]) -> list[Any]:
    """Apply ``$deleteFromPrimitiveList``, which works on any list of scalars whatever its strategy."""
    if any(isinstance(item, dict | list) for item in [*current, *values]):
        raise PatchError(_BAD_PRIMITIVE_LIST, code=400)
    return [item for item in current if not any(_same(item, value) for value in values)]


def _require_merge_keys(items: Iterable[Any], merge_key: str) -> None:
    for item in items:
        if merge_key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {merge_key}")


def _same(left: Any, right: Any) -> bool:
    """Compare like Go interface values: ``1``, ``1.0`` and ``True`` are all different."""
    return type(left) is type(right) and left == right


def _identity(item: Any, merge_key: str | None) -> Any:
    if merge_key is None:
        return item
    return item.get(merge_key) if isinstance(item, dict) else None


def _position(items: list[Any], item: Any, merge_key: str | None) -> int:
    wanted = _identity(item, merge_key)
    for index, candidate in enumerate(items):
        if _same(_identity(candidate, merge_key), wanted):
            return index
    return -1


def _dedupe(items: list[Any]) -> list[Any]:
    unique: list[Any] = []
    for item in items:
        if _position(unique, item, None) < 0:
            unique.append(item)
    return unique


def _partition(items: list[Any], by: list[Any], merge_key: str | None) -> tuple[list[Any], list[Any]]:
    """Split ``items`` into those ``by`` mentions and those only the server has."""
    if merge_key is not None:
        _require_merge_keys(items, merge_key)
    mentioned = [item for item in items if _position(by, item, merge_key) >= 0]
    server_only = [item for item in items if _position(by, item, merge_key) < 0]
    return mentioned, server_only


def _normalize_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str | None,
) -> list[Any]:
    """Order like ``normalizeElementOrder``: patch order first, live order for the rest, interleaved.

    A server-only item is emitted before the next patch item only when both appear in the live
    list and it came first there; so items new to the list end up ahead of the server-only items
    that follow them.
    """
    patch_items = _sort_by(patch_items, patch_order, merge_key)
    server_only = _sort_by(server_only, server_order, merge_key)
    result: list[Any] = []
    left = right = 0
    while left < len(server_only) and right < len(patch_items):
        server_index = _position(server_order, server_only[left], merge_key)
        patch_index = _position(server_order, patch_items[right], merge_key)
        if 0 <= server_index < patch_index:
            result.append(server_only[left])
            left += 1
        else:
            result.append(patch_items[right])
            right += 1
    return result + server_only[left:] + patch_items[right:]


def _sort_by(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    def rank(item: Any) -> int:
        index = _position(order, item, merge_key)
        return index if index >= 0 else len(order)

    return sorted(items, key=rank)
