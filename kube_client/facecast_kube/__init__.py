"""The one asynchronous Kubernetes client layer of the API and the operator: where the
credentials come from (config), the client (client), what a refusal is (errors) and the REST
paths (paths)."""

from facecast_kube import paths
from facecast_kube.client import JSON, JSON_PATCH, MERGE_PATCH, KubeClient
from facecast_kube.config import load_configuration
from facecast_kube.errors import (
    ConflictError,
    ExpiredError,
    InvalidError,
    KubeError,
    NotFoundError,
    UnreachableError,
    absent_ok,
    exists_ok,
)
from facecast_kube.watch import WatchEvent

__all__ = [
    "JSON",
    "JSON_PATCH",
    "MERGE_PATCH",
    "ConflictError",
    "ExpiredError",
    "InvalidError",
    "KubeClient",
    "KubeError",
    "NotFoundError",
    "UnreachableError",
    "WatchEvent",
    "absent_ok",
    "exists_ok",
    "load_configuration",
    "paths",
]
