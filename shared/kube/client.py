"""The one door to a Kubernetes API server: raw JSON over a shared connection pool, with retries.

Promote moves thousands of objects a minute, so objects stay plain dicts (orjson in and out) instead of
the official client's generated models, which cost more to build than the request itself and drop
fields they do not know. The official client still reads the kubeconfig, holds the credentials
(refreshing exec and OIDC tokens) and owns the TLS-configured urllib3 pool that every thread reuses.
"""

from __future__ import annotations

import builtins
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import orjson
import urllib3
import yaml
from kubernetes import client, config

from shared import metrics
from shared.kube.discovery import ApiResource, Discovery
from shared.kube.errors import KubeError, NotFound, Unreachable, error_from_response
from shared.kube.limits import ClusterLimits

log = logging.getLogger(__name__)
writes = logging.getLogger("kpromote.writes")
"""One DEBUG line per write and its outcome: what a run's own log (`shared.logs.RunLog`) keeps."""
WRITE_VERBS = {"POST": "create", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}

PatchType = Literal["merge", "json", "strategic"]
Propagation = Literal["Orphan", "Background", "Foreground"]
JSON = "application/json"
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
"""Answers that say "try again later"; 409 is not here: a conflict needs a fresh read, not a resend."""
QUOTA_NOT_YET_SYNCED = "status unknown for quota"
"""A 403 that is not a refusal: a ResourceQuota whose status its controller has not yet written refuses
every create it covers, until it has (a platform's default quota in a namespace the rebuild just made)."""
QUOTA_SYNC_WAIT = 1.0
"""Seconds between attempts while a quota's status is unknown: its controller is behind by its informers."""
USER_AGENT = "kosmos-promote"
AUTH_REFRESH = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, so that many workers hitting one overloaded server spread out."""

    attempts: int = 6
    base_delay: float = 0.05
    max_delay: float = 5.0
    max_retry_after: float = 60.0
    """Bound on a server's Retry-After, so that a misbehaving proxy cannot park a worker for hours."""

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt number `attempt` (1-based): half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


class _Transient(Exception):
    """A failed attempt worth repeating: the error to raise if it was the last, and the server's hint."""

    def __init__(self, failure: Exception, retry_after: float | None = None) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.retry_after = retry_after


