"""Reaching a member cluster the way Kosmos does: through the kubeconfig its Cluster object holds.

Inside a Kosmos installation the control plane is the only thing promote is configured with; each
member's credentials live base64-encoded in `clusters.kosmos.io/<name>` `spec.kubeconfig`. Outside one
(development, or a member whose stored credentials are not usable from here) a local kubeconfig path
given for the cluster name takes precedence.

A member's credentials never touch a shared folder: the official client would write a kubeconfig's
inline CA, client certificate and key to files in /tmp kept until the process exits, so they are taken
out of the kubeconfig and loaded into the connections' TLS context from memory instead.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from urllib3.util.ssl_ import create_urllib3_context

from shared.kube.client import Kube
from shared.kube.discovery import ApiResource
from shared.kube.limits import ClusterLimits

KOSMOS_CLUSTERS = ApiResource(
    group="kosmos.io",
    version="v1alpha1",
    plural="clusters",
    kind="Cluster",
    namespaced=False,
    verbs=frozenset({"get", "list", "watch"}),
    singular="cluster",
)
"""Fixed rather than discovered: it is Kosmos' own API, and discovery would cost a round of requests."""


class MemberUnavailable(Exception):
    """The control plane does not say how to reach the member cluster (no object, or unusable kubeconfig)."""


def member_kubeconfig(control_plane: Kube, cluster_name: str) -> dict[str, Any]:
    """The member's kubeconfig, decoded from its Kosmos Cluster object in the control plane."""
    cluster = control_plane.get(KOSMOS_CLUSTERS, "", cluster_name)
    if cluster is None:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}" not found in the control plane {control_plane.name} '
            f"(see: kubectl get clusters.kosmos.io)"
        )
    encoded = (cluster.get("spec") or {}).get("kubeconfig")
    if not encoded or not isinstance(encoded, str):
        raise MemberUnavailable(f'Kosmos cluster "{cluster_name}" has no spec.kubeconfig')
    return _decode(cluster_name, encoded)


def connect_member(
    control_plane: Kube,
    cluster_name: str,
    local_kubeconfigs: Mapping[str, str] | None = None,
    *,
    pool_size: int = 32,
    limits: ClusterLimits | None = None,
) -> Kube:
    """A Kube for the member: from a local kubeconfig path given for its name, else from Kosmos."""
    local = (local_kubeconfigs or {}).get(cluster_name)
    if local:
        return Kube.from_kubeconfig(local, name=cluster_name, pool_size=pool_size, limits=limits)
    document = member_kubeconfig(control_plane, cluster_name)
    try:
        stripped, material = _without_inline_tls(document)
        if not material:
            return Kube.from_kubeconfig(document, name=cluster_name, pool_size=pool_size, limits=limits)
        configuration = client.Configuration()
        config.load_kube_config_from_dict(stripped, client_configuration=configuration, persist_config=False)
        configuration.connection_pool_maxsize = pool_size
        context = _ssl_context(configuration, material)
    except ConfigException as error:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": spec.kubeconfig is not a usable kubeconfig: {error}'
        ) from error
    except (ssl.SSLError, ValueError) as error:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": a certificate or key in spec.kubeconfig is not usable: {error}'
        ) from error
    api = client.ApiClient(configuration)
    # Every connection takes its CA and client certificate from this context, held in memory; the pool
    # must not also name files (the ones the official client would have written).
    api.rest_client.pool_manager.connection_pool_kw.update(
        ssl_context=context, ca_certs=None, ca_cert_data=None, cert_file=None, key_file=None
    )
    return Kube(api, name=cluster_name, limits=limits)


_INLINE_TLS = (
    ("cluster", "certificate-authority-data"),
    ("user", "client-certificate-data"),
    ("user", "client-key-data"),
)
"""Base64 PEM in a kubeconfig that the official client writes to files in the shared temporary folder,
left there until the process exits. A member's client key must not be: it is kept in memory instead."""


