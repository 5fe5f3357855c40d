#!/usr/bin/env python3
"""A Kubernetes API emulator for the local test stack, built on PyPI `kmock` 0.8.

kmock's `KubernetesEmulator` keeps objects in memory and serves list/get/create/patch/delete/
watch, but it has no server command and several gaps that break the Rust `kube` client: no
resourceVersion, no PUT, no creation by server-side apply, label selectors ignored, 404s whose
reason is "Object Not Found" (kube's `get_opt` wants `NotFound`), the core group reported as
`/v1`, no status or scale subresources. This runner keeps kmock's HTTP server, request
recording and discovery scaffold, and replaces the object semantics with the rules below.

Objects and versions
  * Every write gets a new cluster-wide resourceVersion (monotonic integers as strings); lists
    carry the current one in `metadata.resourceVersion`. A write that changes nothing keeps the
    object's resourceVersion and sends no watch event.
  * Create fills `metadata.uid`, `creationTimestamp`, `generation: 1`, `namespace`, honours
    `generateName`; `generation` grows when anything outside metadata and status changes.
  * Resources with a status subresource (pods, PVCs, namespaces, the custom resources): writes
    to the main endpoint keep the stored `.status`; writes to `/status` change only `.status`.
  * Merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch (treated as a merge
    patch), server-side apply (creates the object if absent; fields this field manager applied
    before and left out now are removed; lists are replaced whole; no conflicts between
    managers), PUT replace (409 Conflict on a stale resourceVersion), delete (returns the last
    state; with finalizers it only sets deletionTimestamp), deletecollection, dryRun=All.
  * Watch: `?watch=true` replays events after `resourceVersion` (410 Expired beyond the kept
    history), or sends ADDED for every object when it is empty or "0"; `sendInitialEvents=true`
    ends the initial events with the `k8s.io/initial-events-end` bookmark; BOOKMARK events every
    15 s with `allowWatchBookmarks`; ends after `timeoutSeconds`. Label and field selectors
    filter lists, watches and deletecollection.
  * Errors are `Status` objects with the real reasons (NotFound, AlreadyExists, Conflict,
    BadRequest, Invalid, MethodNotAllowed, Expired).
  * `pods/NAME/eviction` (POST) deletes the pod; `kafkanodepools/NAME/scale` reads and writes
    `spec.replicas` as an `autoscaling/v1` Scale.
  * CustomResourceDefinitions: creating, applying or deleting one registers or removes its
    resource; the fixtures' CRDs register the Strimzi and autopilot resources at start.

Test endpoints (not Kubernetes): `POST /_test/reset` puts the fixtures back (every current
object is deleted, then the fixtures are created anew, with watch events for both);
`GET /_test/objects` dumps everything; `GET /healthz`, `/readyz`, `/livez` answer `ok`.

    kube_emulator.py --fixtures DIR [--files-dir DIR] [--host 127.0.0.1] [--port 18080]

Fixture files (*.yaml, several documents each) may contain `{{now}}` (the load time, RFC 3339)
and `{{b64file:NAME}}` (the base64 of the file NAME in --files-dir).
"""
import argparse
import asyncio
import base64
import collections
import copy
import datetime
import json
import os
import pathlib
import random
import re
import signal
import string
import sys
import uuid

import aiohttp.web
import jsonpatch
import kmock
import yaml
from kmock._internal import rendering

HISTORY = 50000  # watch events kept for resourceVersion replays


# --------------------------------------------------------------------------------------------
# Resource types

class RType:
    def __init__(self, group, plural, kind, namespaced, versions, subresources=(), singular=None,
                 short_names=(), categories=(), scale=None, builtin=True):
        self.group = group
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.versions = list(versions)  # served; the first is where it is stored
        self.subresources = set(subresources)
        self.singular = singular or kind.lower()
        self.short_names = list(short_names)
        self.categories = list(categories)
        self.scale = scale  # {specReplicasPath, statusReplicasPath, labelSelectorPath}
        self.builtin = builtin

    @property
    def key(self):
        return (self.group, self.plural)

    def api_version(self, version=None):
        v = version or self.versions[0]
        return f"{self.group}/{v}" if self.group else v

    def qualified(self):
        return f"{self.plural}.{self.group}" if self.group else self.plural


VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

