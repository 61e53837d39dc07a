"""Ending a process that has used LiveKit's native runtime.

livekit.rtc runs a Rust (tokio) runtime whose threads call back into Python. Once the
interpreter starts finalizing, Python 3.11 ends any thread that asks for the GIL with
pthread_exit; unwinding that through Rust frames aborts the whole process ("panic in a
function that cannot unwind", SIGABRT) after all the real work is done, and the exit code is
lost. So a process that used LiveKit cleans up itself (rooms left, children stopped), then
flushes its output and leaves without finalizing the interpreter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def exit_without_finalizing(code: int) -> NoReturn:
    """Exit with `code` now; everything worth keeping must already be closed."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe or stream has nothing more to save.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
