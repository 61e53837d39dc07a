"""Where the API server is and who we are to it, for every Facecast process: one credential
order, read by the official client's loaders, and what our aiohttp sessions take from them
(TLS settings and the bearer token).

The order: a kubeconfig named explicitly (a flag, FACECAST_KUBECONFIG), else the pod's service
account (in a cluster), else the default kubeconfig ($KUBECONFIG or ~/.kube/config, for a
developer's machine). In-cluster comes before the default kubeconfig so that a kubeconfig
left in a container image can never outrank the pod's own identity."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.incluster_config import InClusterConfigLoader

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"


def load_configuration(
    kubeconfig: str | None = None,
    *,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> client.Configuration:
    """The configuration by the one order above. `service_account_dir` and `environ` are where
    a pod finds its account and the API server's address (parameters so that tests can point
    them elsewhere); config.ConfigException if no source has credentials."""
    environ = os.environ if environ is None else environ
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return configuration
    try:
        InClusterConfigLoader(
            token_filename=str(service_account_dir / "token"),
            cert_filename=str(service_account_dir / "ca.crt"),
            environ=environ,
        ).load_and_set(configuration)
    except config.ConfigException:
        # Read now, not when the kubernetes package was imported (as its own default is).
        default = environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
        config.load_kube_config(config_file=default, client_configuration=configuration)
    return configuration


def tls_context(configuration: client.Configuration) -> ssl.SSLContext | bool:
    """The cluster CA (and a client certificate, if the kubeconfig has one); False where the
    kubeconfig turns verification off."""
    if not configuration.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file and configuration.key_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def bearer_token(configuration: client.Configuration) -> str | None:
    """`Bearer <token>`, read anew on every call: the in-cluster loader refreshes rotated
    service-account tokens in place. kubernetes>=37 keeps it under "BearerToken"; older loaders
    used "authorization"."""
    token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    return str(token) if token else None
