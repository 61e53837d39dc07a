"""The worker's own check of where the room's server is, made on the addresses its host resolves
to before every join (the API's check at create cannot see what DNS answers later).

IP literals go through the real system resolver, and the real livekit-server on 127.0.0.1
stands for a LiveKit on a private address. Where a test needs a host NAME to resolve to a chosen
address (DNS rebinding), `StandInDns` answers instead of DNS: no real name can be pointed at an
address of the test's choosing here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from livekit import api

from avatar_crds import contract
from avatar_crds.addresses import AddressAllowList
from avatar_crds.enums import FailureReason
from avatar_worker.config import FileSessionSource, WorkerConfig
from avatar_worker.errors import WorkerError
from avatar_worker.reporting import JsonLinesStatusSink
from avatar_worker.transport.destination import (
    DestinationUnresolvedError,
    check_destination,
    system_resolver,
)
from avatar_worker.transport.livekit import LiveKitTransport
from avatar_worker.worker import EXIT_FAILED, Worker
from testbed.livekit_server import LiveKitServer
from worker_image.tests.support import (
    LOOPBACK_LIVEKIT,
    mint_token,
    running_worker,
    session_resource,
    within,
    write_worker_files,
)

PUBLIC_ONLY = AddressAllowList()


@dataclass
class StandInDns:
    """Stand-in for DNS: answers every lookup with `answers` (or fails like a resolver that
    finds nothing, when None), and records the names it was asked."""

    answers: list[str] | None
    asked: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(f"{host}:{port}")
        if self.answers is None:
            raise OSError(-2, "Name or service not known")
        return list(self.answers)


def refusal(url: str, allow: AddressAllowList, dns: StandInDns | None = None) -> str:
    """The message of the final room_unreachable failure the check raises."""
    resolver = dns if dns is not None else system_resolver
    with pytest.raises(WorkerError) as raised:
        asyncio.run(check_destination(url, allow, resolver))
    assert raised.value.reason is FailureReason.ROOM_UNREACHABLE
    return raised.value.message


@pytest.mark.parametrize(
    "answers",
    [
        ["10.0.0.1"],
        ["169.254.169.254"],
        ["127.0.0.1"],
        ["93.184.216.34", "10.96.0.1"],  # one private answer among public ones
        ["::ffff:10.0.0.1"],
        ["fd00:ec2::254"],
    ],
)
def test_a_public_name_that_resolves_to_a_private_address_is_refused(answers: list[str]) -> None:
    dns = StandInDns(answers)
    message = refusal("wss://rtc.example.com", PUBLIC_ONLY, dns)
    assert "rtc.example.com resolves to" in message
    assert "not a public address" in message
    assert dns.asked == ["rtc.example.com:443"]


def test_a_name_that_resolves_to_public_addresses_only_is_joined() -> None:
    dns = StandInDns(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    asyncio.run(check_destination("wss://rtc.example.com:7880/x", PUBLIC_ONLY, dns))
    assert dns.asked == ["rtc.example.com:7880"]


def test_the_platforms_own_livekit_may_be_private() -> None:
    own = AddressAllowList.parse("livekit.facecast.svc.cluster.local", "10.0.0.5/32")
    cluster_ip = StandInDns(["10.96.3.4"])
    asyncio.run(check_destination("ws://livekit.facecast.svc.cluster.local:7880", own, cluster_ip))
    asyncio.run(check_destination("ws://lk.example.com", own, StandInDns(["10.0.0.5"])))
    assert "10.0.0.6" in refusal("ws://lk.example.com", own, StandInDns(["10.0.0.6"]))


@pytest.mark.parametrize(
    "url",
    ["ws://127.0.0.1:7880", "ws://[::1]:7880", "ws://169.254.169.254/", "ws://10.0.0.1:7880"],
)
def test_address_literals_are_checked_through_the_real_resolver(url: str) -> None:
    assert "not a public address" in refusal(url, PUBLIC_ONLY)


def test_names_that_only_mean_something_inside_the_cluster_are_refused_before_dns() -> None:
    dns = StandInDns(["93.184.216.34"])
    for url in ("wss://kubernetes.default.svc", "ws://localhost:7880", "ws://livekit:7880"):
        assert "cluster-internal or local name" in refusal(url, PUBLIC_ONLY, dns)
    assert dns.asked == []


def test_a_name_that_does_not_resolve_is_worth_another_try() -> None:
    with pytest.raises(DestinationUnresolvedError, match=r"cannot resolve rtc\.example\.com"):
        asyncio.run(check_destination("wss://rtc.example.com", PUBLIC_ONLY, StandInDns(None)))


def test_the_transport_refuses_at_once_without_retrying_until_its_deadline() -> None:
    dns = StandInDns(["127.0.0.1"])
    transport = LiveKitTransport(
        url="ws://rebound.example.com:7880",
        token="x.y.z",
        identity="facecast-worker",
        join_deadline_s=30.0,
        allow=PUBLIC_ONLY,
        resolver=dns,
    )

    async def join() -> None:
        await within(transport.connect(), timeout=5, what="the refusal")

    with pytest.raises(WorkerError, match=r"rebound\.example\.com resolves to 127\.0\.0\.1"):
        asyncio.run(join())
    assert len(dns.asked) == 1  # final: no second attempt
    assert not transport.connected


@pytest.mark.livekit
def test_the_worker_joins_a_livekit_on_loopback_only_when_the_platform_allows_it(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "private-livekit"
    files = write_worker_files(
        tmp_path,
        session_resource(url=livekit_server.url, room=room),
        mint_token(livekit_server, "facecast-worker", room),
    )

    async def participants() -> list[str]:
        async with api.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        ) as lk:
            rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
            if not rooms.rooms:
                return []
            found = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            return [p.identity for p in found.participants]

    async def scenario() -> None:
        # The defaults (public addresses only): refused before any connection.
        config: WorkerConfig = files.config(transport_allow=PUBLIC_ONLY)
        assert config.session_file is not None
        refused = Worker(
            config,
            FileSessionSource(config.session_file, config.avatar_file),
            JsonLinesStatusSink(config.status_file),
        )
        assert await within(refused.run(), timeout=20, what="the refusal") == EXIT_FAILED
        failure = files.statuses()[-1]["failure"]
        assert failure["reason"] == FailureReason.ROOM_UNREACHABLE.value
        assert "127.0.0.1 is not a public address" in failure["message"]
        assert await participants() == []  # livekit-server never saw it

        # The platform allows its LiveKit's address: the same session joins.
        async with running_worker(files, transport_allow=LOOPBACK_LIVEKIT) as worker:
            await within(worker.ready.wait(), timeout=20, what="the worker to join")
            joined = await participants()
        assert joined == ["facecast-worker"]

    asyncio.run(scenario())


def test_the_allow_list_comes_from_the_environment_the_operator_sets() -> None:
    config = WorkerConfig.from_env(
        [],
        {
            contract.ENV_TRANSPORT_ALLOWED_HOSTS: "LiveKit.facecast.svc.",
            contract.ENV_TRANSPORT_ALLOWED_CIDRS: "10.0.0.5/32, fd00::/64",
        },
    )
    assert config.transport_allow.hosts == frozenset({"livekit.facecast.svc"})
    assert [str(n) for n in config.transport_allow.networks] == ["10.0.0.5/32", "fd00::/64"]
    assert WorkerConfig.from_env([], {}).transport_allow == PUBLIC_ONLY
    with pytest.raises(SystemExit):
        WorkerConfig.from_env([], {contract.ENV_TRANSPORT_ALLOWED_CIDRS: "10.0.0.5/8"})
