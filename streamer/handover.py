"""A user's own state, out of one worker's engine and into another's (issue 12, point 2).

With several workers (``streamer.sync``), what is learned about a user stays with the worker
that owns the user's partition: the rows of its ``user=`` feature in both models, its history
and context, its last list, its rating neighbourhood (bias and recent ratings). When the
partition moves (a worker stopped, killed, or a rebalance), the new owner loads the state of
the partition's users, as the old owner last published it (``streamer.pipeline``), and resumes
the partition where that state was taken.

The state is JSON-able: items by name (ids and slots differ between workers), parameter rows as
lists of floats (exact through JSON's float repr).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamer.engine import Engine
from streamer.features import user_feature

#: The factorization machines whose user rows travel with the user, by name.
MODELS = ("ranker", "rater")


def export_user(
    engine: Engine, user: str, slot_keys: dict[int, str] | None = None
) -> dict[str, Any]:
    """``user``'s own state in ``engine`` (``slot_keys``: the rating model's item slots by
    item key, :func:`item_slot_keys`, computed once for many users).

    >>> import json
    >>> from streamer.events import Click, ItemEvent
    >>> from streamer.settings import Settings
    >>> s = Settings(n_factors=4, sync_interval_s=1.0)
    >>> a, b = Engine(s), Engine(s)
    >>> items = [ItemEvent(item=i, ts=0.0) for i in "pqr"]
    >>> _ = a.process(items), b.process(items)
    >>> _ = a.process([Click(user="u", item="p", type="rating", value=5.0, ts=1.0,
    ...                      context={"device": "tv"})])
    >>> import_user(b, "u", json.loads(json.dumps(export_user(a, "u"))))
    >>> [b.catalogue.item_of(i) for i in b.users.recent("u", 5)], b.users.context("u")
    (['p'], {'device': 'tv'})
    >>> rows = lambda e: e.model.ranker.table.latents[e.model.ranker.table.ids["user=u"]]
    >>> bool((rows(a) == rows(b)).all()), b.model.neighbours.recent("user=u")[1]
    (True, [1.5])
    """
    name = engine.catalogue.item_of
    state: dict[str, Any] = {
        "history": [name(i) for i in engine.users.recent(user, engine.users.history_size)],
        "context": engine.users.context(user),
        "shown": [name(i) for i in engine.shown.get(user, ())],
        "last_seen": engine.last_seen(user),
    }
    key = user_feature(user)
    for model in MODELS:
        table = getattr(engine.model, model).table
        row = table.ids.get(key)
        if row is not None:
            state[model] = [float(table.weights[row]), *table.latents[row].tolist()]
    neighbours = engine.model.neighbours
    recent = neighbours.recent(key)
    if recent is not None:
        keys = slot_keys if slot_keys is not None else item_slot_keys(engine)
        slots, residuals = recent
        state["neighbours"] = {
            "bias": float(neighbours.user_bias[neighbours.slots[key]]),
            "recent": [[keys[s], r] for s, r in zip(slots, residuals, strict=True) if s in keys],
        }
    return state


def import_user(
    engine: Engine, user: str, state: dict[str, Any], slots: dict[str, int] | None = None
) -> None:
    """Load ``user``'s state (from :func:`export_user`) into ``engine``, replacing its own
    (``slots``: the rating model's item slots by item key, ``engine.model.item_slots()``,
    computed once for many users)."""
    engine.users.forget(user)
    catalogue = engine.catalogue
    for item in state["history"]:
        engine.users.add(user, catalogue.id_of(item))
    engine.users.set_context(user, dict(state["context"]))
    engine.shown[user] = tuple(catalogue.id_of(item) for item in state["shown"])
    if state["last_seen"] is not None:
        engine.seen_at(user, float(state["last_seen"]))
    key = user_feature(user)
    for model in MODELS:
        values = state.get(model)
        if values is not None:
            table = getattr(engine.model, model).table
            row = table.row(key)
            table.weights[row] = values[0]
            table.latents[row] = values[1:]
            table.learned[row] = True
            if table.shared is not None:  # a user's rows are never shared (streamer.sync)
                table.shared[0][row], table.shared[1][row] = table.weights[row], table.latents[row]
    near = state.get("neighbours")
    if near is not None:
        slots = slots if slots is not None else engine.model.item_slots()
        pairs = [(slots[k], r) for k, r in near["recent"] if k in slots]
        engine.model.neighbours.load_user(
            key, near["bias"], np.array([s for s, _ in pairs], np.int64), [r for _, r in pairs]
        )


def item_slot_keys(engine: Engine) -> dict[int, str]:
    """The rating model's item slots and their item keys (``item=...``)."""
    return {slot: key for key, slot in engine.model.item_slots().items()}
