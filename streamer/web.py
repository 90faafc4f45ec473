"""The worker's web pages, on Faust's web server (``STREAMREC_WEB_PORT``, loopback by default).

- ``/metrics``: Prometheus (:mod:`streamer.telemetry`);
- ``/health``: alive, the event loop not stalled; ``/ready``: partitions assigned, caught up,
  Redis reachable (503 with the reason otherwise), for an orchestrator's probes;
- ``/dashboard``: a live page over the JSON below (``streamer/static/dashboard.html``: no build
  step, nothing from a CDN; it polls ``/api/summary`` every 2 s and draws inline SVG);
- ``/api/flow``: what the consumer fetches, pauses and buffers (logged at a stall, too);
- ``/api/summary``: figures over time, the strategy mix, the exposure's Lorenz curve;
- ``/api/user/{user}``: the user's list as published, with each item's score and strategy,
  and the lists of their last events; ``/api/item/{item}``: similar items, who is shown it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from importlib import resources
from typing import Any

import faust
import numpy as np
from aiokafka.conn import CloseReason

from streamer.client import get_recommendations, get_similar
from streamer.exits import exit_for_restart
from streamer.pipeline import Pipeline
from streamer.recommender import RecList
from streamer.room import EngineRoom
from streamer.settings import Settings
from streamer.telemetry import CONTENT_TYPE_LATEST, Health, Telemetry

log = logging.getLogger(__name__)

#: Samples of the summary kept for the charts (one per ``SAMPLE_S``): 30 minutes.
SAMPLE_S = 2.0
SAMPLES = 900
#: Users whose last lists are kept for the lookup, and lists per user.
LOOKUP_USERS, LOOKUP_LISTS = 10_000, 5


class ListHistory:
    """The last ``per_user`` lists of the ``users`` users most recently published.

    >>> h = ListHistory(users=2, per_user=2)
    >>> for n, user in enumerate("aabc"):
    ...     h.add(user, {"n": n})
    >>> sorted(h.lists), [x["n"] for x in h.of("a")], h.of("missing")
    (['b', 'c'], [], [])
    """

    def __init__(self, users: int = LOOKUP_USERS, per_user: int = LOOKUP_LISTS) -> None:
        self.users, self.per_user = users, per_user
        self.lists: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()

    def add(self, user: str, entry: dict[str, Any]) -> None:
        kept = self.lists.pop(user, None) or deque(maxlen=self.per_user)
        kept.append(entry)
        self.lists[user] = kept
        while len(self.lists) > self.users:
            self.lists.popitem(last=False)

    def observe(self, lists: Sequence[RecList]) -> None:
        now = time.time()
        for rec in lists:
            self.add(
                rec.user,
                {
                    "published_ts": now,
                    "event_ts": rec.event_ts,
                    "context": rec.context,
                    "items": [item for item, _ in rec.items],
                    "strategies": rec.strategies,
                },
            )

    def of(self, user: str) -> list[dict[str, Any]]:
        return list(self.lists.get(user, ()))


class Series:
    """The summary's figures over time, sampled by a timer."""

    def __init__(self, pipeline: Pipeline, telemetry: Telemetry, samples: int = SAMPLES) -> None:
        self.pipeline, self.telemetry = pipeline, telemetry
        self.samples: deque[dict[str, Any]] = deque(maxlen=samples)
        self._last = (time.monotonic(), pipeline.stats.events)

    def sample(self, lag: int) -> None:
        now, events = time.monotonic(), self.pipeline.stats.events
        then, before = self._last
        self._last = (now, events)
        model = self.pipeline.model_report()
        fresh = np.asarray(self.pipeline.stats.recent_freshness()) * 1000.0
        self.samples.append(
            {
                "ts": time.time(),
                "events": events,
                "events_per_s": round((events - before) / (now - then), 1) if now > then else 0.0,
                "freshness_p50_ms": _pct(fresh, 50),
                "freshness_p99_ms": _pct(fresh, 99),
                "lag": lag,
                "hit_rate": model.get("hit_rate"),
                "rmse": model.get("rmse"),
                "coverage": model.get("coverage"),
            }
        )


