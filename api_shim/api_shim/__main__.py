"""`python -m api_shim`: serve the API with uvicorn, configured from FACECAST_* variables."""

from __future__ import annotations

import uvicorn

from api_shim.app import create_app
from api_shim.kube import Kube
from api_shim.logging import configure_logging
from api_shim.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    kube = Kube.from_settings(settings)
    try:
        uvicorn.run(
            create_app(settings, kube),
            host=settings.host,
            port=settings.port,
            log_config=None,  # keep the JSON handler configure_logging installed
            access_log=False,  # RequestContextMiddleware writes the access log
            server_header=False,
        )
    finally:
        kube.close()


if __name__ == "__main__":
    main()
