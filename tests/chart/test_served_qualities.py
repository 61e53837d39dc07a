"""The API is told which quality tiers this installation serves: the neural ones only where
the workers mount the model volume (`worker.modelVolumeClaim`), read back by the API's own
settings loader; `api.servedQualities` narrows it and cannot add a tier without weights."""

from __future__ import annotations

import pytest

from api_shim.settings import Settings as ApiSettings
from avatar_crds import contract
from avatar_crds.enums import Quality
from testbed.helm import Helm
from tests.chart.rendering import API, VALUES_EXAMPLES, container, literal_env, one, render


def api_env(helm: Helm, *sets: str, values: str = "default") -> dict[str, str]:
    docs = render(helm, values=VALUES_EXAMPLES[values], sets=sets)
    return literal_env(container(one(docs, "Deployment", API)))


@pytest.mark.parametrize(
    ("sets", "served"),
    [
        ((), {Quality.MOCK, Quality.LITE}),
        (("worker.modelVolumeClaim=facecast-models",), set(Quality)),
        (
            ("worker.modelVolumeClaim=facecast-models", "api.servedQualities={lite,standard}"),
            {Quality.LITE, Quality.STANDARD},
        ),
        (("api.servedQualities={lite}",), {Quality.LITE}),
    ],
)
def test_the_api_serves_the_neural_tiers_only_with_the_model_volume(
    helm: Helm, sets: tuple[str, ...], served: set[Quality]
) -> None:
    env = api_env(helm, *sets)
    assert contract.ENV_SERVED_QUALITIES in env
    assert ApiSettings.from_env(env).served() == served


def test_the_production_example_serves_every_tier(helm: Helm) -> None:
    env = api_env(helm, values="production")  # it mounts the model volume
    assert ApiSettings.from_env(env).served() == set(Quality)


def test_a_neural_tier_without_the_model_volume_fails_the_install(helm: Helm) -> None:
    with pytest.raises(AssertionError, match=r"api\.servedQualities: standard needs the model"):
        api_env(helm, "api.servedQualities={lite,standard}")
