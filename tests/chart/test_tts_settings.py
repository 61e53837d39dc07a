"""`tts.openai` reaches the API (its voices) and, through the operator, every pool's worker pod
(the server's URL, its voices, its key as a mounted file, never a variable's value), read back
by each component's own settings loader; workers may reach the server only where the values say.
`operator.endingSoonSeconds` reaches the operator."""

from __future__ import annotations

import json
from typing import Any

from api_shim.settings import Settings as ApiSettings
from avatar_crds import contract
from avatar_operator.settings import load_settings
from avatar_worker.config import PoolConfig
from testbed.helm import Helm
from tests.chart.rendering import (
    API,
    FULLNAME,
    OPERATOR,
    Manifest,
    container,
    literal_env,
    one,
    render,
    worker_env,
    worker_pods,
)

VOICES = [
    {"voice": "alloy", "languages": ["en"], "name": "Alloy"},
    {"voice": "nova", "languages": ["en", "de"], "speed_max": 1.5},
]
BASE_URL = "http://tts.tts.svc.cluster.local:8000/v1"
TTS_VALUES = (
    f"tts.openai.baseUrl={BASE_URL}",
    "tts.openai.apiKeySecret.name=tts-credentials",
    "tts.openai.apiKeySecret.key=openai",
)
TTS_JSON = (
    f"tts.openai.voices={json.dumps(VOICES)}",
    'networkPolicy.worker.tts={"cidrs":[{"cidr":"10.96.40.0/24"}],"ports":[8000]}',
)


def worker_egress(docs: list[Manifest]) -> list[dict[str, Any]]:
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-worker")
    rules: list[dict[str, Any]] = policy["spec"]["egress"]
    return rules


def test_the_tts_server_reaches_the_api_and_every_worker_with_its_key_as_a_file(
    helm: Helm,
) -> None:
    docs = render(helm, sets=TTS_VALUES, set_jsons=TTS_JSON)
    api = ApiSettings.from_env(literal_env(container(one(docs, "Deployment", API))))
    offered = {voice.id for voice in api.voice_catalogue().voices}
    assert {"openai:alloy", "openai:nova"} <= offered

    for pod in worker_pods(docs):
        worker = pod["spec"]["containers"][0]
        # The pool worker's own loader, on the env the kubelet would give it.
        tts = PoolConfig.from_env(worker["args"][1:], worker_env(pod)).worker.tts
        assert tts.openai_base_url == BASE_URL
        assert json.loads(tts.openai_voices) == VOICES
        assert {voice.id for voice in tts.catalogue().voices} == offered  # what the API offers
        assert tts.openai_api_key_file == contract.TTS_KEY_FILE
        (key,) = [v for v in pod["spec"]["volumes"] if v["name"] == "tts-key"]
        assert key["secret"]["secretName"] == "tts-credentials"
        assert key["secret"]["items"] == [{"key": "openai", "path": "api-key"}]
        (mount,) = [m for m in worker["volumeMounts"] if m["name"] == "tts-key"]
        assert mount["readOnly"] is True
        assert f"{mount['mountPath']}/api-key" == contract.TTS_KEY_FILE
    # The operator names the Secret; nobody's env holds the key (every entry is a literal).
    literal_env(container(one(docs, "Deployment", OPERATOR)))

    tts_rules = [
        r for r in worker_egress(docs) if r["ports"] == [{"protocol": "TCP", "port": 8000}]
    ]
    assert [r["to"] for r in tts_rules] == [[{"ipBlock": {"cidr": "10.96.40.0/24"}}]]


def test_without_a_tts_server_nobody_gets_its_settings_or_a_way_out(helm: Helm) -> None:
    docs = render(helm, set_jsons=TTS_JSON[1:])  # a rule's values, but no server configured
    api_env = literal_env(container(one(docs, "Deployment", API)))
    assert contract.ENV_TTS_OPENAI_VOICES not in api_env
    for pod in worker_pods(docs):
        names = {item["name"] for item in pod["spec"]["containers"][0]["env"]}
        assert not any(name.startswith("FACECAST_TTS_") for name in names)
        assert all(v["name"] != "tts-key" for v in pod["spec"]["volumes"])
    assert len(worker_egress(docs)) == 3  # DNS, the API server and LiveKit only


def test_the_warning_before_a_cutoff_is_configurable(helm: Helm) -> None:
    default = literal_env(container(one(render(helm), "Deployment", OPERATOR)))
    assert load_settings(default).ending_soon_seconds == 10
    off = render(helm, sets=("operator.endingSoonSeconds=0",))
    assert (
        load_settings(literal_env(container(one(off, "Deployment", OPERATOR)))).ending_soon_seconds
        == 0
    )