def watch(app: faust.App, work: Pipeline, settings: Settings) -> tuple[Telemetry, Health]:
    """The worker's telemetry and health, and the heartbeat that acts on a stall (logs the
    consumer's flow state, exits 1 after ``stall_exit_s``): registered whether or not the web
    server is on."""
    telemetry = Telemetry(
        work, highwater=lambda: _highwaters(app), committed=lambda: _committed(app)
    )
    health = Health(
        assigned=lambda: [(tp.topic, tp.partition) for tp in _assignment(app)],
        lag=lambda: sum(telemetry.lags().values()),
        redis_ok=lambda: work.sink.reachable,  # (no round trip in the event loop)
        stall_s=settings.health_stall_s,
        max_lag=settings.ready_max_lag,
        last_batch=lambda: work.stats.last_batch,
    )
    # per stall: the flow state logged and the fetch restarted (step 1), the flow state again
    # once as long again has passed (step 2: what came of the restart)
    step = [0]

    @app.timer(1.0)
    async def heartbeat() -> None:
        health.beat()
        stalled = health.stalled_s()
        if not stalled:
            step[0] = 0
        elif step[0] == 0:
            step[0] = 1
            log.error("no batch for %.0f s while messages wait: %s", stalled, flow_state(app))
            if restart_fetch(app):
                work.stats.fetch_restarts += 1
                log.warning("a fetch in flight all along: connection closed, fetch restarted")
        elif step[0] == 1 and stalled > 2 * settings.health_stall_s:
            step[0] = 2
            log.error("still no batch after %.0f s: %s", stalled, flow_state(app))
        if settings.stall_exit_s and stalled > settings.stall_exit_s:
            # the consumer stopped fetching while messages wait (seen on the local broker: a
            # fetch it never answered, not ended by a new connection either): exit non-zero,
            # so that a supervisor restarts the worker, which resumes from its snapshot
            exit_for_restart(log, "no batch for %.0f s while messages wait", stalled)

    async def assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        work.stats.rebalances += 1

    app.on_partitions_assigned.connect(assigned)
    return telemetry, health


def serve(
    app: faust.App, work: Pipeline, settings: Settings, telemetry: Telemetry, health: Health
) -> None:
    """Register the pages and the timer that samples the dashboard's series on ``app``."""
    history = ListHistory()
    work.published_observers.append(history.observe)
    series = Series(work, telemetry)
    page = resources.files("streamer").joinpath("static/dashboard.html").read_text("utf-8")

    @app.timer(SAMPLE_S)
    async def sample() -> None:
        series.sample(sum(telemetry.lags().values()))

    @app.page("/metrics")
    async def metrics(view: Any, request: Any) -> Any:
        # aiohttp takes the charset apart: "text/plain; version=0.0.4" (UTF-8 by default)
        content_type = CONTENT_TYPE_LATEST.split("; charset")[0]
        return view.bytes(telemetry.exposition(), content_type=content_type)

    @app.page("/health")
    async def live(view: Any, request: Any) -> Any:
        verdict = health.live()
        return view.json(verdict.detail | {"ok": verdict.ok}, status=200 if verdict.ok else 503)

    @app.page("/ready")
    async def ready(view: Any, request: Any) -> Any:
        verdict = health.ready()
        return view.json(verdict.detail | {"ok": verdict.ok}, status=200 if verdict.ok else 503)

    @app.page("/api/flow")
    async def flow(view: Any, request: Any) -> Any:
        return view.json(flow_state(app))

    @app.page("/dashboard")
    async def dashboard(view: Any, request: Any) -> Any:
        return view.html(page)

    @app.page("/api/summary")
    async def summary(view: Any, request: Any) -> Any:
        exposure = await work.host.call(EngineRoom.exposure)
        return view.json(_summary(work, series, exposure))

    @app.page("/api/user/{user}")
    async def user(view: Any, request: Any, user: str) -> Any:
        found = get_recommendations(
            work.sink.client, user, settings.top_k, prefix=settings.redis_prefix
        )
        # what this worker's engine holds of the user
        state = await work.host.call(EngineRoom.user_state, user)
        return view.json({"user": user, "list": found, "history": history.of(user), "state": state})

    @app.page("/api/item/{item}")
    async def item(view: Any, request: Any, item: str) -> Any:
        state = await work.host.call(EngineRoom.item_state, item)
        return view.json(_item(work, settings, item, state))


