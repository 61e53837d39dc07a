"""`transport.allowedHosts/allowedCidrs` reach the API (its check at create) and, through the
operator, every worker pod (its check of the resolved addresses), read back by each component's
own settings loader; by default nobody gets an allow-list: public addresses only."""

from __future__ import annotations

from api_shim.settings import Settings as ApiSettings
from avatar_crds.addresses import AddressAllowList
from avatar_crds.session import AvatarSession
from avatar_operator import resources
from avatar_operator.settings import load_settings
from avatar_worker.config import WorkerConfig
from testbed.helm import Helm
from testbed.objects import session_manifest
from tests.chart.rendering import API, OPERATOR, container, literal_env, one, render

OWN_LIVEKIT = AddressAllowList.parse("livekit.livekit.svc.cluster.local", "10.96.12.34/32")


def allow_lists(helm: Helm, sets: tuple[str, ...] = ()) -> tuple[AddressAllowList, ...]:
    """(the API's, the worker's) allow-list as the rendered chart configures them."""
    docs = render(helm, sets=sets)
    api_env = literal_env(container(one(docs, "Deployment", API)))
    operator_env = literal_env(container(one(docs, "Deployment", OPERATOR)))
    session = AvatarSession.model_validate(session_manifest(uid="u-1"))
    pod = resources.worker_pod(session, load_settings(operator_env).worker)
    worker_env = {item["name"]: item["value"] for item in pod["spec"]["containers"][0]["env"]}
    return (
        ApiSettings.from_env(api_env).transport_allow_list(),
        WorkerConfig.from_env([], worker_env).transport_allow,
    )


def test_the_platforms_livekit_reaches_the_api_and_every_worker(helm: Helm) -> None:
    sets = (
        "transport.allowedHosts={livekit.livekit.svc.cluster.local}",
        "transport.allowedCidrs={10.96.12.34/32}",
    )
    assert allow_lists(helm, sets) == (OWN_LIVEKIT, OWN_LIVEKIT)


def test_by_default_only_public_addresses_are_allowed(helm: Helm) -> None:
    assert allow_lists(helm) == (AddressAllowList(), AddressAllowList())
