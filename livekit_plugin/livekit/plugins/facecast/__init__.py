"""Facecast avatar plugin for LiveKit Agents: a lip-synced avatar of one portrait, rendered by
your own Facecast deployment, speaking for your agent in its room.

    avatar = facecast.AvatarSession(avatar_id="av_...")
    await avatar.start(session, room=ctx.room)
    await session.start(agent=MyAgent(), room=ctx.room)
"""

from livekit.agents import Plugin

from .avatar import AvatarSession
from .errors import FacecastException
from .log import logger
from .version import __version__

__all__ = ["AvatarSession", "FacecastException", "__version__"]


class FacecastPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(FacecastPlugin())
