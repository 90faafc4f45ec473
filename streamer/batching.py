"""Micro-batches from a Faust stream: ``take_events`` that does not wait after a late batch.

Faust's ``Stream.take_events(max_, within)`` yields when ``max_`` events are buffered, or
``within`` seconds after it began to wait, and it begins to wait when the previous batch is
done. A batch that took ``P`` seconds is therefore followed by up to ``within`` more seconds of
waiting even when the events that came in meanwhile are all there: a cycle of ``P + within``,
and an event waits about half a cycle for its batch. At 1,000 events/s on MovieLens the worker's
batches took ~31 ms, so its cycle was ~51 ms and its freshness p50 ~77 ms.

:func:`take_batches` ends the wait earlier too: when every event that has come in is in the
buffer (the stream's queue is empty, and the log does not hold more messages past the
buffered ones than are buffered) and ``within`` seconds have passed since the previous batch
*began*. Batches then begin at most every ``within`` seconds, or right after one another when a
batch takes longer; while a backlog is read it behaves as Faust's, batches as large as the wait
lets them grow.

A backlog is told by the log, not by the queue alone: right after a long batch the queue is
often empty while the consumer's thread holds what it fetched meanwhile, and a rule that read
only the queue then yielded a batch of one or two events, again and again: on pre-produced
MovieLens ratings the worker took about twice as many batches (and lists) per event as with
Faust's rule, and learned a third fewer events a second (session 12, docs/benchmarks.md).
Each buffered partition's last offset is therefore compared with its highwater (the log's end
in the consumer's last fetch response): when more messages wait there than the batch holds, it
waits for them as Faust's would.

Catching up on a backlog, Faust's own rule still cuts a batch ``within`` after the previous one
ended, at whatever has been buffered by then (~100 events at 10 ms here): when the log holds
enough to fill the batch, it waits on until the batch is full (``batch_size``), for at most
``CATCH_UP_S`` (:func:`catching_up`; session 15: on pre-produced MovieLens ratings the worker
learned ~15% more events a second, docs/benchmarks.md). A paced stream is never that far behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

#: While the previous batch began long enough ago but events are still being buffered, the
#: queue is looked at again this often.
POLL_S = 0.001
#: Catching up (the log holds enough to fill a batch), a batch waits to be full for at most this
#: long after the previous one ended (instead of ``within``): see :func:`catching_up`.
CATCH_UP_S = 0.25


def due(
    now: float,
    began: float,
    ended: float,
    within: float,
    queue_empty: bool,
    buffered: int,
    behind: Callable[[], bool] = lambda: False,
) -> bool:
    """Whether a batch of ``buffered`` events is due at ``now``: ``within`` seconds after the
    previous batch ``ended`` (Faust's rule), or once the queue is empty, the log holds no backlog
    past the buffered events (not ``behind()``, asked last: :func:`behind`) and ``within``
    seconds have passed since the previous batch ``began``.

    >>> due(now=1.030, began=1.0, ended=1.025, within=0.02, queue_empty=True, buffered=5)
    True
    >>> due(now=1.030, began=1.0, ended=1.025, within=0.02, queue_empty=False, buffered=5)
    False
    >>> due(now=1.046, began=1.0, ended=1.025, within=0.02, queue_empty=False, buffered=5)
    True
    >>> due(now=1.010, began=1.0, ended=1.005, within=0.02, queue_empty=True, buffered=5)
    False
    >>> due(now=9.0, began=1.0, ended=1.005, within=0.02, queue_empty=True, buffered=0)
    False
    >>> due(now=1.030, began=1.0, ended=1.025, within=0.02, queue_empty=True, buffered=5,
    ...     behind=lambda: True)  # a backlog: the queue is empty only for now
    False
    """
    if not buffered:
        return False
    return now - ended >= within or (queue_empty and now - began >= within and not behind())


def catching_up(now: float, ended: float, room: int, backlog: Callable[[], int]) -> bool:
    """Whether a batch due by Faust's rule waits on, to be full: the log holds at least what
    fills it (``backlog()``, messages past the buffered ones, against the ``room`` left in the
    batch), and the previous batch ended less than ``CATCH_UP_S`` ago. A worker reading a
    backlog (after a restart, an outage, a burst) then learns it in batches of ``batch_size``
    instead of what ``within`` buffers (~100 events at 10 ms): a list per user per batch, and
    the batch's fixed costs, over 5 times as many events (the engine's CPU per event at batches
    of 1,000 is ~0.7 of that at 100, docs/benchmarks.md). A paced stream never holds a batch's
    worth past the buffered events, so its batches, and its freshness, are as before.

    >>> catching_up(now=1.03, ended=1.0, room=800, backlog=lambda: 50_000)
    True
    >>> catching_up(now=1.03, ended=1.0, room=800, backlog=lambda: 30)  # a paced stream
    False
    >>> catching_up(now=1.30, ended=1.0, room=800, backlog=lambda: 50_000)  # waited enough
    False
    """
    return now - ended < CATCH_UP_S and backlog() >= room


def backlog(last: dict[Any, int], highwater: Callable[[Any], int | None]) -> int:
    """Messages in the log past the buffered ones (``last``: per partition, the offset of its
    last buffered message; ``highwater``: the offset of a partition's next message, None when
    not known yet).

    >>> backlog({"a": 9, "b": 5}, {"a": 10, "b": 700}.get)
    694
    """
    waiting = 0
    for tp, offset in last.items():
        end = highwater(tp)
        if end is not None:
            waiting += max(end - offset - 1, 0)
    return waiting


def behind(last: dict[Any, int], highwater: Callable[[Any], int | None], buffered: int) -> bool:
    """Whether the log holds more messages past the buffered ones than are buffered (``last``:
    per partition, the offset of its last buffered message; ``highwater``: the offset of a
    partition's next message, None when not known yet): a backlog, where waiting for them more
    than doubles the batch. A few messages past them (a paced stream, fetched a moment after
    the queue was read) are not one: the batch goes, and they come with the next.

    >>> ends = {"a": 10, "b": 700}
    >>> behind({"a": 9}, ends.get, 5), behind({"a": 6}, ends.get, 5), behind({"c": 1}, ends.get, 1)
    (False, False, False)
    >>> behind({"a": 9, "b": 5}, ends.get, 5)  # 694 messages of b not buffered yet
    True
    """
    return backlog(last, highwater) > buffered


def _wait_s(now: float, began: float, within: float) -> float:
    """How long to wait for more events before looking again (some are buffered)."""
    until = began + within - now
    return until if until > 0 else POLL_S


def take_batches(
    stream: Any, max_: int, within: float, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[Sequence[Any]]:
    """Lists of at most ``max_`` events of ``stream`` (a ``faust.Stream``), acknowledged once
    the caller is done with each; see the module's docstring for when a list is yielded.

    The buffering is Faust's ``take_events``' (a processor on the stream, drained passively);
    only the condition of the wait differs."""
    batches = _take(stream, max_, within, clock)
    agens = getattr(stream, "_active_agens", None)
    if agens is not None:  # closed with the stream, as Faust does for its own take_events
        agens.add(batches)
    return batches


async def _take(
    stream: Any, max_: int, within: float, clock: Callable[[], float]
) -> AsyncIterator[Sequence[Any]]:
    buffer: list[Any] = []
    events: list[Any] = []
    last: dict[Any, int] = {}  # per partition, the offset of its last buffered message
    wake = asyncio.Event()  # the first event of a batch came in, or the buffer is full
    buffer_consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    channel_it = stream.channel.__aiter__()

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:  # a batch is being handled: hold on to the next event
                try:
                    await consuming
                finally:
                    consuming = None
            buffer.append(value)
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_batches found current_event is None")
            events.append(event)
            message = getattr(event, "message", None)
            if message is not None:
                last[message.tp] = message.offset
            if len(buffer) == 1:
                wake.set()
            if len(buffer) >= max_:
                wake.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:  # pragma: no cover
            raise
        except Exception as exc:  # as Faust's take_events
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged below, once handled
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)
    queue = stream.channel.queue
    highwater = _highwater(stream)

    def lagging() -> bool:
        return behind(last, highwater, len(buffer))

    def waiting() -> int:
        return backlog(last, highwater)

    began = ended = clock()
    try:
        while not stream.should_stop:
            while not stream.should_stop:
                now = clock()
                if len(buffer) >= max_:
                    break
                if due(now, began, ended, within, queue.empty(), len(buffer), lagging):
                    if not catching_up(now, ended, max_ - len(buffer), waiting):
                        break
                    timeout: float | None = ended + CATCH_UP_S - now  # woken when full
                else:
                    timeout = _wait_s(now, began, within) if buffer else None
                wake.clear()
                await stream.wait_for_stopped(wake, timeout=timeout)
            if not buffer:
                continue
            began = clock()
            consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                buffer.clear()
                last.clear()
                for event in events:
                    await stream.ack(event)
                events.clear()
                if not consuming.done():
                    consuming.set_result(None)
                buffer_consumed.set()
                ended = clock()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


def _highwater(stream: Any) -> Callable[[Any], int | None]:
    """The stream's consumer's highwater per partition (None where it cannot tell)."""
    consumer = getattr(getattr(stream, "app", None), "consumer", None)

    def highwater(tp: Any) -> int | None:
        try:
            end = consumer.highwater(tp) if consumer is not None else None
        except Exception:  # not assigned, or the consumer not started: no backlog known
            return None
        return end if isinstance(end, int) else None

    return highwater
