"""A pod's volumes as folders on this machine, the way a kubelet materialises them.

ConfigMap, Secret, projected (service-account token, ConfigMap, Secret, downward API), downwardAPI and emptyDir
volumes become files under the pod's folder; hostPath volumes point into the node's own root folder
(``<run>/nodes/<node>/root/<path>``), so two fake nodes never share a "host" path. Only ``/proc`` and ``/sys`` are
the real ones (bound read-only by the container entry), because every fake node runs on this kernel.
A volume whose ConfigMap or Secret does not exist yet raises ``VolumeNotReady``: the pod waits, as on a kubelet.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

SHARED_HOST_PATHS = ("/proc", "/sys")
SERVICE_ACCOUNT_TOKEN_SECONDS = 3607


class VolumeNotReady(Exception):
    """A volume's source is missing; the message says which, as the kubelet's FailedMount event does."""


def host_path(node_root: Path, path: str) -> Path:
    """Where a hostPath of a fake node lives on this machine."""
    normal = "/" + path.strip("/")
    if any(normal == shared or normal.startswith(shared + "/") for shared in SHARED_HOST_PATHS):
        return Path(normal)
    return node_root / normal.lstrip("/")


def _write(folder: Path, relative: str, data: bytes, mode: int | None) -> None:
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode if mode is not None else 0o644)


def _key_files(data: dict[str, bytes], items: list[Any] | None, name: str) -> dict[str, bytes]:
    if not items:
        return data
    files = {}
    for item in items:
        if item.key not in data:
            raise VolumeNotReady(f"key {item.key!r} is not in {name}")
        files[item.path] = data[item.key]
    return files


class VolumeBuilder:
    """Materialises the volumes of one pod into ``<pod dir>/volumes/<name>``."""

    def __init__(self, api: client.ApiClient, pod: Any, pod_dir: Path, node_root: Path) -> None:
        self.core = client.CoreV1Api(api)
        self.pod = pod
        self.dir = pod_dir / "volumes"
        self.node_root = node_root

    def build(self) -> dict[str, Path]:
        """Every volume of the pod: its name -> the folder (or hostPath) holding its files."""
        paths: dict[str, Path] = {}
        for volume in self.pod.spec.volumes or []:
            paths[volume.name] = self._volume(volume)
        return paths

    def _volume(self, volume: Any) -> Path:
        folder = self.dir / volume.name
        if volume.host_path is not None:
            path = host_path(self.node_root, volume.host_path.path)
            kind = volume.host_path.type or ""
            if kind in ("DirectoryOrCreate", "") and not path.exists() and path.is_relative_to(self.node_root):
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate" and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            return path
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if volume.empty_dir is not None:
            folder.chmod(0o777)
        elif volume.config_map is not None:
            self._config_map(folder, volume.config_map.name, volume.config_map.items, volume.config_map.optional,
                             volume.config_map.default_mode)
        elif volume.secret is not None:
            self._secret(folder, volume.secret.secret_name, volume.secret.items, volume.secret.optional,
                         volume.secret.default_mode)
        elif volume.downward_api is not None:
            self._downward(folder, volume.downward_api.items)
        elif volume.projected is not None:
            for source in volume.projected.sources or []:
                self._projected(folder, source, volume.projected.default_mode)
        else:
            raise VolumeNotReady(f"volume {volume.name!r} has a type the sandbox does not provide")
        return folder

    def _projected(self, folder: Path, source: Any, mode: int | None) -> None:
        if source.service_account_token is not None:
            _write(folder, source.service_account_token.path, self._token(source.service_account_token), 0o600)
        elif source.config_map is not None:
            self._config_map(folder, source.config_map.name, source.config_map.items, source.config_map.optional,
                             mode)
        elif source.secret is not None:
            self._secret(folder, source.secret.name, source.secret.items, source.secret.optional, mode)
        elif source.downward_api is not None:
            self._downward(folder, source.downward_api.items)

    def _config_map(self, folder: Path, name: str, items: Any, optional: bool | None, mode: int | None) -> None:
        try:
            found = self.core.read_namespaced_config_map(name, self.pod.metadata.namespace)
        except ApiException as error:
            if error.status == 404 and optional:
                return
            raise VolumeNotReady(f'configmap "{name}" not found') from None
        data = {k: v.encode() for k, v in (found.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (found.binary_data or {}).items()})
        for relative, content in _key_files(data, items, f'configmap "{name}"').items():
            _write(folder, relative, content, mode)

    def _secret(self, folder: Path, name: str, items: Any, optional: bool | None, mode: int | None) -> None:
        try:
            found = self.core.read_namespaced_secret(name, self.pod.metadata.namespace)
        except ApiException as error:
            if error.status == 404 and optional:
                return
            raise VolumeNotReady(f'secret "{name}" not found') from None
        data = {k: base64.b64decode(v) for k, v in (found.data or {}).items()}
        for relative, content in _key_files(data, items, f'secret "{name}"').items():
            _write(folder, relative, content, mode)

    def _downward(self, folder: Path, items: Any) -> None:
        for item in items or []:
            if item.field_ref is None:
                continue
            _write(folder, item.path, field_value(self.pod, item.field_ref.field_path).encode(), None)

    def _token(self, projection: Any) -> bytes:
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[projection.audience] if projection.audience else [],
            expiration_seconds=projection.expiration_seconds or SERVICE_ACCOUNT_TOKEN_SECONDS,
            bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1",
                                                           name=self.pod.metadata.name, uid=self.pod.metadata.uid)))
        try:
            answer = self.core.create_namespaced_service_account_token(
                self.pod.spec.service_account_name or "default", self.pod.metadata.namespace, request)
        except ApiException as error:
            raise VolumeNotReady(f"service account token for {self.pod.spec.service_account_name}: "
                                 f"{error.reason}") from None
        return answer.status.token.encode()


def field_value(pod: Any, path: str) -> str:
    """The downward API's fieldRef values."""
    meta = pod.metadata
    simple = {
        "metadata.name": meta.name, "metadata.namespace": meta.namespace, "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.node_name, "spec.serviceAccountName": pod.spec.service_account_name,
        "status.hostIP": "127.0.0.1", "status.podIP": (pod.status.pod_ip if pod.status else "") or "",
    }
    if path in simple:
        return simple[path] or ""
    for prefix, mapping in (("metadata.labels", meta.labels or {}), ("metadata.annotations", meta.annotations or {})):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(mapping.items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return mapping.get(path[len(prefix) + 2:-2], "")
    return ""
