"""Readiness probes: one HTTP(S) GET that answers "is it serving yet?"."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

from testbed.certs import CertFiles


def http_ok(url: str, *, ca: Path | None = None, client: CertFiles | None = None) -> bool:
    """True when `url` answers 200. Connection errors propagate as "not yet"."""
    context: ssl.SSLContext | None = None
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            status: int = response.status
            return status == 200
    except urllib.error.HTTPError:
        # A served error (e.g. 500 from /readyz while post-start hooks run)
        # means "up but not ready", not a failure of the probe itself.
        return False