def _without_inline_tls(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A copy of the kubeconfig without the current context's inline TLS data, and that data decoded
    (`certificate-authority-data` -> PEM bytes...). Nothing taken when the context cannot be found: the
    official loader then says what is wrong with the kubeconfig."""
    stripped = copy.deepcopy(document)
    entries = {"cluster": None, "user": None}
    current = stripped.get("current-context")
    for context in stripped.get("contexts") or ():
        if isinstance(context, dict) and context.get("name") == current:
            for kind in entries:
                wanted = (context.get("context") or {}).get(kind)
                for entry in stripped.get(f"{kind}s") or ():
                    if isinstance(entry, dict) and entry.get("name") == wanted:
                        entries[kind] = entry.get(kind)
    material: dict[str, bytes] = {}
    for kind, key in _INLINE_TLS:
        entry = entries[kind]
        if isinstance(entry, dict) and entry.get(key):
            try:
                material[key] = base64.b64decode("".join(str(entry.pop(key)).split()), validate=True)
            except binascii.Error as error:
                raise ValueError(f"{key} is not valid base64") from error
    return stripped, material


def _ssl_context(configuration: client.Configuration, material: dict[str, bytes]) -> ssl.SSLContext:
    """The TLS context of every connection to the member: its CA and client certificate loaded from
    memory, whatever the kubeconfig still names by path loaded from there."""
    context = create_urllib3_context(
        cert_reqs=ssl.CERT_REQUIRED if configuration.verify_ssl else ssl.CERT_NONE
    )
    if "certificate-authority-data" in material:
        context.load_verify_locations(
            cadata=material["certificate-authority-data"].decode("ascii", "replace")
        )
    elif configuration.ssl_ca_cert:
        context.load_verify_locations(cafile=configuration.ssl_ca_cert)
    else:
        context.load_default_certs()
    certificate = material.get("client-certificate-data") or _read(configuration.cert_file)
    key = material.get("client-key-data") or _read(configuration.key_file)
    if certificate and key:
        _load_chain(context, certificate, key)
    elif certificate or key:
        raise ValueError("a client certificate needs its key and a key its certificate")
    return context


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _load_chain(context: ssl.SSLContext, certificate: bytes, key: bytes) -> None:
    """OpenSSL reads a client certificate and key only from files: anonymous memory files (memfd, never
    on a file system) where the system has them, else a private 0700 directory removed at once."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        descriptors: list[int] = []
        try:
            for pem in (certificate, key):
                descriptors.append(os.memfd_create("kpromote-member-tls"))
                _write_all(descriptors[-1], pem)
            context.load_cert_chain(*(f"/proc/self/fd/{fd}" for fd in descriptors))
            return
        except ssl.SSLError:
            raise
        except OSError:
            pass  # no memfd after all (a sandbox): the private directory below
        finally:
            for fd in descriptors:
                os.close(fd)
    with tempfile.TemporaryDirectory(prefix="kpromote-tls-") as private:  # created 0700
        paths = []
        for name, pem in (("client.crt", certificate), ("client.key", key)):
            path = os.path.join(private, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, pem)
            finally:
                os.close(fd)
            paths.append(path)
        context.load_cert_chain(*paths)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _decode(cluster_name: str, encoded: str) -> dict[str, Any]:
    """base64 of YAML or JSON (JSON is YAML); line breaks in the base64 are tolerated, as in Go."""
    try:
        text = base64.b64decode("".join(encoded.split()), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": spec.kubeconfig is not valid base64: {error}'
        ) from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": spec.kubeconfig is not a valid kubeconfig: {error}'
        ) from error
    if not isinstance(document, dict) or not document.get("clusters"):
        raise MemberUnavailable(
            f'Kosmos cluster "{cluster_name}": spec.kubeconfig is not a valid kubeconfig (it has no clusters)'
        )
    return document


def member_identity(member: Kube) -> str | None:
    """The UID of the kube-system namespace: stable for a cluster's lifetime, different in every other,
    so a run can tell that a Cluster name still points at the member it started on."""
    namespace = member.get(member.discovery.resolve("namespaces"), "", "kube-system")
    return namespace["metadata"]["uid"] if namespace else None
