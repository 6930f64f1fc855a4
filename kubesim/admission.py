"""Validation, defaulting and the admission plugins promote runs into.

Each plugin is a function of an AdmissionRequest; `install` puts them in the order kube-apiserver runs
them (mutating before validating). Defaulting matters for fidelity: a pod template stored here carries
the same defaulted fields a real one would, so a tool that strips or rewrites them changes the template
hash exactly as it would on a real cluster.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from typing import Any

from kubesim import errors
from kubesim.objects import labels_of, meta
from kubesim.selectors import LabelSelector, SelectorError
from kubesim.store import AdmissionRequest, Store, WatchEvent

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAMED = frozenset({"namespaces", "services"})
_PATH_SEGMENT_NAMED = frozenset({"roles", "rolebindings", "clusterroles", "clusterrolebindings"})
_WORKLOADS = frozenset({"deployments", "replicasets", "statefulsets", "daemonsets"})
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]


def validate_name(request: AdmissionRequest) -> None:
    if request.operation != "CREATE":
        return
    rt, name = request.rt, meta(request.obj).get("name", "")
    if not name:
        return
    if rt.plural in _PATH_SEGMENT_NAMED:
        ok = name not in (".", "..") and "/" not in name and "%" not in name
        rule = "may not contain '/' or '%'"
    elif rt.plural in _LABEL_NAMED:
        ok, rule = bool(_DNS_LABEL.match(name)) and len(name) <= 63, "a lowercase RFC 1123 label"
    else:
        ok, rule = bool(_DNS_SUBDOMAIN.match(name)) and len(name) <= 253, "a lowercase RFC 1123 subdomain"
    if not ok:
        raise errors.invalid(rt, name, [("metadata.name", f'Invalid value: "{name}": must be {rule}')])


# ------------------------------------------------------------------ pod specs
def _default_container(container: dict[str, Any]) -> None:
    image = container.get("image", "")
    tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
    container.setdefault(
        "imagePullPolicy", "IfNotPresent" if tagged and not image.endswith(":latest") else "Always"
    )
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def default_pod_spec(spec: dict[str, Any]) -> None:
    """Fields kube-apiserver fills into every pod spec and pod template."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for field in ("containers", "initContainers"):
        for container in spec.get(field) or []:
            _default_container(container)


def _validate_pod_spec(request: AdmissionRequest, spec: Any, path: str) -> dict[str, Any]:
    """`spec` once it is a pod spec with named containers that have images (422 otherwise)."""
    name = meta(request.obj).get("name", "")
    if not isinstance(spec, dict) or not spec.get("containers"):
        raise errors.invalid(request.rt, name, [(f"{path}.containers", "Required value")])
    for index, container in enumerate(spec["containers"]):
        for field in ("name", "image"):
            if not container.get(field):
                raise errors.invalid(
                    request.rt, name, [(f"{path}.containers[{index}].{field}", "Required value")]
                )
    return spec


def pods(request: AdmissionRequest) -> None:
    if request.rt.plural != "pods" or request.subresource:
        return
    pod, name = request.obj, meta(request.obj).get("name", "")
    spec = _validate_pod_spec(request, pod.get("spec"), "spec")
    if request.operation == "UPDATE":
        _check_pod_update(request)
        return
    default_pod_spec(spec)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for default in DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] for t in tolerations):
            tolerations.append(dict(default))
    _admit_service_account(request, spec, name)
    _admit_priority(request, spec, name)
    pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _admit_service_account(request: AdmissionRequest, spec: dict[str, Any], name: str) -> None:
    namespace = meta(request.obj).get("namespace", "")
    sa_name = spec["serviceAccountName"]
    sa_type = request.store.type("", "v1", "serviceaccounts")
    if request.store.get(sa_type, namespace, sa_name) is None:
        raise errors.forbidden(
            request.rt,
            name,
            f'error looking up service account {namespace}/{sa_name}: serviceaccount "{sa_name}" not found',
        )
    if spec.get("automountServiceAccountToken") is False:
        return
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    if any(m.get("mountPath") == SA_TOKEN_PATH for c in containers for m in c.get("volumeMounts") or []):
        return
    volume = f"kube-api-access-{uuid.uuid4().hex[:5]}"
    spec.setdefault("volumes", []).append(
        {
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        }
    )
    for container in containers:
        container.setdefault("volumeMounts", []).append(
            {"name": volume, "readOnly": True, "mountPath": SA_TOKEN_PATH}
        )


