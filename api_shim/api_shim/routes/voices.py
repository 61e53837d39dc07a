"""/v1/voices: the voices this installation offers."""

from __future__ import annotations

from fastapi import APIRouter

from api_shim.deps import PrincipalDep, ServicesDep
from api_shim.routes.common import error_responses
from api_shim.voices import VoiceList, voice_list

router = APIRouter(prefix="/v1", tags=["voices"])


@router.get(
    "/voices",
    summary="List voices",
    description=(
        "Every voice a session's `voice.id` may name, with its languages and the `voice.speed`"
        " values it takes. A create naming another voice or speed is refused with 400"
        " (`unknown_voice`, `voice_speed_out_of_range`)."
    ),
    responses=error_responses(401, 429),
)
async def list_voices(_principal: PrincipalDep, services: ServicesDep) -> VoiceList:
    return voice_list(services.settings.voice_catalogue())
