import logging

# Standard logging, as livekit-agents and its plugins use: the agent's process configures it.
logger = logging.getLogger("livekit.plugins.facecast")
