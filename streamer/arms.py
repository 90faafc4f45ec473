"""Live A/B arms: two engines on one stream, each user served by the arm a stable hash gives.

``STREAMREC_AB`` names arm b's settings (``name=value,...``, as ``streamrec evaluate --ab``),
``STREAMREC_AB_SHARE`` its share of users. Both engines learn every event (a model learns
from all the traffic, as it would if it were the only one), so arm b costs a second engine's
CPU and memory; each user's list is the one of their arm, published with ``"arm"`` and a
``rec_id`` that names it (``a/...``, ``b/...``), so a click that carries it is credited to the
arm that served the list and not to the other. Per arm, over the arm's own users: the
prequential HitRate@k, NDCG@k and RMSE with 95% intervals (:class:`ArmFigures`), the lists
published and the clicks credited; the difference b - a with its interval.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from streamer.engine import BatchOutput, Engine, Event
from streamer.evaluation.ab import ArmFigures, Split, differences
from streamer.settings import Settings

log = logging.getLogger(__name__)

ARMS = ("a", "b")
#: Users whose own figures an arm keeps (the intervals' sums keep everyone's).
MAX_USERS = 200_000


class Arms:
    """Arm a's engine and arm b's (``settings`` with ``changes``), stepped together.

    Examples
    --------
    >>> from streamer.events import Click, ItemEvent
    >>> arms = Arms(Settings(n_factors=4, top_k=2), {"knn_last": 5}, share_b=0.5)
    >>> items = [ItemEvent(item=i, ts=0.0, tags=["x"]) for i in "abc"]
    >>> clicks = [Click(user=f"u{n}", item="a", type="click", ts=1.0) for n in range(6)]
    >>> out = arms.process(items + clicks)
    >>> sorted({(r.arm, arms.split(r.user)) for r in out.lists})
    [('a', 'a'), ('b', 'b')]
    >>> out.lists[0].rec_id.startswith(out.lists[0].arm + "/")
    True
    """

    def __init__(
        self,
        settings: Settings,
        changes: Mapping[str, Any],
        share_b: float,
        engine_a: Engine | None = None,
        engine_b: Engine | None = None,
    ) -> None:
        self.changes = dict(changes)
        self.split = Split(share_b)
        self.engines = {
            "a": engine_a or Engine(settings),
            "b": engine_b or Engine(replace(settings, **self.changes)),
        }
        self.figures: dict[str, ArmFigures] = {}
        for arm, engine in self.engines.items():
            engine.recommender.policy.rec_prefix = f"{arm}/"
            # a restored engine brings its figures with it (they are part of its state)
            found = [o for o in engine.observers if isinstance(o, ArmFigures) and o.arm == arm]
            self.figures[arm] = (
                found[0]
                if found
                else ArmFigures(arm, self.split, engine.settings.eval_k, MAX_USERS)
            )
            if not found:
                engine.observers.append(self.figures[arm])
            self.figures[arm].assign = self.split  # the share set now, not the one saved
        self.lists = dict.fromkeys(ARMS, 0)

    def process(
        self, events: Sequence[Event], with_popular: bool = False, with_similar: bool = False
    ) -> BatchOutput:
        """Both engines learn ``events``; each user's list is their arm's (``RecList.arm``);
        the popular and similar lists are arm a's. An event that fails in either engine is
        reported once (arm a's error first)."""
        a = self.engines["a"].process(events, with_popular, with_similar)
        b = self.engines["b"].process(events)
        lists = []
        for arm, out in (("a", a), ("b", b)):
            mine = [replace(r, arm=arm) for r in out.lists if self.split(r.user) == arm]
            self.lists[arm] += len(mine)
            lists += mine
        failed = dict(a.failed)
        for position, error in b.failed:
            log.warning("event %d failed in arm b only: %r", position, error)
            failed.setdefault(position, error)
        return BatchOutput(lists, a.popular, a.similar, sorted(failed.items()))

    def report(self) -> dict[str, Any]:
        """Per arm, over its own users: the prequential figures with their intervals, lists
        published, clicks credited (carrying the arm's ``rec_id``) and stale ones; b - a."""
        arms: dict[str, Any] = {}
        for arm, engine in self.engines.items():
            policy = engine.recommender.policy
            arms[arm] = self.figures[arm].report() | {
                "lists": self.lists[arm],
                "clicks_credited": sum(policy.clicks.values()),
                "stale_clicks": policy.stale,
            }
        return {
            "share_b": self.split.share_b,
            "changes": self.changes,
            "arms": arms,
            "difference_b_minus_a": differences(arms),
        }
