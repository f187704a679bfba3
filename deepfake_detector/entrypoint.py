"""What every entry point (each ``stages/<name>.py`` script) shares: quiet TensorFlow logs, and user
errors as one line, not a traceback."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from .errors import UserError


def run(main: Callable[[], None]) -> None:
    """Run an entry point's ``main``; a ``UserError`` becomes ``error: <message>`` and exit status 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: outputs were not replaced; re-run to continue", file=sys.stderr)
        sys.exit(130)
