"""A LiveKit voice agent with a Facecast avatar: the plugin's three lines in a runnable agent.

It runs offline: replies come from a scripted stand-in for a language model and speech from
espeak-ng (swap in your own LLM, STT and TTS). Type in the room's chat and the avatar answers.

    export FACECAST_API_URL=http://127.0.0.1:8080 FACECAST_API_KEY=fc_... FACECAST_AVATAR_ID=av_...
    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    uv run python -m examples.facecast_avatar.agent connect --room my-room   # or: dev

FACECAST_QUALITY picks the renderer tier (`lite` by default). README.md here has the details.
"""

from __future__ import annotations

import os
from typing import cast

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli, room_io
from livekit.plugins import facecast
from livekit.plugins.facecast.avatar import DEFAULT_QUALITY

from examples.facecast_avatar.espeak_tts import EspeakTTS
from examples.facecast_avatar.scripted_llm import ScriptedLLM
from facecast.models import Quality

INSTRUCTIONS = "You are a friendly avatar. Answer in one or two short sentences."

server = AgentServer()


def quality() -> Quality:
    return cast("Quality", os.environ.get("FACECAST_QUALITY", DEFAULT_QUALITY))


def new_session() -> AgentSession[None]:
    # No speech-to-text offline: the user types (RoomIO's chat input), the avatar speaks.
    # An avatar cannot pause its speech, so a false interruption is not resumed.
    return AgentSession(llm=ScriptedLLM(), tts=EspeakTTS(), resume_false_interruption=False)


@server.rtc_session(agent_name=os.environ.get("FACECAST_AGENT_NAME", ""))
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    session = new_session()

    avatar = facecast.AvatarSession(quality=quality())  # FACECAST_AVATAR_ID, _API_URL, _API_KEY
    await avatar.start(session, room=ctx.room)

    await session.start(
        agent=Agent(instructions=INSTRUCTIONS),
        room=ctx.room,
        room_options=room_io.RoomOptions(audio_input=False),
    )
    session.generate_reply(instructions="Greet the user.")


if __name__ == "__main__":
    cli.run_app(server)
