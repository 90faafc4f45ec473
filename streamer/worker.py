"""Run the Faust worker; on SIGTERM/SIGINT it stops cleanly, and within seconds whatever hangs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import warnings
from typing import Any

import faust
from faust.exceptions import AlreadyConfiguredWarning

from streamer.app import create_app, publish_at_stop
from streamer.settings import Settings

#: A stop that has not finished after this long ends the process (a hung Faust shutdown).
SHUTDOWN_GRACE_S = 15.0
#: The format of what the worker logs before Faust's logging is set up (Faust's own).
EARLY_FORMAT = "[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"
#: The longest a stopping worker waits to publish its users' state and deltas (several workers).
HAND_OVER_S = 5.0


class Worker(faust.Worker):
    """``faust.Worker`` with a watchdog on the shutdown it starts on a signal."""

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not self._signal_stop_time:
            watchdog = threading.Timer(SHUTDOWN_GRACE_S, _force_exit, args=(signum,))
            watchdog.daemon = True
            watchdog.start()
        hand_over = getattr(self.app, "streamrec_hand_over", None)
        if hand_over is None or self._handing_over:
            super()._schedule_shutdown(signum)
            return
        # several workers: the users' state and deltas out before leaving the group
        self._handing_over = True
        self._hand_over_task = asyncio.ensure_future(self._hand_over_then_stop(hand_over, signum))

    _handing_over = False
    _hand_over_task: asyncio.Future[None] | None = None

    async def _hand_over_then_stop(self, hand_over: Any, signum: signal.Signals) -> None:
        try:
            await asyncio.wait_for(hand_over(), HAND_OVER_S)
        except Exception:  # the broker gone, or too slow: the next owner learns them again
            logging.getLogger("streamrec").exception("hand-over at stop not completed")
        # the agents take no batch now (a batch that comes waits to be cancelled, unacked:
        # the next owner reads it): Faust's stop must not wait for them to ack it, which would
        # hang the stop until the watchdog ends the process, with no snapshot at stop
        with warnings.catch_warnings():  # "reconfiguring late": read at the stop, as meant
            warnings.simplefilter("ignore", AlreadyConfiguredWarning)
            self.app.conf.stream_wait_empty = False
        super()._schedule_shutdown(signum)


def _force_exit(signum: signal.Signals) -> None:
    print(
        f"streamrec: shutdown after {signum.name} took over {SHUTDOWN_GRACE_S:.0f} s; exiting",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)  # not a clean stop: a supervisor must see it


def run_worker(settings: Settings, loglevel: str = "info") -> Any:
    # what the set-up logs (the snapshot restored or refused, a broker waited for) comes
    # before Faust's logging is configured: written at once, in Faust's format
    early = logging.StreamHandler(sys.stderr)
    early.setFormatter(logging.Formatter(EARLY_FORMAT))
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
    early.close()
    pipeline.sink.setup()  # a clear error now rather than at the first batch
    worker = Worker(app, loglevel=loglevel, quiet=True)
    try:
        return worker.execute_from_commandline()
    finally:  # stopped (a signal, or an error): what was learned is kept
        try:  # and, with several workers, handed to the others
            publish_at_stop(pipeline, settings)
        except Exception:  # the broker gone: the next owner learns the events since again
            logging.getLogger("streamrec").exception("last users' state and deltas not sent")
        if settings.snapshot_interval_s > 0:
            pipeline.snapshot()
