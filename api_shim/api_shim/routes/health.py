"""Liveness (the process answers) and readiness (the cluster answers too); no auth."""

from __future__ import annotations

from fastapi import APIRouter

from api_shim.deps import ServicesDep
from api_shim.routes.common import error_responses
from api_shim.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness", responses=error_responses())
async def healthz() -> Health:
    return Health()


@router.get("/readyz", summary="Readiness", responses=error_responses())
async def readyz(services: ServicesDep) -> Health:
    await services.kube.ping()
    return Health()
