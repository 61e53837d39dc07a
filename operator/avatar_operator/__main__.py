"""`python -m avatar_operator`: run the operator (kopf) against the configured namespace."""

from __future__ import annotations

import argparse
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

    kopf.run(
        standalone=args.standalone,
        peering_name=args.peering,
        namespaces=[settings.namespace],
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