BUILTIN = [
    RType("", "namespaces", "Namespace", False, ["v1"], {"status"}, short_names=["ns"]),
    RType("", "pods", "Pod", True, ["v1"], {"status", "eviction"}, short_names=["po"], categories=["all"]),
    RType("", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["v1"], {"status"}, short_names=["pvc"]),
    RType("", "secrets", "Secret", True, ["v1"]),
    RType("", "configmaps", "ConfigMap", True, ["v1"], short_names=["cm"]),
    RType("", "events", "Event", True, ["v1"], short_names=["ev"]),
    RType("", "nodes", "Node", False, ["v1"], {"status"}, short_names=["no"]),
    RType("coordination.k8s.io", "leases", "Lease", True, ["v1"]),
    RType("events.k8s.io", "events", "Event", True, ["v1"], short_names=["ev"]),
    RType("apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinition", False, ["v1"],
          {"status"}, short_names=["crd", "crds"]),
]

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


def rtype_from_crd(crd):
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    if not spec.get("group") or not names.get("plural") or not names.get("kind") or not versions:
        return None
    versions.sort(key=lambda v: not v.get("storage", False))  # the stored version first
    sub = versions[0].get("subresources") or {}
    subresources = set()
    if "status" in sub:
        subresources.add("status")
    if "scale" in sub:
        subresources.add("scale")
    return RType(spec["group"], names["plural"], names["kind"], spec.get("scope", "Namespaced") == "Namespaced",
                 [v["name"] for v in versions], subresources, singular=names.get("singular"),
                 short_names=names.get("shortNames") or [], categories=names.get("categories") or [],
                 scale=sub.get("scale"), builtin=False)


# --------------------------------------------------------------------------------------------
# Helpers

def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code, reason, message, details=None, status="Failure"):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status,
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def response(self):
        return aiohttp.web.json_response(status_body(self.code, self.reason, self.message, self.details),
                                         status=self.code)


def not_found(rt, name):
    return ApiError(404, "NotFound", f'{rt.qualified()} "{name}" not found',
                    {"name": name, "group": rt.group, "kind": rt.plural})


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def leaf_paths(d, prefix=()):
    """Paths of the leaves of nested dicts (lists and scalars are leaves)."""
    if isinstance(d, dict) and d:
        for k, v in d.items():
            yield from leaf_paths(v, prefix + (k,))
    else:
        yield prefix


