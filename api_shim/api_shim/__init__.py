"""Facecast public REST API: sessions, usage and API keys over AvatarSession/Tenant resources.

`python -m api_shim` serves it (settings: `api_shim.settings`); `python -m api_shim.admin`
manages tenants and keys; `api_shim.app.create_app` builds the FastAPI app.
"""
