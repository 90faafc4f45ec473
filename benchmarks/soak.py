"""Memory over a long stream of ever new users and items, with and without expiry (in process).

    python -m benchmarks.soak [--events 1000000] [--ttl 3600] [--new-item-every 100]

The engine (no Kafka) learns a synthetic stream: one event per second of stream time, each user
active for three consecutive events then never again (a stream of ever new users), items
Zipf(1.1) over a window of 10,000 items with a tag each that slides by one new item every
``--new-item-every`` events (0: a fixed catalogue), so old items stop being chosen. It prints
the process's RSS every 100,000 events, once with ``STREAMREC_USER_TTL_S`` and
``STREAMREC_ITEM_TTL_S`` = ``--ttl`` and once with expiry off, each in a fresh process; the
figure is the growth of RSS after warm-up (from the 200,000th event to the last).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import psutil

from streamer.engine import Engine
from streamer.events import Click, ItemEvent
from streamer.settings import Settings

ITEMS = 10_000
EVERY = 100_000


def run(events: int, ttl: float, new_item_every: int) -> dict[str, object]:
    """One stream in this process; RSS (MB) every EVERY events."""
    rng = np.random.default_rng(0)
    engine = Engine(Settings(user_ttl_s=ttl, item_ttl_s=ttl))
    engine.process([ItemEvent(item=f"i{n}", ts=0.0, tags=[f"t{n % 50}"]) for n in range(ITEMS)])
    items = (rng.zipf(1.1, events) - 1) % ITEMS
    if new_item_every:  # the window slides: item i + n // every, the newest the most popular
        items = ITEMS - 1 - items + np.arange(events) // new_item_every
    process = psutil.Process()
    rss: list[float] = []
    pauses: list[float] = []  # each compaction's (Engine.compact)
    compact = engine.compact

    def timed() -> np.ndarray:
        began = time.perf_counter()
        mapping = compact()
        pauses.append(time.perf_counter() - began)
        return mapping

    engine.compact = timed  # type: ignore[method-assign]
    started = time.perf_counter()
    for start in range(0, events, 200):
        batch = [
            Click(user=f"u{n // 3}", item=f"i{items[n]}", type="click", ts=float(n))
            for n in range(start, min(start + 200, events))
        ]
        engine.process(batch)
        if (start + 200) % EVERY == 0:
            rss.append(round(process.memory_info().rss / 1e6, 1))
    warm = rss[1] if len(rss) > 1 else rss[0]
    return {
        "user_ttl_s": ttl,
        "item_ttl_s": ttl,
        "new_item_every": new_item_every,
        "events": events,
        "seconds": round(time.perf_counter() - started, 1),
        "users_kept": len(engine.users),
        "expired_users": engine.expired_users,
        "catalogue": len(engine.catalogue),
        "expired_items": engine.expired_items,
        "compactions": len(pauses),
        "compaction_pause_ms_max": round(1e3 * max(pauses, default=0.0), 1),
        "rss_mb_every_100k": rss,
        "growth_after_warm_up": round(rss[-1] / warm - 1.0, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--ttl", type=float, default=3600.0)
    parser.add_argument("--new-item-every", type=int, default=100)
    parser.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # the child: one run, its figures as JSON
        print(json.dumps(run(args.events, args.one, args.new_item_every)), flush=True)
        return
    for ttl in (args.ttl, 0.0):
        command = [sys.executable, "-m", "benchmarks.soak", "--events", str(args.events)]
        command += ["--new-item-every", str(args.new_item_every)]
        subprocess.run([*command, "--one", str(ttl)], check=True)


if __name__ == "__main__":
    main()