def _admit_priority(request: AdmissionRequest, spec: dict[str, Any], name: str) -> None:
    class_name = spec.get("priorityClassName")
    value = 0
    if class_name:
        pc_type = request.store.type("scheduling.k8s.io", "v1", "priorityclasses")
        priority_class = request.store.get(pc_type, "", class_name)
        if priority_class is None:
            raise errors.forbidden(request.rt, name, f"no PriorityClass with name {class_name} was found")
        value = int(priority_class.get("value", 0))
    if "priority" in spec and spec["priority"] != value:
        raise errors.forbidden(
            request.rt,
            name,
            f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; priority "
            f"admission controller computed {value} from the given PriorityClass name",
        )
    spec["priority"] = value


_MUTABLE_POD_SPEC = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _check_pod_update(request: AdmissionRequest) -> None:
    """A running pod's spec is immutable except images and a few fields: promote may only patch metadata."""
    if request.old is None:
        raise ValueError("an UPDATE admission request without the object it updates")
    old_spec, new_spec = dict(request.old["spec"]), dict(request.obj["spec"])
    for field in _MUTABLE_POD_SPEC:
        old_spec.pop(field, None)
        new_spec.pop(field, None)

    def without_images(spec: dict[str, Any]) -> dict[str, Any]:
        copy = dict(spec)
        for field in ("containers", "initContainers"):
            copy[field] = [{k: v for k, v in c.items() if k != "image"} for c in spec.get(field) or []]
        return copy

    if without_images(old_spec) != without_images(new_spec):
        name = meta(request.obj).get("name", "")
        raise errors.invalid(
            request.rt,
            name,
            [
                (
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
                    "`spec.tolerations` (only additions "
                    "to existing tolerations) or `spec.terminationGracePeriodSeconds`",
                )
            ],
        )


# ------------------------------------------------------------------ workloads
def workloads(request: AdmissionRequest) -> None:
    rt = request.rt
    if rt.group not in ("apps", "batch") or request.subresource or rt.plural == "controllerrevisions":
        return
    obj, name = request.obj, meta(request.obj).get("name", "")
    spec = obj.setdefault("spec", {})
    if rt.plural == "cronjobs":
        template = spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if template is not None:
            default_pod_spec(template.setdefault("spec", {}))
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        return
    template = spec.get("template")
    if not isinstance(template, dict):
        raise errors.invalid(rt, name, [("spec.template", "Required value")])
    _validate_pod_spec(request, template.get("spec"), "spec.template.spec")
    default_pod_spec(template["spec"])
    if rt.plural == "jobs":
        _admit_job(request, spec, template)
        return
    selector = spec.get("selector")
    if not selector:
        raise errors.invalid(rt, name, [("spec.selector", "Required value")])
    try:
        parsed = LabelSelector.from_api(selector)
    except SelectorError as exc:
        raise errors.invalid(rt, name, [("spec.selector", f"Invalid value: {exc}")]) from exc
    if not parsed.matches(labels_of(template)):
        raise errors.invalid(
            rt,
            name,
            [("spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`")],
        )
    if (
        request.operation == "UPDATE"
        and request.old
        and request.old.get("spec", {}).get("selector") != selector
    ):
        raise errors.invalid(rt, name, [("spec.selector", "Invalid value: field is immutable")])
    if request.operation == "CREATE":
        _default_workload(rt.plural, spec)
    if rt.plural == "daemonsets":
        _template_generation(request, template)


