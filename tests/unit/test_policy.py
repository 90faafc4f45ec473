"""The policy that fuses the strategies' lists: its order, its exploration, its kernels."""

import random

import numpy as np


def test_the_policy_keeps_each_strategys_own_order_whatever_it_learned():
    from streamer.policy import Blend

    blend = Blend(["a", "b"], depth=5, exploration=0.0)
    rng = random.Random(0)
    lists = [[(i, 10.0 - i) for i in range(5)], [(10 + i, 5.0 - i) for i in range(5)]]
    for _ in range(300):  # users choose the last items of "a" and of "b"
        blend.fuse("u", "", lists, 5)
        blend.credit("u", rng.choice([3, 4, 14]))
    fused = blend.fuse("v", "", [lists[0], []], 5)
    assert [i for i, _ in fused.items] == [0, 1, 2, 3, 4]
    estimates = blend.estimates(0)
    assert (np.diff(estimates, axis=1) <= 0).all()  # never larger at a deeper rank


def test_a_source_new_to_the_policy_gets_a_slot_until_it_has_proposed_at_enough_positives():
    from streamer.policy import EXPLORE, Blend

    blend = Blend(["a", "b"], depth=3, exploration=0.0)
    a = [(i, 1.0 - i / 10) for i in range(3)]
    for _ in range(150):  # users always choose a's first item; b proposes nothing yet
        blend.fuse("u", "", [a, []], 2)
        blend.credit("u", 0)
    fused = blend.fuse("u", "", [a, [(9, 1.0)]], 2)  # b's first proposal
    assert [i for i, _ in fused.items] == [0, 9] and fused.strategies == ["a", "b"]
    for _ in range(EXPLORE):  # b proposes at every positive, and is never chosen
        blend.fuse("u", "", [a, [(9, 1.0)]], 2)
        blend.credit("u", 0)
    fused = blend.fuse("u", "", [a, [(9, 1.0)]], 2)
    assert [i for i, _ in fused.items] == [0, 1]  # judged now: left out


def test_the_policys_compiled_arithmetic_is_its_formulas_in_numpy():
    """The policy's kernels (``streamer.policy_kernel``) against their docstrings' formulas
    in numpy, on random candidates, estimates and counts."""
    from streamer import policy_kernel as kernel

    rng = np.random.default_rng(9)
    n, depth, candidates = 5, 8, 30
    first, second = (
        np.array(side)
        for side in zip(*[(a, b) for a in range(n) for b in range(a + 1, n)], strict=True)
    )
    proposals = [(s, c) for s in range(n) for c in rng.choice(candidates, depth, replace=False)]
    strategy = np.array([s for s, _ in proposals], np.int8)
    where = np.array([c for _, c in proposals], np.int16)
    rank = np.concatenate([np.arange(depth)] * n).astype(np.int16)
    relative = rng.random(len(proposals)).astype(np.float32)
    p = rng.random((n, depth))
    x = kernel.features(where, strategy, rank, relative, p, depth, candidates, first, second)
    want = np.zeros((candidates, 3 * n + len(first)))
    want[where, strategy] = depth * p[strategy, rank]
    want[where, n + strategy] = 1.0
    want[where, 2 * n + strategy] = relative
    want[:, 3 * n :] = want[:, n + first] * want[:, n + second]
    np.testing.assert_allclose(x, want)

    weights, chosen, lr = rng.normal(size=x.shape[1]), 4, 0.1
    scores = x @ weights
    odds = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    stepped = weights - lr * ((odds - np.eye(candidates)[chosen]) @ x)
    stepped[:n], stepped[2 * n : 3 * n] = (
        np.maximum(stepped[:n], 0),
        np.maximum(stepped[2 * n : 3 * n], 0),
    )
    kernel.softmax_step(x, chosen, weights, lr, n)
    np.testing.assert_allclose(weights, stepped)

    hits, trials = (
        rng.integers(0, 5, (n, depth)).astype(float),
        rng.integers(5, 50, n).astype(float),
    )
    prior, backoff = rng.random((n, depth)), 7.0
    raw = (hits + backoff * prior) / (trials[:, None] + backoff)
    np.testing.assert_allclose(
        kernel.estimates(hits, trials, prior, backoff), np.minimum.accumulate(raw, axis=1)
    )
    rank_prior = rng.random(depth)
    np.testing.assert_allclose(
        kernel.global_prior(hits, trials, rank_prior), (hits + rank_prior) / (trials[:, None] + 1.0)
    )

    items = rng.choice(100, candidates, replace=False)
    all_hits, all_trials = np.zeros((3, n, depth)), np.zeros((3, n))
    item = int(items[where[3]])  # proposed by strategy 0 at rank 3, maybe by others too
    kernel.tally(all_hits, all_trials, 2, items, where, strategy, rank, item)
    for b in (0, 2):  # the global bucket and the user's
        np.testing.assert_array_equal(all_trials[b], np.ones(n))  # every strategy proposed
        expected = np.zeros((n, depth))
        for c in np.flatnonzero(items[where] == item):
            expected[strategy[c], rank[c]] += 1.0
        np.testing.assert_array_equal(all_hits[b], expected)
    assert not all_hits[1].any() and not all_trials[1].any()

    repeated = np.array([5, 9, 5, 7])
    for wanted in (5, 9, 7, 8):  # the first place, as numpy finds it; -1 where absent
        found = np.flatnonzero(repeated == wanted)
        assert kernel.position(repeated, wanted) == (int(found[0]) if len(found) else -1)
