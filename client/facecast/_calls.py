"""What the sync and async clients share: turning a method call into one HTTP request (built
once, sent as often as retries need) and an HTTP answer into a model or an exception."""

from __future__ import annotations

import importlib.metadata
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from facecast.errors import FacecastError, error_from_response
from facecast.models import ApiObject
from facecast.operations import Operation
from facecast.retries import parse_retry_after

T = TypeVar("T", bound=ApiObject)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
REQUEST_ID_HEADER = "X-Request-Id"
DEFAULT_TIMEOUT = 30.0
USER_AGENT = f"facecast-python/{importlib.metadata.version('facecast')}"

Files = dict[str, tuple[str, bytes]]


@dataclass(frozen=True)
class Call(Generic[T]):
    operation: Operation[T]
    path: str
    params: dict[str, str | int] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    files: Files | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        # A fresh request per attempt (a multipart body is a stream), the same bytes each time.
        return http.build_request(
            self.operation.method,
            self.path,
            params=self.params or None,
            json=self.json,
            data=self.data,
            files=self.files,
            headers=self.headers,
        )


def prepare(
    operation: Operation[T],
    *,
    path_params: dict[str, str] | None = None,
    params: dict[str, str | int | None] | None = None,
    json: dict[str, Any] | None = None,
    data: dict[str, str | None] | None = None,
    files: Files | None = None,
    idempotency_key: str | None = None,
) -> Call[T]:
    """The request for `operation`. Path parameters are quoted whole, so an id can never
    reach another path; creates get a fresh Idempotency-Key unless the caller brings one."""
    path = operation.path.format(
        **{name: quote(value, safe="") for name, value in (path_params or {}).items()}
    )
    headers: dict[str, str] = {}
    if idempotency_key is None and operation.creates:
        idempotency_key = f"fc-{uuid.uuid4()}"
    if idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = idempotency_key
    return Call(
        operation,
        path,
        params={k: v for k, v in (params or {}).items() if v is not None},
        json=json,
        data={k: v for k, v in data.items() if v is not None} if data is not None else None,
        files=files,
        headers=headers,
    )


def client_headers(api_key: str) -> dict[str, str]:
    if not api_key:
        raise ValueError("api_key is required (fc_...)")
    return {"x-api-key": api_key, "User-Agent": USER_AGENT, "Accept": "application/json"}


def error_of(response: httpx.Response) -> FacecastError:
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    return error_from_response(
        response.status_code,
        body,
        response.headers.get(REQUEST_ID_HEADER),
        parse_retry_after(response.headers.get("Retry-After")),
    )


def parse(call: Call[T], response: httpx.Response) -> T:
    """The model of a 2xx answer, carrying its request id and whether it was a replay."""
    result = call.operation.response.model_validate_json(response.content)
    result._request_id = response.headers.get(REQUEST_ID_HEADER)
    result._replayed = response.headers.get(REPLAYED_HEADER, "").lower() == "true"
    return result
