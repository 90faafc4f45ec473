"""Popularity overall and per context: its leaders, the exact top of every bucket."""

import numpy as np

from streamer.popularity import Popularity


def test_popularity_leaders_are_the_exact_top_of_every_bucket():
    pop: Popularity[int] = Popularity(half_life=700, leaders=8)
    rng = np.random.default_rng(1)
    for item in rng.zipf(1.3, 3000).tolist():
        pop.add(item % 50, f"b{item % 3}")
        for key in ("", "b0", "b1"):
            counts = pop.counts(key) or pop.counts("")  # a bucket not seen yet: everyone's
            expected = sorted(counts.values(), reverse=True)[:5]
            assert [c for _, c in pop.top(key, 5)] == expected
    counts = pop.counts("")
    exclude = set(sorted(counts, key=counts.get, reverse=True)[:10])
    deep = pop.top("", 3, exclude=exclude)  # past the leaders: the full count
    assert [c for _, c in deep] == sorted(
        (c for i, c in counts.items() if i not in exclude), reverse=True
    )[:3]


def test_popularity_leaders_break_ties_by_arrival_as_a_climb_one_by_one_does():
    """Among equal counts, the leaders keep the order a leader climbing past strictly smaller
    counts one place at a time gives (what the popular lists serve): against that reference,
    with many ties (whole counts) and a bound on the leaders."""
    pop: Popularity[int] = Popularity(half_life=10**9, leaders=12)
    counts: dict[int, float] = {}
    leaders: list[int] = []
    rng = np.random.default_rng(5)
    for item in (rng.zipf(1.2, 4_000) % 40).tolist():
        pop.add(item, "")
        counts[item] = counts.get(item, 0.0) + 1.0
        if item not in leaders:
            if len(leaders) >= 12 and counts[item] <= counts[leaders[-1]]:
                continue
            leaders.append(item)
        at = leaders.index(item)
        while at and counts[leaders[at - 1]] < counts[item]:
            leaders[at - 1], leaders[at] = leaders[at], leaders[at - 1]
            at -= 1
        del leaders[12:]
        assert [i for i, _ in pop.top("", 12)] == leaders


def test_popularity_leaders_stay_the_exact_top_when_items_are_dropped():
    """Compactions (items dropped, the others renumbered in order) between the adds: the
    leaders are topped up from the counts, and new items do not pass larger counts."""
    pop: Popularity[int] = Popularity(half_life=500, leaders=6)
    rng = np.random.default_rng(4)
    for step in range(3_000):
        item = int(rng.zipf(1.3)) % 60
        pop.add(item, f"b{item % 3}")
        if step % 300 == 299:
            dropped = rng.random(60) < 0.3
            pop.renumber(np.where(dropped, -1, np.cumsum(~dropped) - 1))
        for key in ("", "b0", "b1", "b2"):
            counts = pop.counts(key) or pop.counts("")
            expected = sorted(counts.values(), reverse=True)[:5]
            assert [c for _, c in pop.top(key, 5)] == expected
            # past the leaders: a user's items and expired ones left out
            exclude, gone = set(rng.choice(60, 8).tolist()), set(rng.choice(60, 20).tolist())
            left = [c for i, c in counts.items() if i not in exclude and i not in gone]
            top = pop.top(key, 5, exclude, gone)
            assert [c for _, c in top] == sorted(left, reverse=True)[:5]
            assert not {i for i, _ in top} & (exclude | gone)
