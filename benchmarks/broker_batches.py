"""What a fetch costs the local broker as a partition fills with small record batches.

    python -m benchmarks.broker_batches [--per-step 10000] [--steps 4] [--records-per-batch 1]

On its own local stack (Tansu's memory engine, as ``streamrec stack up`` runs it): one
partition is filled ``--per-step`` records at a time, ``--records-per-batch`` records to a
produced batch (1: what a producer paced over many partitions sends; the replay's bulk sends
put thousands in one). After each step, 20 fetches of the log's last 10 records and 20 of its
first 10, each given a second: prints the time a fetch took, the broker's CPU time per fetch
and how many records came back (0: the broker did not answer within the second).
"""

from __future__ import annotations

import argparse
import json
import time

import psutil
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks.stream import local_stack

FETCHES = 20


def _broker(port: str) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if command and "tansu" in command[0] and any(port in part for part in command):
            return process
    raise RuntimeError(f"no broker process listening on port {port}")


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _fetches(
    consumer: KafkaConsumer, tp: TopicPartition, offset: int, broker: psutil.Process
) -> str:
    """``FETCHES`` fetches of 10 records from ``offset``: ms each, broker CPU ms each, records."""
    started, cpu, got = time.perf_counter(), _cpu_s(broker), 0
    for _ in range(FETCHES):
        consumer.seek(tp, offset)
        got += sum(len(r) for r in consumer.poll(timeout_ms=1000, max_records=10).values())
    took = (time.perf_counter() - started) / FETCHES * 1000
    used = (_cpu_s(broker) - cpu) / FETCHES * 1000
    return f"{took:7.1f} ms, broker CPU {used:7.1f} ms, {got:3d} of {10 * FETCHES} records"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-step", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--records-per-batch", type=int, default=1)
    args = parser.parse_args()
    value = json.dumps({"user": "u1", "item": "i1", "type": "click", "ts": 1.0}).encode()
    with local_stack() as settings:
        broker = _broker(settings.broker.rsplit(":", 1)[1])
        producer = KafkaProducer(bootstrap_servers=settings.broker, linger_ms=1000, acks=1)
        consumer = KafkaConsumer(
            bootstrap_servers=settings.broker, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        tp = TopicPartition("fill", 0)
        sent = 0
        for _ in range(args.steps):
            for n in range(args.per_step):
                producer.send(tp.topic, value=value, partition=0)
                if (n + 1) % args.records_per_batch == 0:
                    producer.flush()  # the batch goes out with this many records
            producer.flush()
            sent += args.per_step
            consumer.assign([tp])
            end = consumer.end_offsets([tp])[tp]
            print(f"{sent:>8} records, {sent // args.records_per_batch:>8} batches:", flush=True)
            print(
                f"    the last 10:  {_fetches(consumer, tp, max(0, end - 10), broker)}", flush=True
            )
            print(f"    the first 10: {_fetches(consumer, tp, 0, broker)}", flush=True)
        producer.close()
        consumer.close()


if __name__ == "__main__":
    main()
