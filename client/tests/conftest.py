"""Fixtures of harness.py, for every test here."""

from client.tests.harness import api, avatar_in, public_avatar, start_api

__all__ = ["api", "avatar_in", "public_avatar", "start_api"]
