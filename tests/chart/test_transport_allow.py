"""`transport.allowedHosts/allowedCidrs` reach the API (its check at create) and, through the
operator, every pool's worker pod (its check of the resolved addresses), read back by each
component's own settings loader; by default nobody gets an allow-list: public addresses only."""

from __future__ import annotations

from api_shim.settings import Settings as ApiSettings
from avatar_crds.addresses import AddressAllowList
from avatar_worker.config import PoolConfig
from testbed.helm import Helm
from tests.chart.rendering import API, container, literal_env, one, render, worker_env, worker_pods

OWN_LIVEKIT = AddressAllowList.parse("livekit.livekit.svc.cluster.local", "10.96.12.34/32")


def allow_lists(
    helm: Helm, sets: tuple[str, ...] = ()
) -> tuple[AddressAllowList, list[AddressAllowList]]:
    """The API's allow-list, and each pool worker's, as the rendered chart configures them."""
    docs = render(helm, sets=sets)
    api_env = literal_env(container(one(docs, "Deployment", API)))
    workers = [
        PoolConfig.from_env(pod["spec"]["containers"][0]["args"][1:], worker_env(pod))
        for pod in worker_pods(docs)
    ]
    return (
        ApiSettings.from_env(api_env).transport_allow_list(),
        [worker.worker.transport_allow for worker in workers],
    )


def test_the_platforms_livekit_reaches_the_api_and_every_worker(helm: Helm) -> None:
    sets = (
        "transport.allowedHosts={livekit.livekit.svc.cluster.local}",
        "transport.allowedCidrs={10.96.12.34/32}",
    )
    api, workers = allow_lists(helm, sets)
    assert api == OWN_LIVEKIT
    assert workers == [OWN_LIVEKIT] * len(workers)


def test_by_default_only_public_addresses_are_allowed(helm: Helm) -> None:
    api, workers = allow_lists(helm)
    assert api == AddressAllowList()
    assert workers == [AddressAllowList()] * len(workers)
