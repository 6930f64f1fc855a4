"""The HTTP face of the simulator: kube-apiserver's REST paths, discovery, verbs and watch streams.

Routing is by hand rather than by route table because the path shapes depend on which types are served
at this moment (CRDs add types at run time), exactly as in kube-apiserver.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from kubesim import errors, openapi, tables
from kubesim.binding import BINDING_KIND, bind
from kubesim.errors import ApiError
from kubesim.faults import Faults, RequestInfo
from kubesim.informers import Informers
from kubesim.objects import Obj, clone, go_json
from kubesim.patches import PatchError, apply_json_patch, apply_merge_patch, apply_strategic_merge_patch
from kubesim.rbac import Attributes, Rbac, current_user
from kubesim.resources import ResourceType
from kubesim.scale import SCALE_GROUP, SCALE_KIND, SCALE_VERSION, scalable, scale_of, scaled
from kubesim.schemas import CustomResourceSchemas, field_validation, warnings
from kubesim.selectors import LabelSelector, SelectorError, parse_field_selector
from kubesim.store import Store, WatchEvent
from kubesim.versions import GIT_VERSION, minor_version

DEFAULT_WATCH_TIMEOUT = 1800.0
MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
"""kube-apiserver's limit on a write's body (twice etcd's, for JSON that etcd stores more compactly)."""
RETURNS_DELETED_OBJECT = frozenset(
    {"pods", "services", "serviceaccounts", "persistentvolumes", "persistentvolumeclaims", "storageclasses"}
)
"""Registries that answer a completed DELETE with the object; the others answer with a Status."""
_WS = re.compile(r"[ \t\n\r]*")


def raw_member(text: str, key: str) -> bytes | None:
    """The exact bytes of a top-level member of a JSON object, as the client sent them.

    kube-apiserver stores ControllerRevision `data` verbatim, and the StatefulSet controller compares it
    byte for byte; a parsed-and-re-encoded copy would hide exactly the bug tests must be able to see.
    """
    decoder = json.JSONDecoder()
    index = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[index : index + 1] != "{":
        return None
    index = _WS.match(text, index + 1).end()  # type: ignore[union-attr]
    while index < len(text) and text[index] != "}":
        member, index = decoder.raw_decode(text, index)
        index = _WS.match(text, index).end()  # type: ignore[union-attr]
        index = _WS.match(text, index + 1).end()  # type: ignore[union-attr]  # skip ':'
        _, end = decoder.raw_decode(text, index)
        if member == key:
            return text[index:end].encode()
        index = _WS.match(text, end).end()  # type: ignore[union-attr]
        if text[index : index + 1] == ",":
            index = _WS.match(text, index + 1).end()  # type: ignore[union-attr]
    return None


class ApiServer:
    """One simulated kube-apiserver over a Store."""

    def __init__(
        self,
        store: Store,
        faults: Faults,
        informers: Informers,
        schemas: CustomResourceSchemas,
        rbac: Rbac,
        *,
        git_version: str = GIT_VERSION,
    ) -> None:
        self.store = store
        self.faults = faults
        self.informers = informers
        """Only for the `/_sim/informer-lag` knob and the request log; the controllers own the lag."""
        self.schemas = schemas
        """Only for the `/_sim/crd-schemas` switch; admission enforces them."""
        self.rbac = rbac
        self.git_version = git_version
        self.address = ""
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    # ------------------------------------------------------------- encoding
    def encode(self, rt: ResourceType, obj: Obj, *, in_list: bool = False) -> bytes:
        """Typed lists omit kind/apiVersion on items for built-in types, as the real server does."""
        if in_list and not rt.custom:
            obj = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
        raw = (
            self.store.raw_data.get(obj.get("metadata", {}).get("uid", ""))
            if rt.plural == ("controllerrevisions")
            else None
        )
        if raw is None:
            return orjson.dumps(obj)
        without = orjson.dumps({k: v for k, v in obj.items() if k != "data"})
        return without[:-1] + b',"data":' + raw + b"}"

    @staticmethod
    def json_response(body: bytes, status: int = 200) -> web.Response:
        return web.Response(body=body, status=status, content_type="application/json")

    def error_response(self, error: ApiError) -> web.Response:
        response = self.json_response(orjson.dumps(error.status()), error.code)
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    # -------------------------------------------------------------- routing
    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path.startswith("/_sim"):
            return await self.handle_admin(request, path)
        info = self.describe(request, path)
        started = self.faults.started()
        code = 500
        fault = None
        try:
            if self.faults.latency_ms:
                await asyncio.sleep(self.faults.latency_ms / 1000)
            fault = self.faults.pick(info)
            if fault is not None:
                if fault.status == "timeout":
                    await asyncio.sleep(fault.timeout_seconds)
                    raise ConnectionResetError("injected timeout")
                assert isinstance(fault.status, int)
                reason = {
                    409: "Conflict",
                    429: "TooManyRequests",
                    500: "InternalError",
                    503: "ServiceUnavailable",
                    504: "Timeout",
                    403: "Forbidden",
                }.get(fault.status, "Unknown")
                raise ApiError(fault.status, reason, fault.message, retry_after=fault.retry_after)
            if self.rbac.enabled:
                self.authorize(request, path, info)
            field_validation.set(request.query.get("fieldValidation", ""))
            pending_warnings: list[str] = []
            warnings.set(pending_warnings)
            response = await self.dispatch(request, path, info)
            for warning in pending_warnings:
                response.headers.add("Warning", f"299 - {json.dumps(warning)}")
            code = response.status
            return response
        except ApiError as error:
            code = error.code
            return self.error_response(error)
        finally:
            self.faults.finished(info, started, code, fault, informer_lag=self.informers.lag)

    def authorize(self, request: web.Request, path: str, info: RequestInfo) -> None:
        """Authentication then authorization, before anything is read or admitted; the user is kept for
        admission's escalation check (this request's task only)."""
        user = self.rbac.authenticate(request.headers.get("Authorization", ""))
        resource_request = self.parse_resource_path(path) is not None
        attributes = Attributes.of(info, path, resource_request)
        if not resource_request:
            watch = request.query.get("watch") in ("1", "true")
            attributes = Attributes.from_url(request.method, path, watch) or attributes
        self.rbac.authorize(user, attributes)
        current_user.set(user)

    def describe(self, request: web.Request, path: str) -> RequestInfo:
        """Verb and target of a request, for the log and fault matching (not for dispatch)."""
        parsed = self.parse_resource_path(path)
        method = request.method
        agent = request.headers.get("User-Agent", "")
        if parsed is None:
            return RequestInfo(verb=method.lower(), resource=path, user_agent=agent)
        rt, namespace, name, sub = parsed
        if method == "GET":
            verb = "watch" if request.query.get("watch") in ("1", "true") else ("get" if name else "list")
        else:
            verb = {
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection",
            }.get(method, method.lower())
        return RequestInfo(verb, rt.group, rt.plural, sub, namespace, name, agent)

    def parse_resource_path(self, path: str) -> tuple[ResourceType, str, str, str] | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 3 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        lookup = self.store.registry.lookup
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = lookup(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = lookup(group, version, rest[0])
        if rt is None or len(rest) > 3:
            return None
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        return rt, namespace, name, sub

    async def dispatch(self, request: web.Request, path: str, info: RequestInfo) -> web.StreamResponse:
        if path.startswith("/openapi/") and request.method == "GET":
            return self.json_response(orjson.dumps(self.openapi(path)))
        discovery = self.discovery(path)
        if discovery is not None:
            if request.method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {path}")
            return self.json_response(orjson.dumps(discovery))
        parsed = self.parse_resource_path(path)
        if parsed is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rt, namespace, name, sub = parsed
        if sub and sub not in self.subresources(rt):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and not namespace and name:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and not namespace and request.method not in ("GET", "DELETE"):
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        query = request.query
        method = request.method
        if method == "GET" and info.verb == "watch":
            return await self.watch(request, rt, namespace, name)
        table_version = tables.wants_table(request.headers.get("Accept", "")) if method == "GET" else None
        if table_version and not sub:
            return self.table(rt, namespace, name, query, table_version)
        if sub == "scale":
            return await self.scale(request, rt, namespace, name, bool(query.get("dryRun")))
        if method == "GET" and name:
            return self.json_response(self.encode(rt, self.store.must_get(rt, namespace, name)))
        if method == "GET":
            return self.list(rt, namespace, query)
        dry_run = bool(query.get("dryRun"))
        if sub == "token":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {path}")
            body, _ = await self.read_body(request)
            return self.json_response(orjson.dumps(self.rbac.tokens.request(namespace, name, body)), 201)
        if sub == "binding":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {path}")
            body, _ = await self.read_body(request)
            status = bind(self.store, namespace, name, body, dry_run=dry_run)
            return self.json_response(orjson.dumps(status), 201)
        if method == "POST" and not name:
            body, text = await self.read_body(request)
            raw = raw_member(text, "data") if rt.plural == "controllerrevisions" else None
            self.check_body(rt, body, namespace)
            created = self.store.create(rt, body, namespace=namespace, dry_run=dry_run, raw_data=raw)
            return self.json_response(self.encode(rt, created), 201)
        if not name:
            if method == "DELETE":
                return self.delete_collection(rt, namespace, query, await self.delete_options(request, rt))
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {path}")
        if method == "PUT":
            body, text = await self.read_body(request)
            raw = raw_member(text, "data") if rt.plural == "controllerrevisions" else None
            self.check_body(rt, body, namespace, name)
            updated = self.store.update(rt, body, subresource=sub or None, dry_run=dry_run, raw_data=raw)
            return self.json_response(self.encode(rt, updated))
        if method == "PATCH":
            return await self.patch(request, rt, namespace, name, sub, dry_run)
        if method == "DELETE":
            return await self.delete(request, rt, namespace, name)
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {path}")

    @staticmethod
    def subresources(rt: ResourceType) -> set[str]:
        subs = {"status"} if rt.has_status else set()
        if rt.plural == "namespaces":
            subs.add("finalize")
        if rt.plural == "pods" and not rt.group:
            subs.add("binding")
        if rt.plural == "serviceaccounts" and not rt.group:
            subs.add("token")
        if scalable(rt):
            subs.add("scale")
        return subs

    @staticmethod
    async def read_body(request: web.Request) -> tuple[Any, str]:
        text = await request.text()
        if len(text) > MAX_REQUEST_BODY_BYTES:
            raise errors.request_entity_too_large(MAX_REQUEST_BODY_BYTES)
        try:
            return orjson.loads(text), text
        except orjson.JSONDecodeError as exc:
            raise errors.bad_request(f"json parse error: {exc}") from exc

    @staticmethod
    def check_body(rt: ResourceType, body: Any, namespace: str, name: str = "") -> None:
        if not isinstance(body, dict):
            raise errors.invalid(rt, name, [("body", "Invalid value: the body must be a JSON object")])
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if (kind and kind != rt.kind) or (api_version and api_version != rt.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version}) or the kind ({kind}) is not {rt.kind}"
            )
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise errors.invalid(rt, name, [("metadata", "Invalid value: must be an object")])
        metadata = metadata or {}
        if name and metadata.get("name") not in (None, name):
            raise errors.bad_request("the name of the object does not match the name on the URL")
        if name:
            body.setdefault("metadata", {})["name"] = name
            if rt.namespaced:
                if metadata.get("namespace") not in (None, "", namespace):
                    raise errors.bad_request(
                        "the namespace of the object does not match the namespace on the URL"
                    )
                body["metadata"]["namespace"] = namespace

    # ------------------------------------------------------------ discovery
    def discovery(self, path: str) -> dict[str, Any] | None:
        registry = self.store.registry
        if path == "/version":
            major, minor = minor_version(self.git_version)
            return {
                "major": str(major),
                "minor": str(minor),
                "gitVersion": self.git_version,
                "gitCommit": "kubesim",
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.22",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path in ("/healthz", "/readyz", "/livez"):
            return {"status": "ok"}
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}],
            }
        if path == "/apis":
            groups = []
            for group, versions in sorted(registry.group_versions().items()):
                if not group:
                    continue
                entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
                groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "v1"]:
            return self.resource_list("", "v1")
        if len(parts) == 2 and parts[0] == "apis":
            served = registry.group_versions().get(parts[1])
            if not served:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            entries = [{"groupVersion": f"{parts[1]}/{v}", "version": v} for v in served]
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": parts[1],
                "versions": entries,
                "preferredVersion": entries[0],
            }
        if len(parts) == 3 and parts[0] == "apis":
            if parts[2] not in registry.group_versions().get(parts[1], []):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self.resource_list(parts[1], parts[2])
        return None

    def openapi(self, path: str) -> dict[str, Any]:
        if path == "/openapi/v2":
            return openapi.v2_document(self.store, self.git_version)
        if path == "/openapi/v3":
            return openapi.v3_index(self.store)
        parts = path.removeprefix("/openapi/v3/").split("/")
        if (
            parts[:1] == ["api"]
            and len(parts) == 2
            and parts[1] in self.store.registry.group_versions().get("", [])
        ):
            return openapi.v3_document(self.store, "", parts[1])
        if (
            parts[:1] == ["apis"]
            and len(parts) == 3
            and parts[2] in self.store.registry.group_versions().get(parts[1], [])
        ):
            return openapi.v3_document(self.store, parts[1], parts[2])
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for rt in sorted(self.store.registry.in_group_version(group, version), key=lambda r: r.plural):
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            for sub in sorted(self.subresources(rt)):
                verbs = {"finalize": ["update"], "binding": ["create"], "token": ["create"]}.get(
                    sub, ["get", "patch", "update"]
                )
                entry = {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": {"binding": BINDING_KIND, "token": "TokenRequest"}.get(sub, rt.kind),
                    "verbs": verbs,
                }
                if sub == "token":
                    entry |= {"group": "authentication.k8s.io", "version": "v1"}
                if sub == "scale":
                    entry |= {"group": SCALE_GROUP, "version": SCALE_VERSION, "kind": SCALE_KIND}
                resources.append(entry)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # ------------------------------------------------------------ list/watch
    @staticmethod
    def selectors(query: Mapping[str, str]) -> tuple[LabelSelector, Any]:
        try:
            labels = LabelSelector.parse(query.get("labelSelector", ""))
            fields = parse_field_selector(query.get("fieldSelector", ""))
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        return labels, fields

    def page(
        self, rt: ResourceType, namespace: str, query: Mapping[str, str]
    ) -> tuple[list[Obj], dict[str, Any]]:
        """The objects of one list page (selectors, `limit`, `continue`) and its ListMeta."""
        labels, fields = self.selectors(query)
        limit = int(query.get("limit") or 0)
        start: tuple[str, str] | None = None
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                start = (token["ns"], token["name"])
            except (ValueError, KeyError) as exc:
                raise errors.bad_request("invalid continue token") from exc
        objects: list[Obj] = []
        filtered = not (labels.is_empty() and fields.is_empty())
        last_key: tuple[str, str] | None = None
        more = False
        for obj in self.store.iter(rt, namespace or None, start):
            metadata = obj["metadata"]
            if filtered and not (labels.matches(metadata.get("labels")) and fields.matches(obj)):
                continue
            if limit and len(objects) >= limit:
                more = True
                break
            last_key = (metadata.get("namespace", ""), metadata["name"])
            objects.append(obj)
        list_meta: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        if more and last_key is not None:
            token = {"ns": last_key[0], "name": last_key[1], "rv": self.store.resource_version}
            list_meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            if not filtered:
                list_meta["remainingItemCount"] = self.store.count_after(rt, namespace or None, last_key)
        return objects, list_meta

    def list(self, rt: ResourceType, namespace: str, query: Mapping[str, str]) -> web.Response:
        objects, list_meta = self.page(rt, namespace, query)
        chunks = [self.encode(rt, obj, in_list=True) for obj in objects]
        head = orjson.dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta})
        body = head[:-1] + b',"items":[' + b",".join(chunks) + b"]}"
        return self.json_response(body)

    def table(
        self, rt: ResourceType, namespace: str, name: str, query: Mapping[str, str], version: str
    ) -> web.Response:
        """A Table of one object or of a list page, printed as kube-apiserver prints it."""
        list_meta: dict[str, Any] = {}
        if name:
            objects = [self.store.must_get(rt, namespace, name)]
        else:
            objects, list_meta = self.page(rt, namespace, query)
        if rt.custom:
            crds = self.store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            printer = tables.crd_printer(
                self.store.get(crds, "", f"{rt.plural}.{rt.group}") or {}, rt.version
            )
        else:
            printer = tables.PRINTERS.get(rt.group_resource, tables.DEFAULT)
        include = query.get("includeObject", "Metadata")
        return self.json_response(orjson.dumps(tables.table(printer, objects, list_meta, version, include)))

    async def watch(
        self, request: web.Request, rt: ResourceType, namespace: str, name: str
    ) -> web.StreamResponse:
        query = request.query
        labels, fields = self.selectors(query)
        if name:
            fields = parse_field_selector(f"metadata.name={name}")

        def visible(obj: Obj | None) -> bool:
            if obj is None:
                return False
            metadata = obj["metadata"]
            if namespace and metadata.get("namespace") != namespace:
                return False
            return labels.matches(metadata.get("labels")) and fields.matches(obj)

        def translate(event: WatchEvent) -> tuple[str, Obj] | None:
            if event.rt != rt:
                return None
            now, before = visible(event.obj), visible(event.old)
            if event.type == "MODIFIED" and before and not now:
                return "DELETED", event.obj
            if event.type == "MODIFIED" and now and not before:
                return "ADDED", event.obj
            return (event.type, event.obj) if now else None

        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        since = query.get("resourceVersion", "")
        try:
            backlog = self.store.history_since(int(since)) if since not in ("", "0") else None
        except ValueError as exc:
            raise errors.bad_request(f"invalid resourceVersion {since!r}") from exc
        except ApiError as error:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(orjson.dumps({"type": "ERROR", "object": error.status()}) + b"\n")
            return response
        unsubscribe = self.store.subscribe(queue.put_nowait)
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        )
        await response.prepare(request)
        timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if backlog is None:
                for obj in self.store.iter(rt, namespace or None):
                    if visible(obj):
                        await self.write_event(response, rt, "ADDED", obj)
            else:
                for event in backlog:
                    translated = translate(event)
                    if translated:
                        await self.write_event(response, rt, *translated)
            while (left := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=min(left, 30.0))
                except TimeoutError:
                    if bookmarks:
                        marker = {
                            "kind": rt.kind,
                            "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": str(self.store.resource_version)},
                        }
                        await response.write(orjson.dumps({"type": "BOOKMARK", "object": marker}) + b"\n")
                    continue
                translated = translate(event)
                if translated:
                    await self.write_event(response, rt, *translated)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
        return response

    async def write_event(self, response: web.StreamResponse, rt: ResourceType, kind: str, obj: Obj) -> None:
        await response.write(b'{"type":"' + kind.encode() + b'","object":' + self.encode(rt, obj) + b"}\n")

    # ----------------------------------------------------------- mutations
    async def patch(
        self, request: web.Request, rt: ResourceType, namespace: str, name: str, sub: str, dry_run: bool
    ) -> web.Response:
        patch, _ = await self.read_body(request)
        current = self.store.must_get(rt, namespace, name)
        patched = self.patched(rt, name, current, patch, request.content_type)
        patched["metadata"]["name"], patched["metadata"]["namespace"] = name, namespace
        if not rt.namespaced:
            patched["metadata"].pop("namespace")
        raw = go_json(patched.get("data")) if rt.plural == "controllerrevisions" else None
        updated = self.store.update(rt, patched, subresource=sub or None, dry_run=dry_run, raw_data=raw)
        return self.json_response(self.encode(rt, updated))

    async def scale(
        self, request: web.Request, rt: ResourceType, namespace: str, name: str, dry_run: bool
    ) -> web.Response:
        current = self.store.must_get(rt, namespace, name)
        if request.method == "GET":
            return self.json_response(orjson.dumps(scale_of(current)))
        body, _ = await self.read_body(request)
        if request.method == "PATCH":
            body = self.patched(rt, name, scale_of(current), body, request.content_type)
        elif request.method != "PUT":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the scale")
        updated = self.store.update(rt, scaled(current, body), dry_run=dry_run)
        return self.json_response(orjson.dumps(scale_of(updated)))

    @staticmethod
    def patched(rt: ResourceType, name: str, current: Obj, patch: Any, content_type: str) -> Obj:
        """`current` with `patch` applied as `content_type` says; the 415/400/422 the apiserver answers."""
        try:
            if content_type == "application/merge-patch+json":
                patched = apply_merge_patch(clone(current), patch)
            elif content_type == "application/json-patch+json":
                patched = apply_json_patch(clone(current), patch)
            elif content_type == "application/strategic-merge-patch+json" and not rt.custom:
                patched = apply_strategic_merge_patch(clone(current), patch)
            else:
                accepted = "application/json-patch+json, application/merge-patch+json"
                if not rt.custom:
                    accepted += ", application/strategic-merge-patch+json"
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{accepted}",
                )
        except PatchError as exc:
            if exc.code == 400:
                raise errors.bad_request(str(exc)) from exc
            raise errors.invalid(rt, name, [("patch", str(exc))]) from exc
        if not isinstance(patched, dict):
            raise errors.invalid(rt, name, [("patch", "the patch must produce an object")])
        patched.setdefault("metadata", {})
        return patched

    async def delete(self, request: web.Request, rt: ResourceType, namespace: str, name: str) -> web.Response:
        options = await self.delete_options(request, rt)
        obj, removed = self.store.delete(rt, namespace, name, **options)
        if removed and rt.plural not in RETURNS_DELETED_OBJECT and not rt.custom:
            details: dict[str, Any] = {"name": name, "kind": rt.plural, "uid": obj["metadata"]["uid"]}
            if rt.group:
                details["group"] = rt.group
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
            return self.json_response(orjson.dumps(status))
        return self.json_response(self.encode(rt, obj))

    async def delete_options(self, request: web.Request, rt: ResourceType) -> dict[str, Any]:
        query = request.query
        body: dict[str, Any] = {}
        if request.can_read_body:
            text = await request.text()
            if text.strip():
                body = orjson.loads(text)
        propagation = query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = query.get("orphanDependents") or body.get("orphanDependents")
        if propagation is None and orphan in (True, "true"):
            propagation = "Orphan"
        if propagation is None and orphan is None and rt.group_resource == "jobs.batch":
            propagation = "Orphan"  # batch/v1 Jobs still default to orphaning their pods
        if propagation not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(f"unsupported propagationPolicy {propagation!r}")
        grace = query.get("gracePeriodSeconds")
        if grace is None:
            grace = body.get("gracePeriodSeconds")
        preconditions = body.get("preconditions") or {}
        return {
            "propagation": propagation,
            "grace_seconds": None if grace is None else int(grace),
            "precondition_uid": preconditions.get("uid"),
            "precondition_rv": preconditions.get("resourceVersion"),
            "dry_run": bool(query.get("dryRun") or body.get("dryRun")),
        }

    def delete_collection(
        self, rt: ResourceType, namespace: str, query: Mapping[str, str], options: dict[str, Any]
    ) -> web.Response:
        labels, fields = self.selectors(query)
        deleted = []
        for obj in self.store.list(rt, namespace or None):
            if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj):
                final, _ = self.store.delete(
                    rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], **options
                )
                deleted.append(self.encode(rt, final, in_list=True))
        head = orjson.dumps(
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
            }
        )
        return self.json_response(head[:-1] + b',"items":[' + b",".join(deleted) + b"]}")

    # ---------------------------------------------------------------- admin
    async def handle_admin(self, request: web.Request, path: str) -> web.Response:
        faults = self.faults
        if path == "/_sim/requests":
            if request.method == "DELETE":
                faults.log.clear()
                return self.json_response(b"{}")
            since = int(request.query.get("since") or 0)
            entries = [e for e in faults.log if e["seq"] > since]
            return self.json_response(orjson.dumps({"requests": entries}))
        if path == "/_sim/stats":
            stats = faults.stats() | {"informer_lag_ms": self.informers.lag * 1000}
            return self.json_response(orjson.dumps(stats))
        if path == "/_sim/rbac":
            if request.method in ("PUT", "POST"):
                self.rbac.enable(bool((await request.json())["enabled"]))
            return self.json_response(orjson.dumps({"enabled": self.rbac.enabled}))
        if path == "/_sim/crd-schemas":
            if request.method in ("PUT", "POST"):
                body = await request.json()
                self.schemas.enabled = bool(body["enabled"])
                self.schemas.validation_rules = bool(body.get("validationRules", True))
            state = {"enabled": self.schemas.enabled, "validationRules": self.schemas.validation_rules}
            return self.json_response(orjson.dumps(state))
        if path == "/_sim/informer-lag":
            if request.method in ("PUT", "POST"):
                self.informers.set_lag(float((await request.json())["seconds"]))
            return self.json_response(orjson.dumps(self.informers.describe()))
        if path == "/_sim/latency" and request.method in ("PUT", "POST"):
            faults.latency_ms = float((await request.json())["ms"])
            return self.json_response(orjson.dumps({"ms": faults.latency_ms}))
        if path == "/_sim/faults":
            if request.method == "POST":
                try:
                    rule = faults.add(**(await request.json()))
                except TypeError as exc:
                    return self.json_response(orjson.dumps({"error": str(exc)}), 400)
                return self.json_response(orjson.dumps(rule.describe()), 201)
            if request.method == "DELETE":
                faults.clear()
                return self.json_response(b"{}")
            return self.json_response(orjson.dumps({"faults": [r.describe() for r in faults.rules]}))
        if path == "/_sim/healthz":
            return self.json_response(b'{"status":"ok"}')
        return self.json_response(b'{"error":"unknown admin path"}', 404)
