"""Run the Faust worker; on SIGTERM/SIGINT it stops cleanly, and within seconds whatever hangs."""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from typing import Any

import faust

from streamer.app import create_app
from streamer.settings import Settings

#: A stop that has not finished after this long ends the process (a hung Faust shutdown).
SHUTDOWN_GRACE_S = 15.0


class Worker(faust.Worker):
    """``faust.Worker`` with a watchdog on the shutdown it starts on a signal."""

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not self._signal_stop_time:
            watchdog = threading.Timer(SHUTDOWN_GRACE_S, _force_exit, args=(signum,))
            watchdog.daemon = True
            watchdog.start()
        super()._schedule_shutdown(signum)


def _force_exit(signum: signal.Signals) -> None:
    print(
        f"streamrec: shutdown after {signum.name} took over {SHUTDOWN_GRACE_S:.0f} s; exiting",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)  # not a clean stop: a supervisor must see it


def run_worker(settings: Settings, loglevel: str = "info") -> Any:
    # what the set-up logs (the snapshot restored or refused) comes before Faust's logging
    # is configured: kept, and logged again once the worker runs
    early = logging.handlers.BufferingHandler(capacity=10_000)
    loggers = [logging.getLogger(name) for name in ("streamrec", "streamer")]
    for logger in loggers:
        logger.addHandler(early)
        logger.setLevel(loglevel.upper())
        logger.propagate = False  # not also to Python's last-resort handler
    try:
        app, pipeline = create_app(settings)
    finally:
        for logger in loggers:
            logger.removeHandler(early)
            logger.propagate = True
    # a copy: configuring logging closes (and so empties) every handler made before
    records = list(early.buffer)
    early.close()

    @app.task
    async def replay_early_logs() -> None:
        for record in records:
            logging.getLogger(record.name).handle(record)

    pipeline.sink.setup()  # a clear error now rather than at the first batch
    worker = Worker(app, loglevel=loglevel, quiet=True)
    try:
        return worker.execute_from_commandline()
    finally:  # stopped (a signal, or an error): what was learned is kept
        if settings.snapshot_interval_s > 0:
            pipeline.snapshot()
