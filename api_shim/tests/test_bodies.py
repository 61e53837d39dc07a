"""The pure parts of the body limits: counting the JSON values a large body could parse into,
and the places that large bodies and images take (test_body_limits.py and
test_upload_bounds.py drive them through the API)."""

from __future__ import annotations

import json

import pytest

from api_shim.bodies import MAX_JSON_VALUES, BodyLimits, json_values_exceed
from api_shim.capacity import Slots
from api_shim.errors import ApiError


def values(body: bytes) -> int:
    """What json.loads actually builds, for comparison."""

    def count(node: object) -> int:
        if isinstance(node, dict):
            return 1 + sum(1 + count(value) for value in node.values())  # keys are values too
        if isinstance(node, list):
            return 1 + sum(count(item) for item in node)
        return 1

    return count(json.loads(body))


def test_a_base64_image_is_a_handful_of_values_however_large() -> None:
    body = json.dumps({"avatar": {"image_base64": "data:image/png;base64," + "QUJD" * 10**6}})
    assert not json_values_exceed(body.encode(), limit=8)


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b"{}," * 20 + b"{}]",
        b"[" + b"1," * 20 + b"1]",
        b'{"a":' * 10 + b"1" + b"}" * 10,
        json.dumps([",:[{"] * 20).encode(),  # strings full of separators: one value each
    ],
)
def test_the_count_bounds_the_values_parsed_from_above_within_twice(body: bytes) -> None:
    actual = values(body)
    assert json_values_exceed(body, limit=actual - 1)
    assert not json_values_exceed(body, limit=2 * actual)


def test_commas_inside_strings_do_not_count() -> None:
    body = json.dumps({"metadata": {"note": "," * 100_000}}).encode()
    assert not json_values_exceed(body, limit=16)


def test_escapes_and_an_unterminated_string_are_scanned_to_the_end() -> None:
    assert not json_values_exceed(b'["a\\",' + b"\\\\," * 1000 + b'"]', limit=4)
    assert not json_values_exceed(b'"' + b'\\",' * 1000, limit=4)  # never closed: one string
    assert json_values_exceed(b'"",' * 1000, limit=100)


def test_the_limit_is_far_above_a_valid_request() -> None:
    metadata = {f"k{n}": [1, 2, 3, {"x": "y"}] for n in range(64)}
    body = json.dumps({"quality": "lite", "metadata": metadata}).encode()
    assert values(body) < MAX_JSON_VALUES // 8
    assert not json_values_exceed(body)


def test_only_the_image_posts_get_the_large_limit() -> None:
    limits = BodyLimits(default=100, large={"/v1/avatars": 1000})
    assert limits.limit("POST", "/v1/avatars") == 1000
    assert limits.limit("GET", "/v1/avatars") == 100
    assert limits.limit("POST", "/v1/sessions/x/end") == 100


def test_slots_refuse_beyond_capacity_and_come_back_once() -> None:
    slots = Slots(2, what="images", retry_after=3)
    first = slots.take()
    with slots.hold(), pytest.raises(ApiError) as full:
        slots.take()
    assert (full.value.status, full.value.code, full.value.headers()) == (
        503,
        "at_capacity",
        {"Retry-After": "3"},
    )
    first()
    first()  # a second call gives nothing back
    assert slots.in_use == 0
