"""A plain aiokafka consumer behind a producer on the local broker: does it stall as the worker
does (docs/reliability.md, "A consumer that stops fetching")?

    python -m benchmarks.fetch_probe [--events 400000] [--rate 3000] [--group]

On its own stack: kafka-python produces ``--events`` clicks at ``--rate``; an aiokafka consumer
with the worker's fetch settings (10 ms fetch wait, 4 MB per partition) reads them at most
2,000/s (a backlog builds up); ``--group``: in a consumer group over three topics, committing
every 2.8 s, as Faust does. Prints how many it read, or where it stalled (no record for 30 s):
its positions and the fetches in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from benchmarks.stream import local_stack
from streamer.stack import create_topics


def produce(broker: str, total: int, rate: float, done: threading.Event) -> None:
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=5, batch_size=256 * 1024, acks=1)
    started = time.time()
    for n in range(total):
        user = f"u{n // 3}"
        value = {"user": user, "item": f"i{n % 10000}", "type": "click", "ts": float(n)}
        producer.send("clicks", key=user.encode(), value=json.dumps(value).encode())
        if n % 1000 == 0 and (ahead := n / rate - (time.time() - started)) > 0:
            time.sleep(ahead)
    producer.flush()
    done.set()


async def consume(broker: str, total: int, group: bool, done: threading.Event) -> dict:
    topics = ("clicks", "contexts", "items") if group else ("clicks",)
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=broker,
        group_id="probe" if group else None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    read, last, started, committed = 0, time.time(), time.time(), time.time()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
            n = sum(len(records) for records in batch.values())
            read += n
            if n:
                last = time.time()
            await asyncio.sleep(0.0005 * n)  # at most 2,000/s: a backlog builds up
            if group and time.time() - committed > 2.8:
                await consumer.commit()
                committed = time.time()
            if time.time() - last > 30:
                state = consumer._subscription
                return {
                    "stalled_at": read,
                    "fetches_in_flight": sorted(map(str, consumer._fetcher._in_flight)),
                    "positions": {
                        f"{tp.topic}:{tp.partition}": state._assigned_state(tp).position
                        for tp in consumer.assignment()
                    },
                }
            if done.is_set() and read >= total:
                return {"read": read, "seconds": round(time.time() - started)}
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--rate", type=float, default=3000.0)
    parser.add_argument("--group", action="store_true")
    args = parser.parse_args()
    with local_stack() as settings:
        create_topics(settings.broker, ("clicks", "contexts", "items"), 4)
        done = threading.Event()
        threading.Thread(
            target=produce, args=(settings.broker, args.events, args.rate, done), daemon=True
        ).start()
        print(json.dumps(asyncio.run(consume(settings.broker, args.events, args.group, done))))


if __name__ == "__main__":
    main()