def get_path(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None, False
        d = d[p]
    return d, True


def del_path(d, path):
    parents = []
    for p in path[:-1]:
        if not isinstance(d, dict) or p not in d:
            return
        parents.append((d, p))
        d = d[p]
    if isinstance(d, dict):
        d.pop(path[-1], None)
    for parent, p in reversed(parents):  # drop the dicts this left empty
        if parent[p] == {}:
            del parent[p]
        else:
            break


def split_top(s):
    """Split a selector on commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [t.strip() for t in out if t.strip()]


def parse_label_selector(s):
    reqs = []
    for term in split_top(s or ""):
        m = re.fullmatch(r"([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(1), m.group(2), vals))
        elif re.fullmatch(r"!\s*[A-Za-z0-9_./-]+", term):
            reqs.append((term[1:].strip(), "!exists", None))
        elif "!=" in term:
            k, v = term.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in term:
            k, v = term.split("==", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif "=" in term:
            k, v = term.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif re.fullmatch(r"[A-Za-z0-9_./-]+", term):
            reqs.append((term, "exists", None))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for k, op, v in reqs:
        if op == "=" and labels.get(k) != v:
            return False
        if op == "!=" and labels.get(k) == v:
            return False
        if op == "in" and labels.get(k) not in v:
            return False
        if op == "notin" and k in labels and labels[k] in v:
            return False
        if op == "exists" and k not in labels:
            return False
        if op == "!exists" and k in labels:
            return False
    return True


def parse_field_selector(s):
    reqs = []
    for term in split_top(s or ""):
        for op in ("!=", "==", "="):
            if op in term:
                k, v = term.split(op, 1)
                reqs.append((k.strip(), "!=" if op == "!=" else "=", v.strip()))
                break
        else:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
    return reqs


def field_str(obj, path):
    val, ok = get_path(obj, tuple(path.split(".")))
    if not ok or val is None:
        return ""
    if isinstance(val, bool):
        return "true" if val else "false"
    return str(val)


def fields_match(reqs, obj):
    for k, op, v in reqs:
        got = field_str(obj, k)
        if (op == "=") != (got == v):
            return False
    return True


def strip_for_compare(obj):
    o = copy.deepcopy(obj)
    o.get("metadata", {}).pop("resourceVersion", None)
    o.get("metadata", {}).pop("managedFields", None)
    return o


def spec_part(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


# --------------------------------------------------------------------------------------------
# The emulator

class StackEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the object semantics replaced (see the module docstring)."""

    def setup(self, fixtures_dir, files_dir):
        self.fixtures_dir = fixtures_dir
        self.files_dir = files_dir
        self.types = {}  # (group, plural) -> RType
        self.store = {}  # (group, plural) -> {(namespace, name): obj}
        self.applied = {}  # (group, plural, ns, name, scope, manager) -> last applied config
        self.rv = 0
        self.events = collections.deque(maxlen=HISTORY)  # (rv, key, type, obj, old)
        self.first_kept_rv = 0  # events with a larger rv are all kept
        self.wake = asyncio.get_running_loop().create_future()
        self.closing = False
        for rt in BUILTIN:
            self.types[rt.key] = rt
        self.load_fixtures()

    # ---- bookkeeping -------------------------------------------------------------------------

    def next_rv(self):
        self.rv += 1
        return self.rv

    def publish(self, key, etype, obj, old=None):
        if len(self.events) == self.events.maxlen:
            self.first_kept_rv = self.events[0][0]
        self.events.append((int(obj["metadata"]["resourceVersion"]), key, etype, copy.deepcopy(obj),
                            copy.deepcopy(old) if old is not None else None))
        if not self.wake.done():
            self.wake.set_result(None)
        self.wake = asyncio.get_running_loop().create_future()

    def lookup(self, group, version, plural):
        rt = self.types.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def render(self, rt, obj, version):
        o = copy.deepcopy(obj)
        o["apiVersion"] = rt.api_version(version)
        o["kind"] = rt.kind
        return o

    # ---- CRDs --------------------------------------------------------------------------------

    def crd_changed(self, crd, deleted=False):
        rt = rtype_from_crd(crd)
        if rt is None:
            return
        old = self.types.get(rt.key)
        if old is not None and old.builtin:
            return  # never let a CRD shadow a built-in resource
        if deleted:
            self.types.pop(rt.key, None)
            for (ns, name), obj in list(self.store.get(rt.key, {}).items()):
                self.store[rt.key].pop((ns, name))
                obj = copy.deepcopy(obj)
                obj["metadata"]["resourceVersion"] = str(self.next_rv())
                self.publish(rt.key, "DELETED", obj)
        else:
            self.types[rt.key] = rt

    # ---- fixtures ----------------------------------------------------------------------------

    def fixture_objects(self):
        now = now_rfc3339()

        def b64file(m):
            p = pathlib.Path(self.files_dir or ".") / m.group(1)
            return base64.b64encode(p.read_bytes()).decode()

        def fill(v):  # placeholders in string values only (not in comments)
            if isinstance(v, dict):
                return {k: fill(x) for k, x in v.items()}
            if isinstance(v, list):
                return [fill(x) for x in v]
            if isinstance(v, str):
                return re.sub(r"\{\{b64file:([^}]+)\}\}", b64file, v.replace("{{now}}", now))
            return v

        docs = []
        for path in sorted(pathlib.Path(self.fixtures_dir).glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if doc:
                    docs.append(fill(doc))
        return docs

    def load_fixtures(self):
        n = 0
        docs = self.fixture_objects()
        docs.sort(key=lambda d: d.get("kind") != "CustomResourceDefinition")  # CRDs first
        for doc in docs:
            api_version = doc.get("apiVersion", "v1")
            group, _, version = api_version.rpartition("/")
            rt = next((t for t in self.types.values()
                       if t.group == group and t.kind == doc.get("kind") and version in t.versions), None)
            if rt is None:
                raise SystemExit(f"kube_emulator: fixture {doc.get('kind')} {api_version} has no served resource")
            ns = doc.get("metadata", {}).get("namespace") if rt.namespaced else None
            if rt.namespaced and not ns:
                ns = "default"
            self.create(rt, ns, doc, keep_status=True)
            n += 1
        return n

    def reset(self):
        for key in list(self.store):
            for (ns, name) in list(self.store[key]):
                obj = self.store[key].pop((ns, name))
                obj["metadata"]["resourceVersion"] = str(self.next_rv())
                self.publish(key, "DELETED", obj)
        self.applied.clear()
        self.types = {rt.key: rt for rt in BUILTIN}
        return self.load_fixtures()

    # ---- object operations (synchronous: no await between read and write) -----------------

    def create(self, rt, ns, body, keep_status=False, dry_run=False):
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was not a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace") and ns and meta["namespace"] != ns:
                raise ApiError(400, "BadRequest",
                               "the namespace of the provided object does not match the namespace sent on the request")
            ns = ns or meta.get("namespace") or "default"
            meta["namespace"] = ns
        else:
            ns = None
            meta.pop("namespace", None)
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            meta["name"] = name
        if not name:
            raise ApiError(422, "Invalid", f"{rt.kind} is invalid: metadata.name: Required value: name or generateName is required",
                           {"kind": rt.kind, "group": rt.group})
        objs = self.store.setdefault(rt.key, {})
        if (ns, name) in objs:
            raise ApiError(409, "AlreadyExists", f'{rt.qualified()} "{name}" already exists',
                           {"name": name, "group": rt.group, "kind": rt.plural})
        if "status" in rt.subresources and not keep_status:
            obj.pop("status", None)
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        obj["apiVersion"] = rt.api_version()
        obj["kind"] = rt.kind
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return obj
        meta["resourceVersion"] = str(self.next_rv())
        objs[(ns, name)] = obj
        self.publish(rt.key, "ADDED", obj)
        if rt.key == CRD_KEY:
            self.crd_changed(obj)
        return obj

    def get(self, rt, ns, name):
        obj = self.store.get(rt.key, {}).get((ns if rt.namespaced else None, name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def commit(self, rt, ns, name, old, new, scope, dry_run=False):
        """Store `new` as the next state of `old`, keeping what the client may not change."""
        if not isinstance(new, dict):
            raise ApiError(400, "BadRequest", "the object is not a JSON object")
        new = copy.deepcopy(new)
        if scope == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif "status" in rt.subresources:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest",
                           f'the name of the object ({meta.get("name")}) does not match the name on the URL ({name})')
        if rt.namespaced and meta.get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest",
                           "the namespace of the provided object does not match the namespace sent on the request")
        ometa = old["metadata"]
        for k in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                  "deletionGracePeriodSeconds"):
            if k in ometa:
                meta[k] = ometa[k]
            else:
                meta.pop(k, None)
        meta.pop("managedFields", None)
        meta["resourceVersion"] = ometa["resourceVersion"]
        new["apiVersion"] = rt.api_version()
        new["kind"] = rt.kind
        if strip_for_compare(new) == strip_for_compare(old):
            return old  # nothing changed: no new resourceVersion, no event
        if spec_part(new) != spec_part(old):
            meta["generation"] = int(ometa.get("generation", 1)) + 1
        if dry_run:
            return new
        meta["resourceVersion"] = str(self.next_rv())
        key = (ns if rt.namespaced else None, name)
        self.store[rt.key][key] = new
        self.publish(rt.key, "MODIFIED", new, old)
        if rt.key == CRD_KEY:
            self.crd_changed(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.remove(rt, key)
        return new

    def remove(self, rt, key):
        obj = self.store[rt.key].pop(key)
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.next_rv())
        self.publish(rt.key, "DELETED", obj)
        for akey in [k for k in self.applied if k[:4] == (rt.group, rt.plural, key[0], key[1])]:
            del self.applied[akey]
        if rt.key == CRD_KEY:
            self.crd_changed(obj, deleted=True)
        return obj

    def delete(self, rt, ns, name, options, dry_run=False):
        old = self.get(rt, ns, name)
        pre = (options or {}).get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
            raise ApiError(409, "Conflict", f'Precondition failed: UID in precondition: {pre["uid"]}, UID in object meta: {old["metadata"].get("uid")}')
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"].get("resourceVersion"):
            raise ApiError(409, "Conflict", f'Precondition failed: ResourceVersion in precondition: {pre["resourceVersion"]}, ResourceVersion in meta: {old["metadata"].get("resourceVersion")}')
        if dry_run:
            return old
        key = (ns if rt.namespaced else None, name)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = str(self.next_rv())
            self.store[rt.key][key] = new
            self.publish(rt.key, "MODIFIED", new, old)
            return new
        return self.remove(rt, key)

    def check_rv(self, rt, name, old, body):
        rv = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {rt.qualified()} "{name}": the object has been modified; '
                           f"please apply your changes to the latest version and try again",
                           {"name": name, "group": rt.group, "kind": rt.plural})

    def apply(self, rt, ns, name, scope, body, manager, dry_run=False):
        if not manager:
            raise ApiError(400, "BadRequest", "PATCH, application/apply-patch+yaml requires fieldManager to be set")
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the apply configuration is not an object")
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest",
                           f'the name of the object ({meta.get("name")}) does not match the name on the URL ({name})')
        akey = (rt.group, rt.plural, ns if rt.namespaced else None, name, scope, manager)
        existing = self.store.get(rt.key, {}).get((ns if rt.namespaced else None, name))
        config = copy.deepcopy(body)
        config.pop("apiVersion", None)
        config.pop("kind", None)
        if existing is None:
            if scope != "main":
                raise not_found(rt, name)
            body = copy.deepcopy(body)
            body.setdefault("metadata", {})["name"] = name
            obj = self.create(rt, ns, body, dry_run=dry_run)
            if not dry_run:
                self.applied[akey] = config
            return obj, 201
        self.check_rv(rt, name, existing, body)
        new = copy.deepcopy(existing)
        previous = self.applied.get(akey) or {}
        for path in leaf_paths(previous):
            if not path or path[0] in ("apiVersion", "kind") or path[:2] in (("metadata", "name"), ("metadata", "namespace")):
                continue
            still, _ = get_path(config, path)
            if still is None:
                was, _ = get_path(previous, path)
                cur, ok = get_path(new, path)
                if ok and cur == was:
                    del_path(new, path)
        cfg = copy.deepcopy(config)
        cfg.get("metadata", {}).pop("resourceVersion", None)
        new = merge_patch(new, cfg)
        obj = self.commit(rt, ns, name, existing, new, scope, dry_run=dry_run)
        if not dry_run:
            self.applied[akey] = config
        return obj, 200

    # ---- HTTP --------------------------------------------------------------------------------

    async def __call__(self, raw_request):
        """kmock's entry point, minus its crash on a few valid URLs (e.g. GET /api/v1/namespaces)."""
        await raw_request.read()
        try:
            request = await rendering.Request._parse(raw_request, id=len(self._requests))
        except Exception:  # kmock's path parser; this emulator parses resource paths itself
            request = rendering.Request(id=len(self._requests), raw_request=raw_request, url=raw_request.url,
                                        method=raw_request.method, params=dict(raw_request.query),
                                        headers=dict(raw_request.headers), body=await raw_request.read(),
                                        text=await raw_request.text())
        self._requests.append(request)
        return await self._handle(request)

    async def _handle(self, request):
        if len(self._requests) > 2000:  # kmock records every request; keep memory bounded
            del self._requests[:-200]
        raw = request._raw_request
        try:
            path = raw.path
            if path.startswith("/_test/"):
                return await self.serve_test(raw, path)
            if path in ("/healthz", "/readyz", "/livez"):
                return aiohttp.web.Response(text="ok")
            parsed = parse_path(path)
            if parsed is None:
                try:
                    return await super(kmock.KubernetesEmulator, self)._handle(request)
                except kmock.KubernetesError as e:
                    raise ApiError(e.status, "NotFound", "the server could not find the requested resource")
            return await self.serve_resource(raw, request, parsed)
        except ApiError as e:
            return e.response()
        except Exception as e:  # a bug here must still answer as Kubernetes would
            import traceback
            traceback.print_exc()
            return ApiError(500, "InternalError", f"{type(e).__name__}: {e}").response()

    async def serve_test(self, raw, path):
        if path == "/_test/reset" and raw.method == "POST":
            n = self.reset()
            body = status_body(200, "", f"reset to {n} fixture objects", status="Success")
            body["objects"] = n
            return aiohttp.web.json_response(body)
        if path == "/_test/objects" and raw.method == "GET":
            out = []
            for key, objs in self.store.items():
                rt = self.types.get(key)
                for obj in objs.values():
                    out.append(obj)
            return aiohttp.web.json_response({"resourceVersion": str(self.rv), "items": out})
        raise ApiError(404, "NotFound", "unknown test endpoint")

    async def serve_resource(self, raw, request, p):
        group, version, ns, plural, name, sub = p
        rt = self.lookup(group, version, plural)
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           {"group": group, "kind": plural})
        if not rt.namespaced:
            if ns is not None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
        q = raw.query
        dry_run = q.get("dryRun") == "All"
        method = raw.method
        if sub is not None and (sub not in rt.subresources or name is None):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        watch = q.get("watch") in ("true", "1")

        if method == "GET" and (watch or name is None):
            if watch:
                return await self.serve_watch(raw, rt, version, ns, name, q)
            return self.serve_list(rt, version, ns, q)
        if name is None:
            if method == "POST":
                body = parse_body(raw, request)
                obj = self.create(rt, ns, body, dry_run=dry_run)
                return aiohttp.web.json_response(self.render(rt, obj, version), status=201)
            if method == "DELETE":
                return self.serve_delete_collection(rt, version, ns, q, dry_run)
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")

        if sub == "eviction":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            self.get(rt, ns, name)
            if not dry_run:
                self.delete(rt, ns, name, {})
            return aiohttp.web.json_response(status_body(201, "", "", status="Success"), status=201)
        if sub == "scale":
            return self.serve_scale(raw, request, rt, ns, name, dry_run)
        scope = sub or "main"

        if method == "GET":
            return aiohttp.web.json_response(self.render(rt, self.get(rt, ns, name), version))
        if method == "PUT":
            body = parse_body(raw, request)
            old = self.get(rt, ns, name)
            self.check_rv(rt, name, old, body)
            obj = self.commit(rt, ns, name, old, body, scope, dry_run=dry_run)
            return aiohttp.web.json_response(self.render(rt, obj, version))
        if method == "PATCH":
            ctype = raw.headers.get("Content-Type", "").split(";")[0].strip().lower()
            body = parse_body(raw, request)
            if ctype == "application/apply-patch+yaml":
                obj, code = self.apply(rt, ns, name, scope, body, q.get("fieldManager"), dry_run=dry_run)
                return aiohttp.web.json_response(self.render(rt, obj, version), status=code)
            old = self.get(rt, ns, name)
            if ctype == "application/json-patch+json":
                if not isinstance(body, list):
                    raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
                try:
                    new = jsonpatch.apply_patch(old, body)
                except jsonpatch.JsonPatchTestFailed as e:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}")
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}")
            elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json", "application/json"):
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
                self.check_rv(rt, name, old, body)
                new = merge_patch(old, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                               f"accepted media types include: application/json-patch+json, application/merge-patch+json, "
                               f"application/apply-patch+yaml")
            obj = self.commit(rt, ns, name, old, new, scope, dry_run=dry_run)
            return aiohttp.web.json_response(self.render(rt, obj, version))
        if method == "DELETE" and scope == "main":
            body = parse_body(raw, request, required=False) or {}
            if isinstance(body, dict) and body.get("dryRun") == ["All"]:
                dry_run = True
            obj = self.delete(rt, ns, name, body if isinstance(body, dict) else {}, dry_run=dry_run)
            return aiohttp.web.json_response(self.render(rt, obj, version))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def selected(self, rt, ns, q, name=None):
        lsel = parse_label_selector(q.get("labelSelector", ""))
        fsel = parse_field_selector(q.get("fieldSelector", ""))
        if name is not None:
            fsel.append(("metadata.name", "=", name))
        return lsel, fsel

    def matches(self, rt, ns, sel, obj):
        lsel, fsel = sel
        meta = obj.get("metadata", {})
        if rt.namespaced and ns is not None and meta.get("namespace") != ns:
            return False
        return labels_match(lsel, meta.get("labels")) and fields_match(fsel, obj)

    def serve_list(self, rt, version, ns, q):
        sel = self.selected(rt, ns, q)
        items = [self.render(rt, o, version) for (ons, oname), o in sorted(self.store.get(rt.key, {}).items(),
                                                                                 key=lambda kv: (kv[0][0] or "", kv[0][1]))
                 if self.matches(rt, ns, sel, o)]
        return aiohttp.web.json_response({"kind": f"{rt.kind}List", "apiVersion": rt.api_version(version),
                                          "metadata": {"resourceVersion": str(self.rv)}, "items": items})

    def serve_delete_collection(self, rt, version, ns, q, dry_run):
        sel = self.selected(rt, ns, q)
        out = []
        for (ons, oname), o in list(self.store.get(rt.key, {}).items()):
            if self.matches(rt, ns, sel, o):
                out.append(self.render(rt, self.delete(rt, ons, oname, {}, dry_run=dry_run), version))
        return aiohttp.web.json_response({"kind": f"{rt.kind}List", "apiVersion": rt.api_version(version),
                                          "metadata": {"resourceVersion": str(self.rv)}, "items": out})

    def scale_of(self, rt, obj):
        sc = rt.scale or {}
        spec_path = tuple(sc.get("specReplicasPath", ".spec.replicas").lstrip(".").split("."))
        status_path = tuple(sc.get("statusReplicasPath", ".status.replicas").lstrip(".").split("."))
        sel_path = tuple(sc.get("labelSelectorPath", ".status.labelSelector").lstrip(".").split("."))
        meta = obj["metadata"]
        scale = {"kind": "Scale", "apiVersion": "autoscaling/v1",
                 "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                              if k in meta},
                 "spec": {"replicas": get_path(obj, spec_path)[0] or 0},
                 "status": {"replicas": get_path(obj, status_path)[0] or 0}}
        selector = get_path(obj, sel_path)[0]
        if selector:
            scale["status"]["selector"] = selector
        return scale, spec_path

    def serve_scale(self, raw, request, rt, ns, name, dry_run):
        old = self.get(rt, ns, name)
        scale, spec_path = self.scale_of(rt, old)
        if raw.method == "GET":
            return aiohttp.web.json_response(scale)
        if raw.method not in ("PUT", "PATCH"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        body = parse_body(raw, request)
        ctype = raw.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if raw.method == "PATCH" and ctype == "application/json-patch+json":
            new_scale = jsonpatch.apply_patch(scale, body)
        elif isinstance(body, dict):
            self.check_rv(rt, name, old, body)
            new_scale = merge_patch(scale, body) if raw.method == "PATCH" else body
        else:
            raise ApiError(400, "BadRequest", "invalid Scale")
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", "Scale.autoscaling \"%s\" is invalid: spec.replicas: Invalid value" % name)
        new = copy.deepcopy(old)
        d = new
        for p in spec_path[:-1]:
            d = d.setdefault(p, {})
        d[spec_path[-1]] = replicas
        obj = self.commit(rt, ns, name, old, new, "main", dry_run=dry_run)
        return aiohttp.web.json_response(self.scale_of(rt, obj)[0])

    async def serve_watch(self, raw, rt, version, ns, name, q):
        sel = self.selected(rt, ns, q, name=name)
        rv_param = q.get("resourceVersion", "")
        try:
            timeout = float(q.get("timeoutSeconds", "1800"))
        except ValueError:
            raise ApiError(400, "BadRequest", "invalid timeoutSeconds")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        initial = q.get("sendInitialEvents") in ("true", "1")
        if rv_param not in ("", "0"):
            try:
                since = int(rv_param)
            except ValueError:
                raise ApiError(400, "BadRequest", f"invalid resourceVersion {rv_param!r}")
        else:
            since = None

        resp = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(raw)

        async def send(etype, obj):
            await resp.write(json.dumps({"type": etype, "object": obj}).encode() + b"\n")

        def bookmark(rv, initial_end=False):
            b = {"kind": rt.kind, "apiVersion": rt.api_version(version), "metadata": {"resourceVersion": str(rv)}}
            if initial_end:
                b["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
            return b

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if since is not None and since < self.first_kept_rv:
                await send("ERROR", status_body(410, "Expired", f"too old resource version: {since} ({self.rv})"))
                await resp.write_eof()
                return resp
            if since is None or initial:
                cursor = self.rv  # the snapshot: changes after it follow as events
                snapshot = [copy.deepcopy(o) for o in self.store.get(rt.key, {}).values() if self.matches(rt, ns, sel, o)]
                for o in snapshot:
                    await send("ADDED", self.render(rt, o, version))
                if initial and bookmarks:
                    await send("BOOKMARK", bookmark(cursor, initial_end=True))
            else:
                cursor = since
            next_bookmark = loop.time() + 15
            while not self.closing:
                wake = self.wake
                scanned = self.rv
                pending = [e for e in self.events if e[0] > cursor and e[1] == rt.key]
                for erv, _key, etype, obj, old in pending:
                    now_in = self.matches(rt, ns, sel, obj)
                    was_in = old is not None and self.matches(rt, ns, sel, old)
                    if etype == "MODIFIED" and now_in and not was_in:
                        etype = "ADDED"
                    elif etype == "MODIFIED" and was_in and not now_in:
                        etype, now_in = "DELETED", True
                    if now_in:
                        await send(etype, self.render(rt, obj, version))
                cursor = max(cursor, scanned)
                left = deadline - loop.time()
                if left <= 0:
                    break
                if raw.transport is None or raw.transport.is_closing():
                    break  # the client has gone
                wait = min(left, 5.0)
                if bookmarks:
                    wait = min(wait, max(0.0, next_bookmark - loop.time()))
                try:
                    await asyncio.wait_for(asyncio.shield(wake), timeout=wait)
                except asyncio.TimeoutError:
                    pass
                if bookmarks and loop.time() >= next_bookmark and self.rv == cursor:
                    await send("BOOKMARK", bookmark(cursor))
                    next_bookmark = loop.time() + 15
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        return resp

    # ---- discovery (kmock's, with the core group as "v1" and this registry's resources) -----

    def served_groups(self):
        groups = collections.OrderedDict()
        for rt in self.types.values():
            if rt.group:
                vs = groups.setdefault(rt.group, [])
                for v in rt.versions:
                    if v not in vs:
                        vs.append(v)
        return groups

    async def _serve_api(self, request):
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}

    def group_doc(self, group, versions):
        return {"name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}

    async def _serve_apis(self, request):
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self.group_doc(g, vs) for g, vs in self.served_groups().items()]}

    async def _serve_group(self, request):
        group = request.url.path.strip("/").split("/")[1]
        versions = self.served_groups().get(group)
        if not versions:
            raise kmock.KubernetesError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIGroup", "apiVersion": "v1", **self.group_doc(group, versions)}

    async def _serve_version(self, request):
        parts = request.url.path.strip("/").split("/")
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        rts = [rt for rt in self.types.values() if rt.group == group and version in rt.versions]
        if not rts:
            raise kmock.KubernetesError(404, "NotFound", "the server could not find the requested resource")
        resources = []
        for rt in sorted(rts, key=lambda r: r.plural):
            resources.append({"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                              "kind": rt.kind, "verbs": VERBS, "shortNames": rt.short_names,
                              **({"categories": rt.categories} if rt.categories else {})})
            for sub in sorted(rt.subresources):
                if sub == "eviction":
                    resources.append({"name": f"{rt.plural}/eviction", "singularName": "", "namespaced": rt.namespaced,
                                      "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
                elif sub == "scale":
                    resources.append({"name": f"{rt.plural}/scale", "singularName": "", "namespaced": rt.namespaced,
                                      "group": "autoscaling", "version": "v1", "kind": "Scale",
                                      "verbs": ["get", "patch", "update"]})
                else:
                    resources.append({"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                                      "kind": rt.kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    async def _serve_server_version(self, request):
        return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-kmock", "gitCommit": "", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"}


def parse_path(path):
    """(group, version, namespace, plural, name, subresource) of a resource URL, else None."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns = None
    if rest[0] == "namespaces" and group == "" and (len(rest) <= 2 or (len(rest) == 3 and rest[2] in ("status", "finalize"))):
        return group, version, None, "namespaces", rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = "/".join(rest[2:]) or None
    return group, version, ns, plural, name, sub


def parse_body(raw, request, required=True):
    text = request.text or ""
    if not text.strip():
        if required:
            raise ApiError(400, "BadRequest", "the request body is empty")
        return None
    try:
        return json.loads(text)
    except ValueError:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ApiError(400, "BadRequest", f"the body of the request could not be decoded: {e}")


async def amain(args):
    emu = StackEmulator(strict=False)
    async with emu:
        emu.setup(args.fixtures, args.files_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with kmock.Server(emu, host=args.host, port=args.port):
            n = sum(len(v) for v in emu.store.values())
            print(f"kube_emulator: kmock {kmock.__version__} serving http://{args.host}:{args.port} "
                  f"with {n} fixture objects from {args.fixtures}", flush=True)
            await stop.wait()
            emu.closing = True
            if not emu.wake.done():
                emu.wake.set_result(None)
            await asyncio.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=os.environ.get("AUTOPILOT_KUBE_FIXTURES",
                                                         os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")))
    ap.add_argument("--files-dir", default=os.environ.get("AUTOPILOT_KUBE_FILES_DIR"),
                    help="directory of the files that {{b64file:NAME}} in fixtures refers to")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("AUTOPILOT_STACK_KUBE_PORT", "18080")))
    args = ap.parse_args()
    asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
