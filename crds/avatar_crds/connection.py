"""How our async clients reach the API server with what the official client's loaders read
(a kubeconfig or the pod's service account): its TLS settings and its bearer token.

Duck-typed on `kubernetes.client.Configuration`, so this package needs no kubernetes import at
run time."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes.client import Configuration


def tls_context(cfg: Configuration) -> ssl.SSLContext | bool:
    """The cluster CA (and a client certificate, if the kubeconfig has one); False where the
    kubeconfig turns verification off."""
    if not cfg.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if cfg.cert_file and cfg.key_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    return context


def bearer_token(cfg: Configuration) -> str | None:
    """`Bearer <token>`, read anew on every call: the in-cluster loader refreshes rotated
    service-account tokens in place. kubernetes>=37 keeps it under "BearerToken"; older loaders
    used "authorization"."""
    token = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
    return str(token) if token else None
