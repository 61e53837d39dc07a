"""`python -m avatar_worker`: the worker pod's entrypoint.

In the pod the operator sets FACECAST_SESSION_NAME/NAMESPACE, FACECAST_TOKEN_FILE and
FACECAST_AVATAR_STORE; the session and avatar are read from the API server and status.worker is
patched there. For a local run, give the resources as files:

    python -m avatar_worker --session-file session.json --avatar-file avatar.json \\
        --token-file token.txt --status-file -
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from avatar_crds.enums import FailureReason
from avatar_worker import logging as worker_logging
from avatar_worker.config import (
    FileSessionSource,
    KubernetesSessionSource,
    SessionSource,
    WorkerConfig,
    kubernetes_api_client,
)
from avatar_worker.drain import ShutdownSignals
from avatar_worker.process_exit import exit_without_finalizing
from avatar_worker.reporting import JsonLinesStatusSink, KubernetesStatusSink, StatusSink
from avatar_worker.worker import EXIT_FAILED, Worker

log = worker_logging.get_logger("avatar_worker.main")


def build(config: WorkerConfig) -> tuple[SessionSource, StatusSink]:
    if config.session_file is not None:
        return (
            FileSessionSource(config.session_file, config.avatar_file),
            JsonLinesStatusSink(config.status_file),
        )
    if not config.session_name or not config.namespace:
        raise SystemExit(
            "FACECAST_SESSION_NAME and FACECAST_SESSION_NAMESPACE must be set (or --session-file)"
        )
    api = kubernetes_api_client()
    source = KubernetesSessionSource(api, config.namespace, config.session_name)
    sink: StatusSink = (
        JsonLinesStatusSink(config.status_file)
        if config.status_file
        else KubernetesStatusSink(api, config.namespace, config.session_name)
    )
    return source, sink


async def amain(config: WorkerConfig) -> int:
    source, sink = build(config)
    signals = ShutdownSignals()
    loop = asyncio.get_running_loop()
    signals.install(loop)
    try:
        worker = Worker(config, source, sink, signals=signals)
        return await worker.run()
    finally:
        signals.uninstall(loop)


def main(argv: Sequence[str] | None = None) -> int:
    config = WorkerConfig.from_env(argv)
    worker_logging.configure(config.log_level)
    worker_logging.bind_session(config.namespace, config.session_name)
    try:
        return asyncio.run(amain(config))
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:
        log.exception("worker could not start", reason=FailureReason.INTERNAL_ERROR.value)
        del exc
        return EXIT_FAILED


if __name__ == "__main__":
    exit_without_finalizing(main())
