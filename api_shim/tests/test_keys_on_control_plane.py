"""API keys against the real kube-apiserver: unknown and revoked keys are refused, and the
admin CLI mints a key that is shown once and stored only as its hash."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from api_shim import admin
from api_shim.tests.control_plane import Cluster, error_of
from avatar_crds.kinds import TENANT
from avatar_crds.meta import GROUP, VERSION

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


# --- keys ----------------------------------------------------------------------------------------


async def test_unknown_keys_are_401_and_revoked_keys_stop_working(cluster: Cluster) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        stranger = await http.get("/v1/usage", headers={"x-api-key": "fc_" + "A" * 43})
        error_of(stranger, 401, "authentication", "invalid_api_key")
        assert (await http.get("/v1/usage", headers=acme.headers)).status_code == 200
        key_id = (await admin.list_keys(cluster.kube, acme.name))[0].id
        await admin.revoke_key(cluster.kube, acme.name, key_id)
        revoked = await http.get("/v1/usage", headers=acme.headers)
    error_of(revoked, 401, "authentication", "invalid_api_key")


async def test_the_admin_cli_mints_a_key_shown_once(
    cluster: Cluster, control_plane: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    where = ["--namespace", cluster.namespace, "--kubeconfig", str(control_plane.kubeconfig)]

    async def cli(*args: str) -> tuple[int, str, str]:
        """In-process (its own event loop, in a thread), as fast as a function call."""
        code = await asyncio.to_thread(admin.main, [*where, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert (await cli("create-tenant", name, "--max-concurrent", "2", "--qualities", "mock"))[
        0
    ] == 0
    code, _, err = await cli("create-tenant", name, "--max-concurrent", "2")
    assert code == 1
    assert "already exists" in err
    assert (await cli("create-key", "no-such-tenant"))[0] == 1
    # The one real `python -m api_shim.admin`: the key alone on stdout, once.
    minted = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "api_shim.admin", *where, "create-key", name],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FACECAST_NAMESPACE": "elsewhere"},  # the flag wins
        check=False,
    )
    assert minted.returncode == 0, minted.stderr
    key = minted.stdout.strip()
    assert key.startswith("fc_")
    assert len(key) == 46
    assert key not in minted.stderr
    code, listed, _ = await cli("list-keys", name)
    assert code == 0
    assert key not in listed
    assert key[-4:] in listed
    tenant: Any = cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, TENANT.plural, name
    )
    assert key not in json.dumps(tenant)
    assert tenant["spec"]["plan"]["maxConcurrentSessions"] == 2
    async with cluster.api() as http:
        usage = await http.get("/v1/usage", headers={"x-api-key": key})
    assert usage.status_code == 200
    assert usage.json()["concurrency"]["max"] == 2
