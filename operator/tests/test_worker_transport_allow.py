"""The platform's allow-list for its own LiveKit travels from the operator's environment (set by
the chart) to every worker pod, where the worker checks the room's resolved addresses with it."""

from __future__ import annotations

import pytest

from avatar_crds import contract
from avatar_operator.settings import SettingsError, load_settings
from testbed.objects import pool_worker_pod


def worker_env(environ: dict[str, str]) -> dict[str, str]:
    pod = pool_worker_pod(load_settings(environ).worker)
    return {item["name"]: item.get("value", "") for item in pod["spec"]["containers"][0]["env"]}


def test_the_allow_list_reaches_the_worker_pod() -> None:
    env = worker_env(
        {
            contract.ENV_TRANSPORT_ALLOWED_HOSTS: "livekit.facecast.svc.cluster.local",
            contract.ENV_TRANSPORT_ALLOWED_CIDRS: "10.96.10.20/32",
        }
    )
    assert env[contract.ENV_TRANSPORT_ALLOWED_HOSTS] == "livekit.facecast.svc.cluster.local"
    assert env[contract.ENV_TRANSPORT_ALLOWED_CIDRS] == "10.96.10.20/32"


def test_by_default_workers_get_no_allow_list_and_keep_to_public_addresses() -> None:
    env = worker_env({})
    assert contract.ENV_TRANSPORT_ALLOWED_HOSTS not in env
    assert contract.ENV_TRANSPORT_ALLOWED_CIDRS not in env


def test_a_range_that_is_not_valid_stops_the_operator_at_start_up() -> None:
    with pytest.raises(SettingsError, match="not a CIDR range"):
        load_settings({contract.ENV_TRANSPORT_ALLOWED_CIDRS: "10.96.10.20/8"})