def _summary(work: Pipeline, series: Series, exposure: np.ndarray) -> dict[str, Any]:
    """The dashboard's figures; ``exposure``: how many lists showed each item shown."""
    model = work.model_report()
    status = work.status
    lorenz = _lorenz(exposure, status.catalogue)  # sorts it
    return {
        "worker": work.report(advance=False),
        "model": model,
        "series": list(series.samples),
        "partitions": {f"{t}[{p}]": lag for (t, p), lag in sorted(series.telemetry.lags().items())},
        "strategies": model.get("strategies", {}),
        "lorenz": lorenz,
        "index": {"backend": status.index_backend, "items": status.index_items},
    }


def _item(work: Pipeline, settings: Settings, item: str, state: dict[str, Any]) -> dict[str, Any]:
    """The item page: ``state`` (:meth:`EngineRoom.item_state`) and its similar items."""
    similar = get_similar(work.sink.client, item, 10, settings.redis_prefix)
    return {
        "item": item,
        "known": state["known"],
        "tags": state["tags"],
        "similar": similar,
        "shown_to": state["shown_to"],
        "shown_to_users": state["shown_to_users"],
        "vector": state["vector"],  # the ranking model's [b_i, e_i] as the index holds it
    }


def _lorenz(counts: np.ndarray, catalogue: int, points: int = 50) -> list[list[float]]:
    """The exposure's Lorenz curve over the whole catalogue (items never shown count 0):
    ``[share of items, share of exposure]`` from the least shown up.

    >>> _lorenz(np.array([1.0, 1.0]), 4, points=4)
    [[0.0, 0.0], [0.25, 0.0], [0.5, 0.0], [0.75, 0.5], [1.0, 1.0]]
    """
    total = float(counts.sum())
    if catalogue == 0 or total == 0:
        return []
    full = np.concatenate([np.zeros(max(0, catalogue - len(counts))), np.sort(counts)])
    cumulative = np.concatenate([[0.0], np.cumsum(full) / total])
    at = np.linspace(0, len(full), points + 1).round().astype(int)
    return [[round(float(a) / len(full), 4), round(float(cumulative[a]), 4)] for a in at.tolist()]


def _assignment(app: faust.App) -> set[Any]:
    try:
        return set(app.consumer.assignment())
    except Exception:  # the consumer is not up yet
        return set()