def resource_path(
    res: ApiResource, namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    """`/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]`, or under `/apis/{group}/{version}`.

    A namespace given for a cluster-scoped type is ignored, so callers may pass an object's (empty)
    namespace without looking at the type first.
    """
    parts = [f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"]
    if res.namespaced and namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(res.plural)
    if name:
        parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
    return "/".join(parts)


def describe(res: ApiResource, namespace: str | None, name: str | None) -> str:
    """`deployments.apps shop/web`, as people read object names in logs and errors."""
    where = f"{namespace}/" if res.namespaced and namespace else ""
    return f"{res.group_resource} {where}{name or ''}".rstrip()


class Kube:
    """One cluster's API: thread-safe, one connection pool, retries for transient failures.

    `retries` counts every repeated request since creation, for metrics.
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        name: str,
        retry: RetryPolicy | None = None,
        request_timeout: float = 30.0,
        limits: ClusterLimits | None = None,
    ) -> None:
        self.name = name
        self.url: str = api.configuration.host.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._api = api
        self._pool: urllib3.PoolManager = api.rest_client.pool_manager
        # Threads beyond the pool size wait for a free connection instead of opening throwaway ones.
        self._pool.connection_pool_kw["block"] = True
        self._server: urllib3.HTTPConnectionPool | None = None
        self._prefix = urllib3.util.parse_url(self.url).path or ""
        """A path the server's URL may carry (an API behind a proxy path): every request's path goes below."""
        self._answers: dict[tuple[str, int], Any] = {}
        self._timeout = urllib3.Timeout(total=request_timeout)
        self._request_timeout = request_timeout
        self._limits = limits if limits is not None and limits.active else None
        self._retries = 0
        self._retries_lock = threading.Lock()
        self._auth: tuple[float, dict[str, str]] | None = None
        self._discovery = Discovery(self)

    @classmethod
    def from_kubeconfig(
        cls,
        source: str | Path | dict[str, Any],
        *,
        name: str | None = None,
        context: str | None = None,
        pool_size: int = 32,
        retry: RetryPolicy | None = None,
        request_timeout: float = 30.0,
        limits: ClusterLimits | None = None,
    ) -> Kube:
        """A Kube for a kubeconfig file path or parsed kubeconfig; `name` defaults to its cluster's name.

        Paths go to the file loader so that certificate paths relative to the file still resolve.
        """
        configuration = client.Configuration()
        if isinstance(source, dict):
            document = source
            config.load_kube_config_from_dict(
                source, context=context, client_configuration=configuration, persist_config=False
            )
        else:
            path = Path(source).expanduser()
            document = yaml.safe_load(path.read_text())
            config.load_kube_config(
                str(path), context=context, client_configuration=configuration, persist_config=False
            )
        configuration.connection_pool_maxsize = pool_size
        return cls(
            client.ApiClient(configuration),
            name=name or _cluster_name(document, context) or configuration.host,
            retry=retry,
            request_timeout=request_timeout,
            limits=limits,
        )

    def __repr__(self) -> str:
        return f"Kube(name={self.name!r}, url={self.url!r})"

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server = None
        self._api.close()
        self._pool.clear()

    @property
    def discovery(self) -> Discovery:
        return self._discovery

    @property
    def retries(self) -> int:
        return self._retries

    # ------------------------------------------------------------------ reads
    def get(self, res: ApiResource, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self._call("GET", resource_path(res, namespace, name), self._target(res, namespace, name))
        except NotFound:
            return None

    def list(
        self,
        res: ApiResource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every object of a type (in one namespace, or all), fetched a page at a time.

        Items get `apiVersion` and `kind` filled in: the server leaves them out of list items of
        built-in types, and everything downstream (backups, owner references) needs them.
        """
        query: dict[str, str | int] = {"limit": page_size}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        path, target = resource_path(res, namespace), self._target(res, namespace, None)
        while True:
            page = self._call("GET", path, target, query=query)
            for item in page.get("items") or ():
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            query["continue"] = token

    def version(self) -> dict[str, Any]:
        return self.raw_get("/version")

    def raw_get(self, path: str, query: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """GET any API path (discovery documents, /version) as parsed JSON."""
        return self._call("GET", path, f"GET {path} on {self.name}", query=query)

    # ----------------------------------------------------------------- writes
    def create(self, res: ApiResource, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create `body`, in `namespace` or else the one in its metadata; AlreadyExists if it exists."""
        return self._create(res, orjson.dumps(body), body.get("metadata") or {}, namespace)

    def replace(self, res: ApiResource, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole object; its metadata.resourceVersion makes this fail with Conflict if stale."""
        metadata = body.get("metadata") or {}
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if not name:
            raise ValueError(f"{res.group_resource}: cannot replace an object without metadata.name")
        return self._call(
            "PUT",
            resource_path(res, namespace, name),
            self._target(res, namespace, name),
            body=orjson.dumps(body),
        )

    def patch(
        self,
        res: ApiResource,
        namespace: str,
        name: str,
        patch: dict[str, Any] | builtins.list[dict[str, Any]],
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object or its subresource (e.g. `status`); `json` patches are lists of operations."""
        return self._call(
            "PATCH",
            resource_path(res, namespace, name, subresource),
            self._target(res, namespace, name),
            body=orjson.dumps(patch),
            content_type=PATCH_CONTENT_TYPES[patch_type],
        )

    def delete(
        self,
        res: ApiResource,
        namespace: str,
        name: str,
        *,
        propagation: Propagation | None = None,
        grace_seconds: int | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        """Delete an object; False when it was already gone.

        `uid` is a precondition (Conflict if the name now belongs to another object), and `Orphan`
        leaves dependents in place: both matter when deleting owners whose pods must keep running.
        `resource_version` is one too (Conflict if the object changed since it was read).
        """
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation is not None:
            options["propagationPolicy"] = propagation
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        if uid is not None or resource_version is not None:
            options["preconditions"] = {k: v for k, v in preconditions.items() if v is not None}
        try:
            self._call(
                "DELETE",
                resource_path(res, namespace, name),
                self._target(res, namespace, name),
                body=orjson.dumps(options),
            )
        except NotFound:
            return False
        return True

    # --------------------------------------------------------------- plumbing
    def _create(
        self, res: ApiResource, data: bytes, metadata: dict[str, Any], namespace: str | None
    ) -> dict[str, Any]:
        name = metadata.get("name") or metadata.get("generateName")
        namespace = namespace or metadata.get("namespace")
        if res.namespaced and not namespace:
            raise ValueError(f"{describe(res, None, name)}: no namespace given and none in metadata")
        target = self._target(res, namespace, name)
        return self._call("POST", resource_path(res, namespace), target, body=data)

    def _target(self, res: ApiResource, namespace: str | None, name: str | None) -> str:
        if name:
            return f"{describe(res, namespace, name)} on {self.name}"
        where = f" in namespace {namespace}" if res.namespaced and namespace else ""
        return f"{res.group_resource}{where} on {self.name}"

    def _call(
        self,
        method: str,
        path: str,
        target: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: bytes | None = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        """Send one request, repeating it while the failure is transient; parsed JSON of the answer."""
        url = f"{path}?{urlencode(query)}" if query else path
        attempt = 1
        # raw_get's target already starts with its method: the retry line said "GET GET /api/v1".
        what = target if target.startswith(f"{method} ") else f"{method} {target}"
        while True:
            try:
                answer = self._attempt(method, url, body, content_type, target)
            except _Transient as transient:
                if attempt >= self.retry.attempts:
                    raise _final_error(transient, attempt, target) from transient.__cause__
                self._wait_to_retry(transient, attempt, what)
            except KubeError as error:
                if method in WRITE_VERBS and writes.isEnabledFor(logging.DEBUG):
                    writes.debug("%s %s: %d %s", WRITE_VERBS[method], target, error.status, error.reason)
                raise
            else:
                if method in WRITE_VERBS and writes.isEnabledFor(logging.DEBUG):
                    writes.debug("%s %s", WRITE_VERBS[method], target)
                return answer
            attempt += 1

    def _attempt(
        self, method: str, path: str, body: bytes | None, content_type: str, target: str
    ) -> dict[str, Any]:
        try:
            with self._limits.slot() if self._limits is not None else nullcontext():
                response = self._send(
                    method,
                    path,
                    body=body,
                    headers=self._headers(content_type if body is not None else None),
                    timeout=self._timeout,
                    pool_timeout=self._request_timeout,
                    retries=False,
                    redirect=False,
                    preload_content=True,
                )
        except (urllib3.exceptions.HTTPError, OSError) as failure:
            raise _Transient(failure) from failure
        self._count(method, response.status)
        if 200 <= response.status < 300:
            return orjson.loads(response.data) if response.data else {}
        error = error_from_response(response.status, response.reason or "", response.data, target=target)
        if response.status in RETRYABLE_STATUS:
            raise _Transient(error, _retry_after(response.headers.get("Retry-After")))
        if response.status == 403 and QUOTA_NOT_YET_SYNCED in error.message:
            raise _Transient(error, QUOTA_SYNC_WAIT)
        raise error

    def _send(self, method: str, path: str, **options: Any) -> urllib3.BaseHTTPResponse:
        """One request on the server's own connection pool, found once: going through the PoolManager
        parsed the URL and looked its pool up again on every request (~35 us of a request's ~250 us of
        CPU). A proxy (a ProxyManager) decides per request how the URL is sent, so it keeps that path."""
        if isinstance(self._pool, urllib3.ProxyManager):
            return self._pool.urlopen(method, f"{self.url}{path}", **options)
        server = self._server
        if server is None:
            server = self._server = self._pool.connection_from_url(self.url)
        return server.urlopen(method, f"{self._prefix}{path}", assert_same_host=False, **options)

    def _count(self, method: str, status: int) -> None:
        """The answer in the request metric; each label set's child is looked up once, not per request."""
        child = self._answers.get((method, status))
        if child is None:
            child = self._answers[(method, status)] = metrics.API_REQUESTS.labels(
                self.name, method, str(status)
            )
        child.inc()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": JSON, "User-Agent": USER_AGENT, **self._auth_headers()}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _auth_headers(self) -> dict[str, str]:
        """Asked of the configuration at most every AUTH_REFRESH seconds, so exec, OIDC and in-cluster
        tokens are refreshed as they rotate. Not per request: the client's refresh hook re-applies the
        whole kubeconfig user (~50 us, 7 % of a request's CPU), and it renews a token five minutes before
        it expires, so a second-old answer is never an expired one."""
        now = time.monotonic()
        cached = self._auth
        if cached is not None and now - cached[0] < AUTH_REFRESH:
            return cached[1]
        headers = {
            setting["key"]: setting["value"]
            for setting in self._api.configuration.auth_settings().values()
            if setting["value"]
        }
        self._auth = (now, headers)
        return headers

    def _wait_to_retry(self, transient: _Transient, attempt: int, what: str) -> None:
        """Count the retry, then sleep for the server's Retry-After (when it sent one) or the backoff."""
        if transient.retry_after is not None:
            delay = min(transient.retry_after, self.retry.max_retry_after)
        else:
            delay = self.retry.backoff(attempt)
        with self._retries_lock:
            self._retries += 1
        metrics.API_RETRIES.labels(self.name).inc()
        log.info("retry %d/%d of %s in %.2fs: %s", attempt, self.retry.attempts, what, delay, transient)
        time.sleep(delay)


def _final_error(transient: _Transient, attempts: int, target: str) -> KubeError:
    if isinstance(transient.failure, KubeError):
        return transient.failure
    return Unreachable(f"no answer after {attempts} attempts: {transient.failure}", target=target)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; the HTTP-date form is not used by kube-apiserver."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _cluster_name(document: dict[str, Any], context: str | None) -> str | None:
    """The cluster entry's name of the context in use: how people name the cluster in kubeconfig."""
    wanted = context or document.get("current-context")
    for entry in document.get("contexts") or ():
        if entry.get("name") == wanted:
            return (entry.get("context") or {}).get("cluster")
    return None
