"""``take_batches`` over a stand-in for a Faust stream, on a simulated clock: each event
arriving moves the clock on, so batch sizes follow from the rules alone (no real time)."""

import asyncio
from types import SimpleNamespace
from typing import Any

from streamer.batching import take_batches

MAX, WITHIN = 1000, 0.02


class _Stream:
    """What ``take_batches`` uses of a ``faust.Stream``: its processors, waits and acks, and
    its consumer's highwater per partition (``ends``)."""

    def __init__(self, ends: dict[str, int]) -> None:
        self.should_stop = False
        self.enable_acks = True
        self._processors: list[Any] = []
        self.current_event: Any = None
        self.acked = 0
        self.channel = SimpleNamespace(
            queue=SimpleNamespace(empty=lambda: True), __aiter__=lambda: None
        )
        self.app = SimpleNamespace(consumer=SimpleNamespace(highwater=ends.get))

    def add_processor(self, processor: Any) -> None:
        self._processors.append(processor)

    def _enable_passive(self, channel: Any) -> None:
        pass

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def wait_for_stopped(self, event: asyncio.Event, timeout: float | None = None) -> None:
        await asyncio.sleep(0)  # the feeder runs; the clock moves with its events

    async def ack(self, event: Any) -> None:
        self.acked += 1


def _batches(events: int, gap_s: float, backlog: bool) -> tuple[list[int], int]:
    """Batch sizes of ``events`` arriving ``gap_s`` apart; the log holds them all from the
    start (``backlog``), or each only as it arrives (a paced stream). Returns the sizes and the
    events acknowledged."""
    clock = [0.0]
    ends = {"p0": events if backlog else 0}
    stream = _Stream(ends)

    async def feed() -> None:
        while not stream._processors:
            await asyncio.sleep(0)
        for offset in range(events):
            clock[0] += gap_s
            if not backlog:
                ends["p0"] = offset + 1
            stream.current_event = SimpleNamespace(message=SimpleNamespace(tp="p0", offset=offset))
            await stream._processors[0](offset)
            await asyncio.sleep(0)
        while not stream.should_stop:  # no more events; time goes on
            clock[0] += 0.001
            await asyncio.sleep(0)

    async def run() -> list[int]:
        feeder = asyncio.ensure_future(feed())
        sizes: list[int] = []
        batches = take_batches(stream, MAX, WITHIN, clock=lambda: clock[0])
        async for batch in batches:
            sizes.append(len(batch))
            if sum(sizes) == events:
                stream.should_stop = True
                break
        await batches.aclose()  # type: ignore[attr-defined]
        await feeder
        return sizes

    sizes = asyncio.run(run())
    return sizes, stream.acked


def test_a_backlog_is_learned_in_full_batches(monkeypatch):
    """Events arrive at 10,000 a second from a log that holds them all: while the log holds
    a batch's worth past the buffered events, batches are full, not the ~200 that Faust's rule
    (a batch ``within`` after the previous one) cuts; the tail goes by Faust's rule."""
    sizes, acked = _batches(2500, 0.0001, backlog=True)
    assert sizes[:2] == [MAX, MAX] and sum(sizes) == 2500 and acked == 2500
    assert max(sizes[2:]) <= 210  # the last 500: never a batch's worth behind them

    monkeypatch.setattr("streamer.batching.CATCH_UP_S", 0.0)  # Faust's rule alone
    sizes, _ = _batches(2500, 0.0001, backlog=True)
    assert sum(sizes) == 2500 and max(sizes) <= 210


def test_a_paced_stream_keeps_its_small_batches():
    """1,000 events a second, each in the log only as it arrives: batches of ~``within``'s
    worth of events (freshness), never held back to fill."""
    sizes, acked = _batches(300, 0.001, backlog=False)
    assert sum(sizes) == 300 and acked == 300
    assert max(sizes) <= 25 and len(sizes) >= 12