def flow_state(app: faust.App) -> dict[str, Any]:
    """What holds a partition back, for a stall's log line: Faust's flow control, the
    partitions it fetches, pauses or holds for a full stream buffer, each agent's buffer (and
    the partitions waiting for it to drain), and what aiokafka's fetcher has buffered."""

    def tps(values: Any) -> list[str]:
        return sorted(f"{tp.topic}:{tp.partition}" for tp in values or ())

    consumer: Any = app.consumer
    state: dict[str, Any] = {}
    try:
        state["flow_active"] = consumer.flow_active
        state["flow_control_active"] = app.flow_control.is_active()
        state["assigned"] = tps(consumer.assignment())
        state["active"] = tps(consumer._active_partitions)
        state["buffered"] = tps(consumer._buffered_partitions)
        state["paused"] = tps(consumer._paused_partitions)
        state["buffers"] = {
            agent.name: {
                "size": agent.channel.queue.qsize(),
                "pending_drops": len(agent.channel.queue._pending_pressure_drop_callbacks),
            }
            for agent in app.agents.values()
        }
        kafka = consumer._thread._consumer
        fetcher = kafka._fetcher
        state["fetcher_records"] = tps(fetcher._records)
        state["fetch_task_done"] = fetcher._fetch_task.done()
        state["fetches_in_flight"] = sorted(map(str, fetcher._in_flight))
        pending = _pending_fetches(fetcher)
        state["fetch_tasks_pending"] = len(pending)
        state["fetch_tasks_awaiting"] = [_awaiting(t.get_coro()) for t in pending]
        state["consumer_thread_alive"] = consumer._thread._thread.is_alive()
        assigned = {tp: kafka._subscription._assigned_state(tp) for tp in kafka.assignment()}
        state["awaiting_reset"] = tps(tp for tp, at in assigned.items() if at.awaiting_reset)
        state["kafka_paused"] = tps(kafka._subscription.paused_partitions())
        state["positions"] = {
            f"{tp.topic}:{tp.partition}": at.position for tp, at in assigned.items()
        }
    except Exception as exc:  # internals of another Faust or aiokafka version
        state["error"] = repr(exc)
    return state


def restart_fetch(app: faust.App) -> bool:
    """Cancel aiokafka's fetches in flight and close their connections (in the consumer's own
    thread), so that the fetcher sends them again on new connections; True if there were any.

    On the local broker a fetch was seen to get no answer, ever: the consumer waited on it with
    every partition active and nothing buffered (the flow state logged at the stall), and its
    request timeout did not end it. Closing the connection fails the request, as aiokafka does
    itself when a request times out."""
    try:
        thread: Any = app.consumer._thread  # type: ignore[attr-defined]
        kafka = thread._consumer
        fetcher, client = kafka._fetcher, kafka._client
        stuck = _pending_fetches(fetcher)
        nodes = set(fetcher._in_flight)
    except AttributeError:  # another Faust or aiokafka version
        return False
    if not stuck:
        return False

    def restart() -> None:
        for (node, _group), connection in list(client._conns.items()):
            if node in nodes:
                connection.close(reason=CloseReason.CONNECTION_TIMEOUT)
        for task in stuck:
            task.cancel()

    thread.thread_loop.call_soon_threadsafe(restart)
    return True


def _pending_fetches(fetcher: Any) -> list[Any]:
    """aiokafka's fetch tasks still waiting (on the broker's answer)."""
    return [task for task in fetcher._pending_tasks if not task.done()]


def _awaiting(coroutine: Any) -> list[str]:
    """Where a suspended coroutine waits: its chain of awaits, outermost first, ending with
    what it awaits last (a future, often)."""
    chain: list[str] = []
    while coroutine is not None and len(chain) < 20:
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is None:
            chain.append(repr(coroutine)[:300])
            break
        code = frame.f_code
        chain.append(f"{code.co_name} ({code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})")
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)
    return chain


def _committed(app: faust.App) -> dict[tuple[str, int], int]:
    """Per partition, the offset Faust last committed (its own record of it)."""
    try:
        found = dict(app.consumer._committed_offset)  # type: ignore[attr-defined]
    except Exception:  # the consumer is not up yet, or another Faust version
        return {}
    return {(tp.topic, tp.partition): int(o) for tp, o in found.items() if o is not None}


def _highwaters(app: faust.App) -> dict[tuple[str, int], int]:
    out = {}
    for tp in _assignment(app):
        try:
            high = app.consumer.highwater(tp)
        except Exception:  # not fetched yet
            continue
        if high is not None:
            out[tp.topic, tp.partition] = int(high)
    return out


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None
