"""`python -m avatar_worker`: the worker pod's entrypoint.

In the pod the operator sets FACECAST_SESSION_NAME/NAMESPACE, FACECAST_TOKEN_FILE and
FACECAST_AVATAR_STORE; the session and avatar are read from the API server and status.worker is
patched there. For a local run, give the resources as files:

    python -m avatar_worker --session-file session.json --avatar-file avatar.json \\
        --token-file token.txt --status-file -

`python -m avatar_worker pool` runs a pool worker instead (`avatar_worker.pool`): the operator
sets FACECAST_POD_NAME, FACECAST_SESSION_NAMESPACE, FACECAST_WORKER_GRANT and
FACECAST_WORKER_SLOTS, and it serves the sessions its grant names.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import structlog

from avatar_crds.enums import FailureReason
from avatar_worker import logging as worker_logging
from avatar_worker.config import (
    FileSessionSource,
    KubernetesSessionSource,
    PoolConfig,
    SessionSource,
    WorkerConfig,
    kubernetes_api_client,
)
from avatar_worker.drain import ShutdownSignals
from avatar_worker.process_exit import exit_without_finalizing
from avatar_worker.reporting import JsonLinesStatusSink, KubernetesStatusSink, StatusSink
from avatar_worker.worker import EXIT_FAILED, Worker

log = worker_logging.get_logger("avatar_worker.main")

POOL_COMMAND = "pool"


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


async def amain_pool(config: PoolConfig) -> int:
    from avatar_worker.pool.runtime import PoolRuntime

    # The grant's watch, each slot's session watch, and room for their short requests.
    api = kubernetes_api_client(connections=2 * config.slots + 4)
    signals = ShutdownSignals()
    loop = asyncio.get_running_loop()
    signals.install(loop)
    try:
        return await PoolRuntime(config, api, signals=signals).run()
    finally:
        signals.uninstall(loop)


def pool_main(argv: Sequence[str]) -> int:
    config = PoolConfig.from_env(argv)
    worker_logging.configure(config.worker.log_level)
    structlog.contextvars.bind_contextvars(
        namespace=config.namespace, pod=config.pod_name, pool=config.pool
    )
    try:
        return asyncio.run(amain_pool(config))
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception:
        log.exception("pool worker failed", reason=FailureReason.INTERNAL_ERROR.value)
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [POOL_COMMAND]:
        return pool_main(args[1:])
    config = WorkerConfig.from_env(args)
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
