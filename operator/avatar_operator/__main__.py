"""`python -m avatar_operator`: run the operator (kopf) against the configured namespace."""

from __future__ import annotations

import argparse
import gc
import sys

import kopf

from avatar_operator.logging import configure_logging
from avatar_operator.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avatar_operator", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="no peering (one replica only)")
    mode.add_argument("--peering", help="kopf peering object name (set up by the chart)")
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="liveness probe endpoint"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"avatar_operator: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    import avatar_operator.handlers  # noqa: F401  (registers the kopf handlers)

    tune_garbage_collector()

    kopf.run(
        standalone=args.standalone,
        peering_name=args.peering,
        namespaces=[settings.namespace],
        liveness_endpoint=args.liveness or None,
    )
    return 0


# Allocations between young-generation collections (Python's default is 700).
GC_YOUNG_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """Every watch event makes a burst of short-lived dicts. At the default threshold they
    were collected while still in use, and the survivors aged into the old generation, so
    under load a full collection came every two seconds or so. Each walked the whole cluster
    view and stalled every reconciliation for 100-430 ms (measured by an operator bench since
    replaced by bench/pool_binding.py).
    What exists after start-up (modules, handlers) lives as long as the process: it is
    frozen out of those walks, after one last collection, since frozen garbage stays."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD)


if __name__ == "__main__":
    sys.exit(main())
