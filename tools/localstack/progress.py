"""The local stack's progress lines, as tools/bootstrap.sh's `step` prints them."""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", file=sys.stderr, flush=True)
