"""Tenants with one API key each, made with the admin CLI's own functions (as an operator of the
platform would), for tests that then call the API as that tenant; or with the CLI itself
(`admin_cli`), as the chart's NOTES and the local stack have a person run it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from api_shim import admin
from api_shim.kube import Kube
from avatar_crds.enums import Quality
from testbed.binaries import REPO_ROOT


@dataclass(frozen=True)
class TenantKey:
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}


async def new_tenant(
    kube: Kube,
    *,
    max_concurrent: int = 10,
    minutes: int = 60,
    max_duration: int = 600,
    qualities: Iterable[str] = (Quality.MOCK, Quality.LITE),
    requests_per_minute: int = 600,
    allow_url_avatars: bool = False,
    allow_base64_avatars: bool = False,
) -> TenantKey:
    """A fresh tenant `t-<random>` in `kube`'s namespace, and its key."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await admin.create_tenant(
        kube,
        admin.build_tenant(
            name,
            max_concurrent=max_concurrent,
            minutes=minutes,
            max_duration=max_duration,
            qualities=[Quality(q) for q in qualities],
            requests_per_minute=requests_per_minute,
            allow_url_avatars=allow_url_avatars,
            allow_base64_avatars=allow_base64_avatars,
        ),
    )
    key, _ = await admin.create_key(kube, name, "test")
    return TenantKey(name, key)


def admin_cli(kubeconfig: Path, namespace: str, *args: str) -> str:
    """`python -m api_shim.admin ARGS` in `namespace` with `kubeconfig`; what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "api_shim.admin", f"--kubeconfig={kubeconfig}",
         f"--namespace={namespace}", *args],
        capture_output=True, text=True, check=False, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"api_shim.admin {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()
