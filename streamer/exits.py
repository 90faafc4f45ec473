"""The worker's way out when it cannot go on: exit 1 at once, so that a supervisor restarts
it and it resumes from its last snapshot (a clean stop would take a snapshot of a state that
cannot be trusted, or wait on what never ends)."""

from __future__ import annotations

import logging
import os
from typing import NoReturn


def exit_for_restart(log: logging.Logger, reason: str, *args: object) -> NoReturn:
    """Log ``reason % args`` as critical, flush the logs, and exit 1 now."""
    log.critical(reason + ": exiting (1)", *args)
    logging.shutdown()
    os._exit(1)
