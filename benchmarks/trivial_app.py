"""Faust's own ceiling: the same app, topics and micro-batching as the worker, empty agents.

Each agent only counts its events and writes the count to Redis once per batch (as the worker
writes its progress), so the figure is what Faust costs before streamrec does any work. It
also answers the freshness benchmark's probe clicks (keys starting with ``probe-``, see
``benchmarks.stream.freshness_at``) with a list in the same write: the time from a probe's
send to that list is Faust's own floor of freshness on this machine.

    python -m benchmarks.trivial_app      # settings from STREAMREC_* like the worker
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import faust
import redis

from benchmarks.stream import PROBE_PREFIX
from streamer.app import base_app, batches
from streamer.settings import Settings
from streamer.worker import Worker


def create_trivial_app(settings: Settings) -> faust.App:
    app = base_app(settings, web=False)
    client = redis.Redis.from_url(settings.redis_url)
    count = [0]
    probe = PROBE_PREFIX.encode()

    for kind, name in settings.input_topics.items():
        topic = app.topic(name, key_type=bytes, value_type=bytes)

        async def empty(stream: faust.StreamT) -> None:
            async for events in batches(stream, settings):
                count[0] += len(events)
                progress = {"events": count[0], "ts": time.time()}
                with client.pipeline(transaction=False) as pipe:
                    pipe.set(f"{settings.redis_prefix}progress", json.dumps(progress))
                    for event in events:
                        key = event.message.key
                        if key and key.startswith(probe):
                            pipe.set(f"{settings.redis_prefix}rec:{key.decode()}", b"[]")
                    pipe.execute()

        app.agent(topic, name=f"trivial.{kind}")(empty)
    return app


def main() -> Any:
    worker = Worker(create_trivial_app(Settings.from_env()), loglevel="warning", quiet=True)
    return worker.execute_from_commandline()


if __name__ == "__main__":
    sys.exit(main())
