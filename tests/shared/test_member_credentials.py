"""Finding 4 of issue 11: a member's client key from its Kosmos Cluster object never lands in a file.

A real TLS server that requires a client certificate (made with openssl for the test) proves the
in-memory credentials work; the temporary folder is then searched for the key.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.kube import Kube
from shared.kube.connect import MemberUnavailable, connect_member

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate `member-admin`, all signed by it."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "1", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=member-admin")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject, cwd=d)  # fmt: skip
        extra = ["-extfile", "san.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", *extra, cwd=d)  # fmt: skip
    return d


@pytest.fixture
def member_server(pki: Path) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS /version that refuses clients without a certificate from the CA; yields its URL and the
    common names of the clients it served."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            seen.extend(value for rdn in peer["subject"] for key, value in rdn if key == "commonName")
            body = json.dumps({"major": "1", "minor": "29", "gitVersion": "v1.29.0"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    context.load_verify_locations(pki / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


class ControlPlane:
    """Just enough of a control-plane Kube: the Kosmos Cluster object, with the member's kubeconfig."""

    name = "control-plane"

    def __init__(self, kubeconfig: dict[str, Any]) -> None:
        self.cluster = {
            "spec": {"kubeconfig": base64.b64encode(yaml.safe_dump(kubeconfig).encode()).decode()}
        }

    def get(self, _resource: Any, _namespace: str, name: str) -> dict[str, Any] | None:
        return self.cluster if name == "member1" else None


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def member_kubeconfig(url: str, pki: Path, **user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "member1",
        "contexts": [{"name": "member1", "context": {"cluster": "member1", "user": "admin"}}],
        "clusters": [
            {
                "name": "member1",
                "cluster": {"server": url, "certificate-authority-data": _b64(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": user
                or {
                    "client-certificate-data": _b64(pki / "client.crt"),
                    "client-key-data": _b64(pki / "client.key"),
                },
            }
        ],
    }


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temporary folder, made private to the test so that it can be searched entirely."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def files_holding(folder: Path, secret: bytes) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and secret in path.read_bytes()]


def key_body(pki: Path) -> bytes:
    """A line from the middle of the private key: found in a file whatever its framing."""
    lines = (pki / "client.key").read_bytes().splitlines()
    return lines[len(lines) // 2]


def test_member_client_certificate_works_from_memory_and_no_file_holds_the_key(
    pki: Path, member_server: tuple[str, list[str]], private_tmp: Path
) -> None:
    url, seen = member_server
    control_plane = ControlPlane(member_kubeconfig(url, pki))

    with connect_member(control_plane, "member1") as member:  # type: ignore[arg-type]
        assert member.version()["gitVersion"] == "v1.29.0"
        assert seen == ["member-admin"], "the server saw the client certificate from the Cluster object"
        assert files_holding(private_tmp, key_body(pki)) == []
        assert list(private_tmp.iterdir()) == [], "not even an empty private folder is left behind"
        assert member.version()["gitVersion"] == "v1.29.0"  # a later request still has the credentials
    assert files_holding(private_tmp, key_body(pki)) == []


def test_the_search_would_find_the_key_the_official_client_writes(
    pki: Path, member_server: tuple[str, list[str]], private_tmp: Path
) -> None:
    """The control: the official client's loader, used before, leaves the key in the temporary folder."""
    url, _ = member_server
    with Kube.from_kubeconfig(member_kubeconfig(url, pki), name="member1"):
        assert files_holding(private_tmp, key_body(pki)), "the check above would have caught the old way"


def test_the_private_folder_fallback_leaves_nothing_either(
    pki: Path, member_server: tuple[str, list[str]], private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where memfd is missing, the certificate and key go through a 0700 folder removed at once."""
    import os

    monkeypatch.delattr(os, "memfd_create", raising=False)
    url, seen = member_server
    with connect_member(ControlPlane(member_kubeconfig(url, pki)), "member1") as member:  # type: ignore[arg-type]
        assert member.version()["gitVersion"] == "v1.29.0" and seen == ["member-admin"]
    assert list(private_tmp.iterdir()) == []


def test_unusable_certificate_data_is_a_member_unavailable(pki: Path, private_tmp: Path) -> None:
    kubeconfig = member_kubeconfig(
        "https://127.0.0.1:1",
        pki,
        **{"client-certificate-data": _b64(pki / "client.crt"), "client-key-data": "bm90IGEga2V5"},
    )
    with pytest.raises(MemberUnavailable, match=r"certificate or key in spec\.kubeconfig is not usable"):
        connect_member(ControlPlane(kubeconfig), "member1")  # type: ignore[arg-type]
    assert list(private_tmp.iterdir()) == []