def _template_generation(request: AdmissionRequest, template: dict[str, Any]) -> None:
    """apps/v1 keeps a DaemonSet's internal `templateGeneration` in an annotation: 1 at creation, one
    more at each template change; the controller labels its pods `pod-template-generation` with it."""
    key = "deprecated.daemonset.template.generation"
    metadata = request.obj.setdefault("metadata", {})
    old = request.old or {}
    previous = int((meta(old).get("annotations") or {}).get(key, "0")) if request.operation == "UPDATE" else 0
    changed = request.operation == "CREATE" or (old.get("spec") or {}).get("template") != template
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        key: str(previous + 1 if changed else previous),
    }


def _default_workload(plural: str, spec: dict[str, Any]) -> None:
    if plural in ("deployments", "replicasets", "statefulsets"):
        spec.setdefault("replicas", 1)
    if plural == "deployments":
        spec.setdefault(
            "strategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        )
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    if plural == "statefulsets":
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
        )
    if plural == "daemonsets":
        spec.setdefault(
            "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
        )
        spec.setdefault("revisionHistoryLimit", 10)


def _admit_job(request: AdmissionRequest, spec: dict[str, Any], template: dict[str, Any]) -> None:
    """Jobs select their pods by their own uid: a copied Job is refused (a known Velero issue)."""
    name = meta(request.obj).get("name", "")
    if request.operation == "UPDATE":
        old_spec = (request.old or {}).get("spec", {})
        if old_spec.get("selector") != spec.get("selector") or old_spec.get("template") != template:
            raise errors.invalid(request.rt, name, [("spec.template", "Invalid value: field is immutable")])
        return
    if spec.get("manualSelector"):
        return
    if spec.get("selector"):
        raise errors.invalid(
            request.rt, name, [("spec.selector", "Invalid value: `selector` not auto-generated")]
        )
    uid_label = str(uuid.uuid4())
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid_label}}
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": uid_label,
            "controller-uid": uid_label,
            "batch.kubernetes.io/job-name": name,
            "job-name": name,
        }
    )
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    template["spec"].setdefault("restartPolicy", "Never")


# ------------------------------------------------------------------- storage
def persistent_volume_claims(request: AdmissionRequest) -> None:
    if request.rt.plural != "persistentvolumeclaims" or request.subresource:
        return
    spec, name = request.obj.setdefault("spec", {}), meta(request.obj).get("name", "")
    if request.operation == "CREATE":
        spec.setdefault("volumeMode", "Filesystem")
        request.obj["status"] = {"phase": "Pending"}
        return
    old_spec = dict((request.old or {}).get("spec") or {})
    new_spec = dict(spec)
    for copy in (old_spec, new_spec):
        copy.pop("resources", None)
    if not old_spec.get("volumeName"):
        new_spec.pop("volumeName", None)
        old_spec.pop("volumeName", None)
    if old_spec != new_spec:
        raise errors.invalid(
            request.rt,
            name,
            [
                (
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests and "
                    "volumeAttributesClassName for bound claims",
                )
            ],
        )


def persistent_volumes(request: AdmissionRequest) -> None:
    if request.rt.plural != "persistentvolumes" or request.subresource or request.operation != "CREATE":
        return
    spec = request.obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    request.obj["status"] = {"phase": "Pending"}


def controller_revisions(request: AdmissionRequest) -> None:
    """`data` is immutable and compared as bytes: a re-encoding counts as a change (measured on 1.24)."""
    if request.rt.plural != "controllerrevisions" or request.operation != "UPDATE" or request.old is None:
        return
    stored = request.store.raw_data.get(request.old["metadata"]["uid"])
    name = meta(request.obj).get("name", "")
    if stored is not None and request.raw_data is not None and stored != request.raw_data:
        raise errors.invalid(
            request.rt, name, [("data", "Invalid value: runtime.Unknown{...}: field is immutable")]
        )


def namespaces(request: AdmissionRequest) -> None:
    if request.rt.plural != "namespaces" or request.operation != "CREATE":
        return
    request.obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
    request.obj["status"] = {"phase": "Active"}
    request.obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = request.obj["metadata"][
        "name"
    ]


