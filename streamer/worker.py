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
from streamer.pipeline import Pipeline
from streamer.settings import Settings

#: A stop that has not finished after this long ends the process (a hung Faust shutdown).
SHUTDOWN_GRACE_S = 15.0
#: The format of what the worker logs before Faust's logging is set up (Faust's own).
EARLY_FORMAT = "[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"
#: The longest a stopping worker waits to publish its users' state and deltas (several workers).
HAND_OVER_S = 5.0
#: The longest a stopping worker waits for its batch in progress and its final snapshot.
STOP_SNAPSHOT_S = 8.0


class Worker(faust.Worker):
    """``faust.Worker`` that, on a signal, keeps what was learned before it leaves: no batch
    from then on, the final snapshot, and with several workers the users' state and deltas
    handed over; then Faust's own stop, under a watchdog."""

    #: the pipeline whose state a stop keeps (set by :func:`run_worker`)
    pipeline: Pipeline | None = None
    _stop_task: asyncio.Future[None] | None = None

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not self._signal_stop_time:
            watchdog = threading.Timer(SHUTDOWN_GRACE_S, _force_exit, args=(signum,))
            watchdog.daemon = True
            watchdog.start()
        if self._stop_task is not None:  # a second signal: Faust's stop at once
            super()._schedule_shutdown(signum)
            return
        self._stop_task = asyncio.ensure_future(self._keep_then_stop(signum))

    async def _keep_then_stop(self, signum: signal.Signals) -> None:
        """The final snapshot first (on disk: whatever the broker does), then the hand-over
        (through the broker), then Faust's stop. A broker away holds Faust's stop until the
        watchdog ends the process (exit 1), and used to cost the final snapshot with it."""
        log = logging.getLogger("streamrec")
        if self.pipeline is not None:
            try:
                await asyncio.wait_for(self.pipeline.stop(), STOP_SNAPSHOT_S)
            except Exception:  # a batch that does not end: the snapshot after the loop, if any
                log.exception("final snapshot at stop not written")
        hand_over = getattr(self.app, "streamrec_hand_over", None)
        if hand_over is not None:  # several workers: users' state and deltas out before leaving
            try:
                await asyncio.wait_for(hand_over(), HAND_OVER_S)
            except Exception:  # the broker gone, or too slow: the next owner learns them again
                log.exception("hand-over at stop not completed")
        # the agents take no batch now (a batch that comes waits to be cancelled, unacked: it
        # is read again): Faust's stop must not wait for them to ack it (it would hang)
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
    pipeline.sink.setup()  # a refused password or TLS: a clear error now, not at a batch
    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.pipeline = pipeline
    try:
        return worker.execute_from_commandline()
    finally:  # stopped (a signal, or an error): what was learned is kept
        if not pipeline.stopped:  # (a signal's stop took the final snapshot already)
            pipeline.final_snapshot()
        try:  # and, with several workers, handed to the others
            publish_at_stop(pipeline, settings)
        except Exception:  # the broker gone: the next owner learns the events since again
            logging.getLogger("streamrec").exception("last users' state and deltas not sent")
        pipeline.host.close()  # the engine's process, if it has one (its state is saved)
