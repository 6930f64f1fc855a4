"""ServiceAccount tokens: the TokenRequest API (`serviceaccounts/NAME/token`) and their authentication.

Components run in a cluster with a projected ServiceAccount token; tests that run each component with
exactly the permissions deploy/ ships need such tokens. Tokens are JWTs shaped like kube-apiserver's
bound tokens (issuer, subject `system:serviceaccount:NS:NAME`, audiences, expiry, the `kubernetes.io`
claim with the account's uid), signed with HS256 by a key private to the simulated cluster instead of
the real RS256 key. A token stops working when it expires or when its ServiceAccount is deleted (or
re-created with another uid), as bound tokens do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from kubesim import errors
from kubesim.objects import Obj, now_rfc3339
from kubesim.store import Store

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600


@dataclass(frozen=True)
class User:
    """An authenticated user as the authorizer sees it."""

    name: str
    groups: tuple[str, ...]


ADMIN = User("kubesim-admin", ("system:masters", "system:authenticated"))
"""Who the kubeconfig's token is: a member of system:masters, which RBAC never refuses."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Issues and verifies the bound ServiceAccount tokens of one cluster."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._key = secrets.token_bytes(32)

    def _sign(self, signing_input: str) -> str:
        return _b64(hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest())

    def request(self, namespace: str, name: str, body: Any) -> Obj:
        """`POST serviceaccounts/NAME/token`: a TokenRequest answered with its status.token."""
        accounts = self.store.type("", "v1", "serviceaccounts")
        account = self.store.must_get(accounts, namespace, name)
        spec = dict((body or {}).get("spec") or {}) if isinstance(body, dict) else {}
        expiration = int(spec.get("expirationSeconds") or DEFAULT_EXPIRATION)
        if expiration < MIN_EXPIRATION:
            raise errors.invalid_kind(
                "TokenRequest",
                name,
                [
                    (
                        "spec.expirationSeconds",
                        f"Invalid value: {expiration}: may not specify a duration less than 10 minutes",
                    )
                ],
                "authentication.k8s.io",
            )
        audiences = list(spec.get("audiences") or [ISSUER])
        issued = int(time.time())
        claims = {
            "aud": audiences,
            "exp": issued + expiration,
            "iat": issued,
            "iss": ISSUER,
            "nbf": issued,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": account["metadata"]["uid"]},
            },
        }
        header = _b64(json.dumps({"alg": "HS256", "kid": "kubesim"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = f"{header}.{payload}.{self._sign(f'{header}.{payload}')}"
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": None},
            "status": {"token": token, "expirationTimestamp": now_rfc3339(expiration)},
        }

    def authenticate(self, token: str) -> User | None:
        """The ServiceAccount a token of ours names, if it is valid now; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or not hmac.compare_digest(parts[2], self._sign(f"{parts[0]}.{parts[1]}")):
            return None
        claims = json.loads(_unb64(parts[1]))
        if claims.get("exp", 0) < time.time():
            return None
        bound = claims.get("kubernetes.io") or {}
        namespace, account = bound.get("namespace", ""), bound.get("serviceaccount") or {}
        accounts = self.store.type("", "v1", "serviceaccounts")
        current = self.store.get(accounts, namespace, account.get("name", ""))
        if current is None or current["metadata"]["uid"] != account.get("uid"):
            return None
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")
        return User(f"system:serviceaccount:{namespace}:{account['name']}", groups)
