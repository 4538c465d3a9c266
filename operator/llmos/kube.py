"""The one wrapper around the Kubernetes API: config, server-side apply, status patches, and
the 404/409 policy (absent objects read as None; applies win conflicts for our fields)."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from llmos.builders.common import FIELD_MANAGER, Manifest

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
APPLIED_HASH = "llmos.dev/applied-hash"
PLURALS = {
    "Job": "jobs",
    "Deployment": "deployments",
    "Service": "services",
    "Pod": "pods",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "LanguageModel": "languagemodels",
    "TrainingJob": "trainingjobs",
    "ModelEndpoint": "modelendpoints",
    "Namespace": "namespaces",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Secret": "secrets",
    "Event": "events",
}


def tls_context(ca_file: str | None, cert: tuple[str, str] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


class KubernetesAuth(httpx.Auth):
    """The credentials of a `kubernetes` client configuration, refreshed when they expire
    (exec credential plugins, auth providers, the in-cluster token's rotation)."""

    def __init__(self, configuration: Any) -> None:
        self.configuration = configuration

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # auth_settings() runs the refresh hook and knows where the client keeps the token.
        for setting in self.configuration.auth_settings().values():
            if setting["in"] == "header" and setting["value"]:
                request.headers[setting["key"]] = setting["value"]
        yield request


def client_from_environment(kubeconfig: str | None = None) -> httpx.Client:
    """$KUBECONFIG / ~/.kube/config (current context), else the in-cluster service account.
    The `kubernetes` package reads the configuration, so every kind of kubeconfig works."""
    from kubernetes import client, config

    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path is None and (SERVICE_ACCOUNT / "token").is_file():
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=path, client_configuration=configuration)
    cert = (
        (configuration.cert_file, configuration.key_file)
        if configuration.cert_file and configuration.key_file
        else None
    )
    verify: ssl.SSLContext | bool = tls_context(configuration.ssl_ca_cert, cert) if configuration.verify_ssl else False
    return httpx.Client(base_url=configuration.host, verify=verify, auth=KubernetesAuth(configuration), timeout=30)


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [prefix]
    if namespace and kind != "Namespace":
        parts.append(f"namespaces/{namespace}")
    parts.append(PLURALS[kind])
    if name:
        parts.append(name)
    return "/".join(parts)


def _applied_hash(body: dict[str, Any]) -> str | None:
    return body["metadata"].get("annotations", {}).get(APPLIED_HASH)


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:500]}"
        )
        self.status = response.status_code


ObjectKey = tuple[str, str, str | None, str]  # (apiVersion, kind, namespace, name)


class ObjectCache:
    """The newest known body of objects the operator watches (fed by watch events), so that
    reconciling an unchanged object needs no reads of its children. Unknown objects are read
    from the API as usual."""

    def __init__(self) -> None:
        self._bodies: dict[ObjectKey, dict[str, Any]] = {}

    @staticmethod
    def key_of(body: dict[str, Any]) -> ObjectKey:
        meta = body["metadata"]
        return (body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])

    def observe(self, body: dict[str, Any], deleted: bool = False) -> None:
        key = self.key_of(body)
        if deleted:
            self._bodies.pop(key, None)
            return
        old = self._bodies.get(key)
        if old is None or _newer(body, old):
            meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}  # the bulk, never read
            self._bodies[key] = {**body, "metadata": meta}

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        return self._bodies.get(key)

    def forget(self, key: ObjectKey) -> None:
        self._bodies.pop(key, None)

    def __len__(self) -> int:
        return len(self._bodies)


def _newer(body: dict[str, Any], old: dict[str, Any]) -> bool:
    try:
        return int(body["metadata"]["resourceVersion"]) >= int(old["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return True


class Kube:
    def __init__(self, http: httpx.Client, cache: ObjectCache | None = None) -> None:
        self.http = http
        self.cache = cache
        self._fan_out = ThreadPoolExecutor(4, thread_name_prefix="llmos-apply")

    def _check(self, response: httpx.Response) -> dict[str, Any] | None:
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json() if response.content else {}

    def ensure(self, manifest: Manifest) -> dict[str, Any]:
        """The object as `manifest` wants it, with no write when it already is: the hash of
        what was last applied rides on the object, so an idle operator only reads (also
        after a restart)."""
        meta = manifest["metadata"]
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:20]
        key = ObjectCache.key_of(manifest)
        # Watched children are all in the cache; one missing from it (just after start) is
        # applied anyway, which changes nothing if it exists as wanted.
        current = self.get(*key) if self.cache is None else self.cache.get(key)
        if current is not None and _applied_hash(current) == digest:
            return current
        annotated = {
            **manifest,
            "metadata": {**meta, "annotations": {**meta.get("annotations", {}), APPLIED_HASH: digest}},
        }
        applied = self.apply(annotated) if current is not None else self.create_or_apply(annotated)
        if self.cache is not None:
            self.cache.observe(applied)
        return applied

    def ensure_all(self, manifests: list[Manifest]) -> list[dict[str, Any]]:
        """`ensure` for several independent objects at once (the API server applies them in
        parallel: an endpoint's children appear in the time of one apply, not of three)."""
        if len(manifests) == 1:
            return [self.ensure(manifests[0])]
        return list(self._fan_out.map(self.ensure, manifests))

    def create_or_apply(self, manifest: Manifest) -> dict[str, Any]:
        """Create (cheaper for the API server than an apply); if it exists after all, apply."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"))
        response = self.http.post(path, params={"fieldManager": FIELD_MANAGER}, json=manifest)
        if response.status_code == 409:
            return self.apply(manifest)
        result = self._check(response)
        assert result is not None
        return result

    def apply(self, manifest: Manifest) -> dict[str, Any]:
        """Server-side apply as the operator's field manager."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
        response = self.http.patch(
            path,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(manifest),  # JSON is YAML, and much faster to write
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        result = self._check(response)
        assert result is not None
        return result

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._check(self.http.get(object_path(api_version, kind, namespace, name)))

    def read(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The cached body of a watched object, else a GET."""
        cached = self.cache.get((api_version, kind, namespace, name)) if self.cache is not None else None
        return cached if cached is not None else self.get(api_version, kind, namespace, name)

    def list(self, api_version: str, kind: str, namespace: str | None, selector: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        result = self._check(self.http.get(object_path(api_version, kind, namespace), params=params))
        return list(result["items"]) if result else []

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        self._check(self.http.request("DELETE", object_path(api_version, kind, namespace, name), json=body))
        if self.cache is not None:
            self.cache.forget((api_version, kind, namespace, name))

    def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the status; with `resource_version`, only if nobody wrote the object
        since it was read (else ApiError 409: read again and retry)."""
        path = object_path(api_version, kind, namespace, name) + "/status"
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        response = self.http.patch(path, json=body, headers={"Content-Type": "application/merge-patch+json"})
        result = self._check(response)
        assert result is not None
        if self.cache is not None:
            self.cache.observe(result)
        return result

    def create(self, manifest: Manifest) -> dict[str, Any]:
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"))
        result = self._check(self.http.post(path, json=manifest))
        assert result is not None
        return result

    def pod_log(self, namespace: str, pod: str, tail_lines: int) -> str:
        response = self.http.get(object_path("v1", "Pod", namespace, pod) + "/log", params={"tailLines": tail_lines})
        if response.status_code >= 400:
            return ""
        return response.text