# ------------------------------------------------------------------ services
class ServiceAllocator:
    """Cluster IPs and node ports, as the apiserver's allocators hand them out and refuse duplicates."""

    def __init__(self, store: Store, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)
        self.ips: dict[str, str] = {}
        self.node_ports: dict[int, str] = {}
        self._next_ip = 10
        self._next_port = 30000
        store.subscribe(self._release)

    def _release(self, event: WatchEvent) -> None:
        if event.type != "DELETED" or event.rt.plural != "services":
            return
        owner = f"{meta(event.obj).get('namespace')}/{meta(event.obj).get('name')}"
        self.ips = {ip: who for ip, who in self.ips.items() if who != owner}
        self.node_ports = {port: who for port, who in self.node_ports.items() if who != owner}

    def __call__(self, request: AdmissionRequest) -> None:
        if request.rt.plural != "services" or request.subresource:
            return
        spec, name = request.obj.setdefault("spec", {}), meta(request.obj).get("name", "")
        if request.operation == "UPDATE":
            old_spec = (request.old or {}).get("spec", {})
            if spec.get("clusterIP", old_spec.get("clusterIP")) != old_spec.get("clusterIP"):
                raise errors.invalid(
                    request.rt, name, [("spec.clusterIP", "Invalid value: field is immutable")]
                )
            spec["clusterIP"], spec["clusterIPs"] = old_spec.get("clusterIP"), old_spec.get("clusterIPs")
            return
        owner = f"{meta(request.obj).get('namespace')}/{name}"
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        request.obj["status"] = {"loadBalancer": {}}
        if request.dry_run:
            return
        if spec["type"] != "ExternalName":
            spec["clusterIP"] = self._allocate_ip(request, spec.get("clusterIP"), owner, name)
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec["type"] in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                port["nodePort"] = self._allocate_port(request, port.get("nodePort"), owner, name)

    def _allocate_ip(self, request: AdmissionRequest, wanted: str | None, owner: str, name: str) -> str:
        if wanted == "None":
            return "None"
        if wanted:
            if wanted in self.ips or ipaddress.ip_address(wanted) not in self.network:
                reason = (
                    "provided IP is already allocated"
                    if wanted in self.ips
                    else "provided IP is not in the range"
                )
                raise errors.invalid(
                    request.rt,
                    name,
                    [
                        (
                            "spec.clusterIPs",
                            f'Invalid value: []string{{"{wanted}"}}: '
                            f"failed to allocate IP {wanted}: {reason}",
                        )
                    ],
                )
            self.ips[wanted] = owner
            return wanted
        hosts = self.network.num_addresses - 2
        for _ in range(hosts):
            candidate = str(self.network.network_address + self._next_ip)
            self._next_ip = self._next_ip % hosts + 1
            if candidate not in self.ips:
                self.ips[candidate] = owner
                return candidate
        raise errors.ApiError(500, "InternalError", "range is full")

    def _allocate_port(self, request: AdmissionRequest, wanted: int | None, owner: str, name: str) -> int:
        if wanted:
            if wanted in self.node_ports:
                raise errors.invalid(
                    request.rt,
                    name,
                    [
                        (
                            "spec.ports[].nodePort",
                            f"Invalid value: {wanted}: provided port is already allocated",
                        )
                    ],
                )
            self.node_ports[wanted] = owner
            return wanted
        while self._next_port in self.node_ports:
            self._next_port += 1
        self.node_ports[self._next_port] = owner
        return self._next_port


def install(store: Store, *, service_cidr: str = "10.96.0.0/16") -> None:
    plugins: list[Callable[[AdmissionRequest], None]] = [
        validate_name,
        namespaces,
        pods,
        workloads,
        persistent_volume_claims,
        persistent_volumes,
        controller_revisions,
        ServiceAllocator(store, service_cidr),
    ]
    store.admission.extend(plugins)


__all__ = ["DEFAULT_TOLERATIONS", "ServiceAllocator", "default_pod_spec", "install"]
