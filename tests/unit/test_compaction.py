"""A sliding catalogue with STREAMREC_ITEM_TTL_S: expired items are dropped and the ids renumbered
(``Engine.compact``), so that memory follows the live catalogue, not every item ever seen; what
depends only on the events (histories, popularity, co-occurrence counts) is, by name, what an
engine that never compacts holds for the items that are still live."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from streamer import engine as engine_module
from streamer import snapshot
from streamer.engine import Engine
from streamer.evaluation.prequential import metrics_report, watched
from streamer.events import Click, ItemEvent
from streamer.settings import Settings
from streamer.strategies import ItemKNN, Query
from streamer.strategies.neural import Neural

SETTINGS = Settings(n_factors=4, top_k=10, candidates=10, item_ttl_s=200.0, seed=5)
COMPACT_MIN = 16


def _stream(n: int, seed: int = 0) -> list[Click | ItemEvent]:
    """Items slide: at time t users click among the 15 items from t // 20 on (each new item
    announced by an item event); an item left behind expires 200 later. Each user clicks ~16
    times (fewer than every window: the engines' recent items are their whole histories)."""
    rng = np.random.default_rng(seed)
    out: list[Click | ItemEvent] = []
    announced = -1
    for t in range(1, n + 1):
        first = t // 20
        while announced < first + 14:
            announced += 1
            out.append(ItemEvent(item=f"i{announced}", ts=float(t), tags=[f"g{announced % 4}"]))
        item = first + int(rng.integers(0, 15))
        user = f"u{t % 37 + 37 * (t // 600)}"
        out.append(Click(user=user, item=f"i{item}", type="click", ts=float(t)))
    return out


@dataclasses.dataclass
class Run:
    """An engine's lists over a stream, its largest catalogue, and how many listed items were
    not live items when listed."""

    lists: list[list[str]]
    largest: int
    stale: int


def _run(engine: Engine, events: list[Click | ItemEvent], batch: int = 25) -> Run:
    run = Run([], 0, 0)
    for n in range(0, len(events), batch):
        out = engine.process(events[n : n + batch])
        run.lists += [[item for item, _ in rec.items] for rec in out.lists]
        run.largest = max(run.largest, len(engine.catalogue))
        live = set(_live(engine))
        run.stale += sum(item not in live for rec in out.lists for item, _ in rec.items)
    return run


def _pair(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, events: list[Click | ItemEvent]
) -> tuple[Engine, Engine, Run]:
    """(an engine that never compacts, one that compacts from COMPACT_MIN expired items, the
    compacting one's run) over ``events``."""
    monkeypatch.setattr(engine_module, "COMPACT_MIN", 10**9)
    plain = watched(Engine(settings))
    _run(plain, events)
    monkeypatch.setattr(engine_module, "COMPACT_MIN", COMPACT_MIN)
    compact = watched(Engine(settings))
    return plain, compact, _run(compact, events)


def _live(engine: Engine) -> list[str]:
    c = engine.catalogue
    return [c.item_of(i) for i in range(len(c)) if i not in c.retired]


def test_expired_items_are_dropped_and_what_the_events_taught_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = _stream(3000)
    plain, compact, run = _pair(monkeypatch, SETTINGS, events)
    assert plain.compactions == 0 and compact.compactions >= 3
    assert plain.expired_items == compact.expired_items > 100
    # memory for the live items: at most as many expired ones again (and a batch's new ones)
    live = len(_live(compact))
    assert len(plain.catalogue) > 150 and run.largest <= max(2 * live, live + COMPACT_MIN) + 30
    assert len(compact.model.item_slots()) == len(compact.catalogue)
    assert set(_live(compact)) == set(_live(plain))

    # (expired since the last compaction: in both, until the next one)
    def names(engine: Engine, ids: list[int]) -> list[str]:
        return [engine.catalogue.item_of(i) for i in ids if i not in engine.catalogue.retired]

    def by_name(engine: Engine, counts: dict[int, float]) -> dict[str, float]:
        return dict(
            zip(
                names(engine, list(counts)),
                [counts[i] for i in counts if i not in engine.catalogue.retired],
                strict=True,
            )
        )

    for user in {e.user for e in events if isinstance(e, Click)}:
        assert names(compact, compact.users.recent(user, 500)) == names(
            plain, plain.users.recent(user, 500)
        )
    for key in plain.popularity.keys():  # noqa: SIM118 (not a dict)
        assert by_name(compact, compact.popularity.counts(key)) == by_name(
            plain, plain.popularity.counts(key)
        )
    assert by_name(compact, compact.item_counts) == by_name(plain, plain.item_counts)
    name_p, name_c = plain.catalogue.item_of, compact.catalogue.item_of

    # co-occurrence counts (the widest window): the same similar items, the same scores
    knn_p, knn_c = (
        next(s for s in e.strategies if isinstance(s, ItemKNN)) for e in (plain, compact)
    )
    for name in _live(plain)[:20]:
        similar_p = knn_p.similar(plain.catalogue.id_of(name), 10)
        similar_c = knn_c.similar(compact.catalogue.id_of(name), 10)
        assert [(name_c(i), s) for i, s in similar_c] == [(name_p(i), s) for i, s in similar_p]

    # every id held is one of the live catalogue's
    ids, _ = compact.index.all_items()
    assert sorted(name_c(i) for i in ids.tolist()) == sorted(_live(compact))
    size = len(compact.catalogue)
    for shown in compact.recommender.policy._last.values():
        assert shown.items.max(initial=-1) < size
    assert all(max(s, default=-1) < size for s in compact.shown.values())
    assert len(run.lists) > 2000 and run.stale == 0


def test_an_item_back_after_compaction_is_a_new_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "COMPACT_MIN", COMPACT_MIN)
    engine = Engine(SETTINGS)
    _run(engine, _stream(1500))
    assert engine.compactions and "i0" not in engine.catalogue
    out = engine.process([Click(user="u1", item="i0", type="click", ts=1501.0)])
    back = engine.catalogue.id_of("i0")
    assert back == len(engine.catalogue) - 1 and out.lists
    assert back in set(engine.index.all_items()[0].tolist())


def test_the_neural_strategy_is_renumbered_too(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dataclasses.replace(SETTINGS, strategies=(*SETTINGS.strategies, "neural"))
    monkeypatch.setattr(engine_module, "COMPACT_MIN", COMPACT_MIN)
    engine = Engine(settings)
    run = _run(engine, _stream(1500))
    neural = next(s for s in engine.strategies if isinstance(s, Neural))
    assert engine.compactions and neural.present.sum() <= len(engine.catalogue)
    assert run.lists and run.stale == 0
    proposed = neural.candidates([Query("u40", "", engine.users.recent("u40", 10))], 10)[0]
    assert proposed and all(engine.catalogue.item_of(i) in _live(engine) for i, _ in proposed)


def test_a_compacted_engine_restored_from_a_snapshot_goes_on_as_the_uninterrupted_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(engine_module, "COMPACT_MIN", COMPACT_MIN)
    events = _stream(2400, seed=2)
    half = 1200
    whole = watched(Engine(SETTINGS))
    lists_whole = _run(whole, events).lists
    first = watched(Engine(SETTINGS))
    lists_first = _run(first, events[:half]).lists
    restored, _ = snapshot.load(snapshot.save(first, {}, tmp_path).path, SETTINGS)
    lists_after = _run(restored, events[half:]).lists
    assert first.compactions >= 1 and restored.compactions > first.compactions
    assert lists_first + lists_after == lists_whole
    assert metrics_report(restored) == metrics_report(whole)
