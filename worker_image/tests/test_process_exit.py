"""exit_without_finalizing: the code and every buffered line reach the parent, though the
interpreter is not finalized (see avatar_worker/process_exit.py for why)."""

from __future__ import annotations

import os
import subprocess
import sys

PROGRAM = """
import atexit, logging, sys
from avatar_worker.process_exit import exit_without_finalizing
logging.basicConfig(stream=sys.stderr, format="%(message)s")
atexit.register(lambda: print("finalized"))  # must not run
print("stdout line", end="")  # buffered: stdout is a pipe
logging.getLogger("t").warning("stderr line")
exit_without_finalizing(7)
"""


def test_exit_keeps_the_code_and_the_buffered_output_and_skips_finalization() -> None:
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env=buffered,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 7
    assert done.stdout == "stdout line"
    assert done.stderr.strip() == "stderr line"
