"""Commands the program prints, as they must be typed on this machine.

Messages name commands as `watchkeeper ...` (in backticks). Where `watchkeeper` is not
the command that runs this installation (started with `uv run` from a checkout, whose
virtual environment is not on the PATH, or with `python -m watchkeeper`), a command
copied from such a message would fail with "command not found" or run another
installation. :func:`as_typed` rewrites each one
to how this process was started, so that every command printed works when copied.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import sys
from pathlib import Path

PROGRAM = "watchkeeper"


@functools.cache
def invocation() -> str:
    """How to run this installation's `watchkeeper` from a shell on this machine:
    ``watchkeeper`` where that is this installation's command on the PATH; else the
    full path of its command (a checkout run with `uv run`, whose virtual environment
    is on the PATH of `uv run`'s children only); else this Python with ``-m
    watchkeeper``."""
    here = Path(sys.executable).parent
    script = here / PROGRAM
    on_path = shutil.which(PROGRAM)
    started_by_uv = "UV_RUN_RECURSION_DEPTH" in os.environ
    if on_path is not None and Path(on_path).resolve() == script.resolve() and not started_by_uv:
        return PROGRAM
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m {PROGRAM}"


def as_typed(text: str) -> str:
    """``text`` with each command in backticks (`watchkeeper ...`) as it must be typed."""
    prefix = invocation()
    if prefix == PROGRAM:
        return text
    return text.replace(f"`{PROGRAM} ", f"`{prefix} ")
