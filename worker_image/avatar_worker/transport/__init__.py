"""Room transports (LiveKit today; Daily later)."""
