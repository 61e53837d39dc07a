"""The public REST models: snake_case JSON, exactly what customers send and receive.

Requests forbid unknown fields and never coerce types ("30" is not a number), so a typo fails
loudly instead of silently falling back to a default. Responses always carry every field, with
`null` where a value is not known yet, so clients never have to test for presence.
`RequestModel` and `ResponseModel` are the bases that say so; the session models are in
`api_shim.sessions.schemas`, the avatar ones in `api_shim.avatars.schemas`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- usage and health --------------------------------------------------------------------------


class Concurrency(ResponseModel):
    current: int = Field(description="Your sessions that have not reached a terminal status.")
    max: int
    available: int


class Minutes(ResponseModel):
    included: int = Field(description="Session minutes in your plan per billing period.")
    used: float
    total_remaining: float


class Usage(ResponseModel):
    object: Literal["usage"] = "usage"
    concurrency: Concurrency
    minutes: Minutes
    period_start: datetime | None


class Health(ResponseModel):
    status: Literal["ok"] = "ok"
