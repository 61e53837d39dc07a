"""Drop-in endpoints for the hosted services Facecast replaces: a customer changes the base URL
(to `/compat/<service>`) and the API key, nothing else.

- `layer`: what a service is made of (a router and an error translation) and shared pure parts;
- `middleware`: every error of a compatibility route in its service's shape;
- `livekit_token`: the room a LiveKit token names (for services that send no room name);
- per service: `<service>_schemas` (its documented shapes), `<service>_translate` (pure
  translation both ways) and `<service>` (the thin routes).

Adding a service: its three modules, and its SERVICE in SERVICES below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api_shim.compat import agenthuman, heygen, kaltura, protoface
from api_shim.compat.layer import CompatService
from api_shim.compat.middleware import ErrorTranslationMiddleware
from api_shim.deps import Services
from api_shim.middleware import Authenticate

SERVICES: tuple[CompatService, ...] = (
    agenthuman.SERVICE,
    protoface.SERVICE,
    heygen.SERVICE,
    kaltura.SERVICE,
)

__all__ = [
    "SERVICES",
    "ErrorTranslationMiddleware",
    "authenticators",
    "image_paths",
    "mount",
    "openapi_tags",
]


def mount(app: FastAPI) -> None:
    for service in SERVICES:
        app.include_router(service.router, prefix=service.prefix, tags=[service.tag])


def openapi_tags() -> list[dict[str, Any]]:
    return [{"name": service.tag, "description": service.description} for service in SERVICES]


def image_paths() -> list[str]:
    """The POST paths whose bodies may carry an image (the image body limit applies)."""
    return [path for service in SERVICES for path in service.image_paths]


def authenticators(services: Services) -> dict[Callable[..., Any], Authenticate]:
    """The services' own caller dependencies, each with how the middleware authenticates it."""
    return {
        dependency: functools.partial(authenticate, services)
        for service in SERVICES
        for dependency, authenticate in service.authenticators.items()
    }
