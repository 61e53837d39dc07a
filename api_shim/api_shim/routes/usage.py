"""/v1/usage: what the calling tenant is using of its plan right now."""

from __future__ import annotations

from fastapi import APIRouter

from api_shim.deps import PrincipalDep, ServicesDep
from api_shim.routes.common import error_responses
from api_shim.schemas import Usage

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage", summary="Get usage", responses=error_responses(401, 429))
async def get_usage(principal: PrincipalDep, services: ServicesDep) -> Usage:
    return await services.sessions.usage(principal)
