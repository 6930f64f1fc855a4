"""`pods/binding`: how the scheduler assigns a pod to a node (pkg/registry/core/pod/storage `BindingREST`).

A pod's `spec.nodeName` cannot be changed by an update; the scheduler binds through this subresource,
which sets it once, merges the Binding's annotations into the pod and marks the pod `PodScheduled`, all
in one write. A second binding is refused with 409, so two schedulers can never move a running pod. The
apiserver does not check that the node exists; the seed binds to member Nodes it created.
"""

from __future__ import annotations

from typing import Any

from kubesim import errors
from kubesim.errors import ApiError
from kubesim.objects import Obj, clone, is_terminating, now_rfc3339
from kubesim.store import Store

BINDING_KIND = "Binding"


def _conflict(name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on pods/binding "{name}": {why}',
        details={"name": name, "kind": "pods/binding"},
    )


def _validate(binding: Any, name: str) -> dict[str, Any]:
    """`ValidatePodBinding`, and the URL's pod name against the Binding's."""
    if not isinstance(binding, dict) or binding.get("kind") not in (None, BINDING_KIND):
        raise errors.bad_request(f"the body of a pods/binding request must be a {BINDING_KIND}")
    metadata = binding.get("metadata") or {}
    if metadata.get("name", name) != name:
        raise errors.bad_request("name in URL does not match name in Binding object")
    target = binding.get("target") or {}
    causes = []
    if target.get("kind") not in (None, "", "Node"):
        causes.append(("target.kind", f'Unsupported value: "{target["kind"]}": supported values: "Node", ""'))
    if not target.get("name"):
        causes.append(("target.name", "Required value"))
    if causes:
        raise errors.invalid_kind(BINDING_KIND, name, causes)
    return binding


def bind(store: Store, namespace: str, name: str, body: Any, *, dry_run: bool = False) -> Obj:
    """Assign pod `name` to the Binding's target node; answers with the Status the apiserver sends."""
    binding = _validate(body, name)
    pods = store.type("", "v1", "pods")
    pod = store.must_get(pods, namespace, name)
    metadata = binding.get("metadata") or {}
    if metadata.get("uid") not in (None, "", pod["metadata"]["uid"]):
        raise _conflict(name, f"Precondition failed: UID in precondition: {metadata['uid']}")
    if metadata.get("resourceVersion") not in (None, "", pod["metadata"]["resourceVersion"]):
        raise _conflict(
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    if is_terminating(pod):
        raise _conflict(name, f"pod {name} is being deleted, cannot be assigned to a host")
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        raise _conflict(name, f'pod {name} is already assigned to node "{node_name}"')
    bound = clone(pod)
    bound["spec"]["nodeName"] = binding["target"]["name"]
    if metadata.get("annotations"):
        bound["metadata"]["annotations"] = {
            **(pod["metadata"].get("annotations") or {}),
            **metadata["annotations"],
        }
    status = bound.setdefault("status", {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    status["conditions"] = [
        *conditions,
        {
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339(),
        },
    ]
    store.update(pods, bound, subresource="binding", dry_run=dry_run)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
