"""REST paths of the kinds Facecast reads and writes. The built-in kinds are here; Facecast's
own kinds are made with `custom` by whoever knows their group (avatar_crds), so that this
package knows nothing of them."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    api: str  # "/api/v1", or "/apis/<group>/<version>"
    plural: str
    namespaced: bool = True

    def collection(self, namespace: str = "") -> str:
        if not self.namespaced:
            return f"{self.api}/{self.plural}"
        return f"{self.api}/namespaces/{namespace}/{self.plural}"

    def item(self, namespace: str, name: str, sub: str = "") -> str:
        return "/".join(part for part in (self.collection(namespace), name, sub) if part)


def custom(group: str, version: str, plural: str) -> Resource:
    return Resource(f"/apis/{group}/{version}", plural)


POD = Resource("/api/v1", "pods")
SECRET = Resource("/api/v1", "secrets")
SERVICE_ACCOUNT = Resource("/api/v1", "serviceaccounts")
NODE = Resource("/api/v1", "nodes", namespaced=False)
ROLE = Resource("/apis/rbac.authorization.k8s.io/v1", "roles")
ROLE_BINDING = Resource("/apis/rbac.authorization.k8s.io/v1", "rolebindings")
LEASE = Resource("/apis/coordination.k8s.io/v1", "leases")
ALL_PODS = "/api/v1/pods"  # every namespace's

_SECRET_PATH = re.compile(r"/api/v1/namespaces/[^/?]+/secrets(?:[/?]|$)")


def is_secret(path: str) -> bool:
    """Whether a reply to `path` may hold a Secret's data (and must not be read into errors)."""
    return _SECRET_PATH.match(path) is not None
