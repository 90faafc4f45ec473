"""The model identity that makes contextual top-K a FAISS search, and the model's guards."""

import numpy as np
import pytest
from river import facto, optim

from index import ExactIndex
from streamer.features import item_features, user_features
from streamer.model import FastFMClassifier, FastFMRegressor, RecModel
from streamer.model.fast_fm import _NOTHING
from streamer.settings import Settings

GENRES = ["action", "comedy", "drama", "horror"]


def trained_model(seed=0):
    rng = np.random.default_rng(seed)
    model = RecModel(Settings(n_factors=8, seed=seed))
    items = [
        item_features(str(i), [GENRES[i % 4], GENRES[(i * 7) % 4]], f"film {i}") for i in range(60)
    ]
    for _ in range(3000):
        u = int(rng.integers(30))
        ctx = {"device": ["tv", "phone"][u % 2], "hour": str(int(rng.integers(24)))}
        i = int(rng.integers(60))
        kind = ["click", "rating", "skip", "purchase"][int(rng.integers(4))]
        negs = [items[int(j)] for j in rng.integers(60, size=2)]
        model.learn_one(user_features(str(u), ctx), items[i], kind, float(rng.integers(1, 6)), negs)
    return model, items


def test_index_order_equals_predict_order():
    model, items = trained_model()
    index = ExactIndex(model.dim)
    index.upsert(np.arange(len(items)), model.item_vectors(items))
    for user, ctx in [
        ("3", {"device": "phone", "hour": "9"}),
        ("8", {"device": "tv", "hour": "22"}),
    ]:
        ux = user_features(user, ctx)
        found = index.search(model.query_vectors([ux]), k=len(items))
        predicted = np.array([model.score(ux, ix) for ix in items])
        # the same order ...
        assert found.ids[0].tolist() == np.argsort(-predicted, kind="stable").tolist()
        # ... because the scores differ by a constant of (user, context) only
        offsets = predicted[found.ids[0]] - found.scores[0]
        assert np.ptp(offsets) < 1e-4
        # and River's own predict_proba_one is a monotone function of it
        proba = [model.ranker.predict_proba_one(ux | ix)[True] for ix in items]
        assert np.argmax(proba) == found.ids[0, 0]


def test_fast_fm_matches_river():
    """The compiled step is River's, for both losses, with L2 and sample weights."""
    x = {"user=a": 1.0, "item=b": 1.0, "tag=c": 0.7, "hour=3": 1.0}
    params = {"seed": 3, "l2_weight": 0.01, "l2_latent": 0.02}
    slow, fast = facto.FMClassifier(**params), FastFMClassifier(**params)
    for n, y in enumerate([True, False, True, True, False] * 10):
        slow.learn_one(x, y, w=1.0 + n % 3)
        fast.learn_one(x, y, w=1.0 + n % 3)
    assert abs(slow.predict_proba_one(x)[True] - fast.predict_proba_one(x)[True]) < 1e-9
    slow_r, fast_r = facto.FMRegressor(**params), FastFMRegressor(**params)
    for y in [4.0, 1.0, 5.0, 3.0] * 10:
        slow_r.learn_one(x, y)
        fast_r.learn_one(x, y)
    assert abs(slow_r.predict_one(x) - fast_r.predict_one(x)) < 1e-9
    assert fast_r.plain and fast.plain  # the compiled path ran, not River's fallback
    adaptive = FastFMRegressor(seed=3, latent_optimizer=optim.Adam())
    assert not adaptive.plain  # River's own step for it; the compiled one refuses it
    with pytest.raises(ValueError, match="plain SGD"):
        adaptive.learn_events(_NOTHING, _NOTHING, [0], [1.0], [1.0], [0, 1])


def test_cold_start_item_is_placed_by_its_tags():
    model = RecModel(Settings(n_factors=8, seed=1))
    rng = np.random.default_rng(1)
    horror = [item_features(f"h{i}", ["horror"]) for i in range(10)]
    comedy = [item_features(f"c{i}", ["comedy"]) for i in range(10)]
    for _ in range(4000):
        fan = rng.integers(2)
        user = user_features(f"{'hf' if fan else 'cf'}{rng.integers(10)}", {})
        liked, other = (horror, comedy) if fan else (comedy, horror)
        model.learn_one(user, liked[rng.integers(10)], "click", None, [other[rng.integers(10)]])
    new_horror = item_features("brand-new", ["horror"])  # never interacted with
    q = model.query_vectors([user_features("hf1", {}), user_features("cf1", {})])
    e = model.item_vectors([new_horror])[0]
    assert q[0] @ e > q[1] @ e


@pytest.mark.parametrize("max_norm", [0.0, 10.0])
def test_rating_prediction_is_clipped_and_finite(max_norm):
    settings = Settings(n_factors=4, rating_lr=10.0, rating_side_weight=1.0, max_norm=max_norm)
    model = RecModel(settings)  # diverges without the bound
    u, i = {"user=1": 1.0}, {"item=1": 1.0}
    for value in [5.0, 0.5] * 200:
        model.learn_one(u, i, "rating", value, [])
    y = model.predict_rating(u, i)
    if max_norm:  # the bound holds the rows back before anything overflows
        assert model.resets == 0 and model.clamped > 0
    else:
        assert model.resets > 0  # the last guard fired
    assert np.isfinite(y) and 0.5 <= y <= 5.0
    assert np.isfinite(model.item_vectors([i])).all()
    assert np.isfinite(model.query_vectors([u])).all()


def test_unseen_features_do_not_create_parameters():
    model = RecModel(Settings(n_factors=4))
    model.query_vectors([{"user=ghost": 1.0}])
    model.item_vectors([{"item=ghost": 1.0}])
    assert not model.knows("user=ghost") and not model.knows("item=ghost")


def test_learn_many_equals_summed_gradients_of_learn_one():
    """One step on samples together = the sum of their single steps taken at the same point."""
    import copy

    xs = [{"user=a": 1.0, "item=b": 1.0, "tag=c": 0.7}, {"user=a": 1.0, "item=d": 1.0}]
    base = FastFMClassifier(seed=4, n_factors=3)
    for _ in range(5):
        base.learn_numeric(xs[0], True)
    together = copy.deepcopy(base)
    together.learn_many(xs, [True, False], [1.0, 1.0])
    alone = [copy.deepcopy(base) for _ in xs]
    for model, x, y in zip(alone, xs, [True, False], strict=True):
        model.learn_numeric(x, y)
    for feature in ("user=a", "item=b", "item=d", "tag=c"):
        start = base.latents[feature]
        summed = sum(m.latents[feature] - start for m in alone)
        assert np.allclose(together.latents[feature] - start, summed)
        step = sum(m.weights[feature] - base.weights[feature] for m in alone)
        assert np.isclose(together.weights[feature] - base.weights[feature], step)


def test_a_users_events_in_one_batch_are_learned_in_order():
    """Rounds: one batch with a user's three events = those events learned one by one."""
    import copy

    from streamer.model.recmodel import Interaction

    items = [item_features(f"m{i}", ["drama"]) for i in range(3)]
    u = user_features("7", {"device": "tv"})
    batch = [
        Interaction(u, items[i], "rating", float(2 + i), [items[(i + 1) % 3]]) for i in range(3)
    ]
    together, alone = RecModel(Settings(n_factors=4)), RecModel(Settings(n_factors=4))
    alone = copy.deepcopy(together)
    predicted = together.learn_batch(batch)
    one_by_one = [alone.learn_one(*event) for event in batch]
    assert np.allclose(predicted, one_by_one)
    for name in ("user=7", "device=tv", "item=m1", "tag=drama"):
        assert np.allclose(together.ranker.latents[name], alone.ranker.latents[name])
        assert np.isclose(together.rater.weights[name], alone.rater.weights[name])


def test_a_batch_of_many_users_is_learned_event_by_event():
    """Fifty users' clicks on one item in one batch: the features they share (the item, the
    context) move exactly as fifty learn_one calls in order would move them."""
    import copy

    from streamer.model.recmodel import Interaction

    start = RecModel(Settings(n_factors=4, negatives=0))
    item = item_features("m", ["drama"])
    negative = item_features("n", ["comedy"])
    for n in range(50):  # every row exists (new rows draw from one random stream)
        start.learn_one(user_features(str(n), {"device": "tv"}), item, "click", None, [negative])
    users = [user_features(str(n), {"device": "tv"}) for n in range(50)]
    batch = [Interaction(u, item, "rating", 1.0 + n % 5, [negative]) for n, u in enumerate(users)]
    together, alone = copy.deepcopy(start), copy.deepcopy(start)
    predicted = together.learn_batch(batch)
    one_by_one = [alone.learn_one(*event) for event in batch]
    assert np.allclose(predicted, one_by_one)
    for name in ("device=tv", "item=m", "tag=drama", "item=n", "user=3", "user=49"):
        assert np.allclose(together.ranker.latents[name], alone.ranker.latents[name])
        assert np.isclose(together.rater.weights[name], alone.rater.weights[name])
    assert np.isclose(together.ranker.intercept, alone.ranker.intercept)
    moved = together.ranker.latents["device=tv"] - start.ranker.latents["device=tv"]
    assert np.abs(moved).max() > 0  # and it did learn


def test_river_paths_outside_plain_sgd_match_river():
    """Sample normalisation (not the vectorised step) goes through River's own learn_one."""
    x = {"user=a": 1.0, "item=b": 2.0, "tag=c": 0.7}
    slow = facto.FMRegressor(seed=5, sample_normalization=True)
    fast = FastFMRegressor(seed=5, sample_normalization=True)
    for y in [4.0, 2.0, 5.0] * 5:
        slow.learn_one(x, y)
        fast.learn_numeric(x, y)
    assert abs(slow.predict_one(x) - fast.predict_one(x)) < 1e-9


def test_the_compiled_step_runs_where_numba_has_nowhere_to_cache_it():
    """A read-only install run by a user without a home: numba cannot cache (it raises for
    code without a writable cache location, like code with no source file); compile anyway."""
    import numba

    from streamer.jit import compiled

    namespace: dict = {}
    exec("def add_one(x):\n    return x + 1\n", namespace)  # no file: no cache locator
    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(namespace["add_one"])
    assert compiled(namespace["add_one"])(1) == 2


def test_part_store_keeps_every_slots_last_write():
    """Random writes, rewrites of other lengths and the compactions they cause, against a dict."""
    from streamer.model.part_store import PartStore

    rng = np.random.default_rng(3)
    store, expected = PartStore(capacity=8), {}
    for step in range(3000):
        slot = int(rng.integers(len(expected) + 1))
        rows, xs = rng.integers(0, 100, rng.integers(0, 6)), rng.random(6)
        store.put(slot, rows, xs[: len(rows)])
        expected[slot] = (rows.tolist(), xs[: len(rows)].tolist())
        if step % 50 == 0:
            parts = store.parts()
            for s, (r, x) in expected.items():
                assert parts.rows_of(s).tolist() == r
                assert parts.xs[parts.starts[s] : parts.stops[s]].tolist() == x
    assert len(store) == len(expected)
    assert store.garbage < 3000  # compacted on the way, not grown without end


def test_an_item_whose_metadata_changed_is_learned_with_its_new_features():
    m = RecModel(Settings(n_factors=4, negatives=0))
    u = user_features("1", {})
    m.learn_one(u, item_features("m", ["drama"]), "click", None, [])
    assert not m.knows("tag=noir")
    m.learn_one(u, item_features("m", ["drama", "noir"]), "click", None, [])
    assert m.knows("tag=noir") and m.knows("tag=drama")
    vector = m.item_vectors([item_features("m", ["noir"])])  # the newest features count
    assert np.allclose(vector[0, 1:], m.ranker.latents["item=m"] + m.ranker.latents["tag=noir"])


def _forward_over_learned(m, sides):
    """The ranker's own (numpy) forward pass over ``sides``, features never seen or never
    learned masked out: the reference for the compiled sums."""
    from streamer.model.fast_fm import Flat

    flat = Flat.of([(m.ranker.table.find(list(x)), np.array(list(x.values()))) for x in sides])
    found = flat.rows >= 0
    flat.rows = np.where(found, flat.rows, 0)
    flat.xs = np.where(found & m.ranker.table.learned[flat.rows], flat.xs, 0.0)
    raw, totals, *_ = m.ranker.forward(flat)
    return raw, totals


def test_item_vectors_are_the_rankers_own_sums_over_learned_features():
    """The compiled item vectors equal the ranker's forward pass over the same sides, with
    features not learned yet left out (tag=new is encoded but never learned); so do the
    query vectors and scores, whose features may never have been seen (device=radio)."""
    m = RecModel(Settings(n_factors=4, negatives=0))
    items = [item_features(f"m{i}", ["drama", "noir"][: 1 + i % 2]) for i in range(6)]
    for n in range(40):
        u = user_features(str(n % 7), {"device": "tv"})
        m.learn_one(u, items[n % 6], "rating", float(1 + n % 5), [items[(n + 3) % 6]])
    users = [user_features("3", {"device": "tv"}), user_features("3", {"device": "radio"})]
    raw, total = _forward_over_learned(m, users)
    assert np.allclose(m.query_vectors(users)[:, 1:], total, atol=1e-6)
    raw, _ = _forward_over_learned(m, [users[1] | items[2]])
    assert np.isclose(m.score(users[1], items[2]), raw[0])
    fresh = item_features("m9", ["drama", "new"])
    vectors = m.item_vectors([*items, fresh])
    raw, total = _forward_over_learned(m, [*items, fresh])
    assert not m.knows("tag=new")
    assert np.allclose(vectors[:, 0], raw - m.ranker.intercept, atol=1e-6)
    assert np.allclose(vectors[:, 1:], total, atol=1e-6)


def test_warm_up_compiles_what_the_model_calls():
    """Nothing is compiled in the first batch: the warm-ups cover the calls' argument types.
    In a fresh interpreter, as other tests here compile the kernels for their own calls."""
    import subprocess
    import sys

    script = """
from streamer.features import item_features, user_features
from streamer.model import RecModel, sgd_kernel, side_kernel
from streamer.settings import Settings
m = RecModel(Settings(n_factors=4))
kernels = (sgd_kernel.sgd_events, side_kernel.side_sums)
before = [len(k.signatures) for k in kernels]
u, items = user_features("1", {"device": "tv"}), [item_features(i, ["x"]) for i in "ab"]
m.learn_one(u, items[0], "rating", 4.0, [items[1]])
m.item_vectors(items)
m.query_vectors([u, user_features("2", {"device": "radio"})])
print(before, [len(k.signatures) for k in kernels])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[1,", "1]", "[1,", "1]"]


def test_frequent_context_features_stay_bounded_at_a_rate_that_diverged():
    """Context values seen on every event take a step on every event; at 3 x the default rate
    the latents overflowed float32 within 4,000 clicks before the max-norm bound."""
    import warnings

    from streamer.engine import Engine
    from streamer.events import Click

    rng = np.random.default_rng(0)
    engine = Engine(Settings(n_factors=10, seed=1, top_k=10, ranking_lr=0.3))
    batch = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        for n in range(6000):
            context = {
                "device": "mobile",
                "platform": "aa",
                "city": str(n % 3),
                "hour": str(n // 400 % 24),
                "weekday": str(n // 2000 % 7),
            }
            item = int(rng.zipf(1.2)) % 3000
            batch.append(
                Click(
                    user=str(rng.integers(2000)),
                    item=str(item),
                    type="click",
                    ts=float(n),
                    context=context,
                )
            )
            if len(batch) == 100:
                engine.process(batch)
                batch = []
    model = engine.model
    table = model.ranker.table
    rows = len(table.ids)
    assert np.isfinite(table.latents[:rows]).all() and np.isfinite(table.weights[:rows]).all()
    assert np.linalg.norm(table.latents[:rows], axis=1).max() <= 10.0 + 1e-9
    assert np.abs(table.weights[:rows]).max() <= 10.0
    assert model.resets == 0 and model.nonfinite == 0
    assert model.clamped > 0  # the bound acted, and was counted


def test_negatives_follow_recent_popularity_and_are_never_an_excluded_item():
    """The sampler's draws against their definition: a share ``uniform`` from the catalogue,
    the rest from the ring of the last ``window`` positives (so in proportion to recent
    counts); never the chosen item, one of the user's, or an expired one."""
    from collections import Counter, deque

    from streamer.model.sampler import NegativeSampler

    rng = np.random.default_rng(3)
    sampler = NegativeSampler(window=500, seed=1, uniform=0.25)
    ring: deque[int] = deque(maxlen=500)
    for item in (rng.zipf(1.4, 3_000) % 200).tolist():
        sampler.add(item)
        ring.append(item)
    drawn: Counter = Counter()
    for _ in range(4_000):
        exclude = set(rng.choice(200, 30).tolist())
        chosen, gone = int(rng.integers(0, 200)), {int(rng.integers(0, 200))}
        got = sampler.sample(8, exclude, n_items=200, chosen=chosen, gone=gone)
        assert len(got) == 8 and not set(got) & (exclude | gone | {chosen})
        drawn.update(got)
    recent = Counter(ring)
    total = sum(drawn.values())
    for item in [*(i for i, _ in recent.most_common(5)), *range(190, 200)]:
        expected = 0.75 * recent[item] / len(ring) + 0.25 / 200  # exclusions hit all alike
        assert abs(drawn[item] / total - expected) < 0.1 * expected + 0.001, item


def test_negatives_draw_the_random_numbers_in_order_across_blocks():
    """The sampler's uniform numbers, drawn by the block and topped up before a call that could
    run out, come in the order one stream of them would give: the same draws as a sampler that
    takes each pair from one long sequence of the same generator."""
    from streamer.model.sampler import _BLOCK, NegativeSampler

    sampler = NegativeSampler(window=50, seed=7, uniform=0.5)
    for item in range(40):
        sampler.add(item % 13)
    generator = np.random.default_rng(7)
    numbers: list[float] = []  # in the order they are taken: each block from its end
    for _ in range(6):
        numbers += generator.random(_BLOCK).tolist()[::-1]
    ring, taken = sampler._ring[: sampler._size].tolist(), 0
    rng = np.random.default_rng(11)
    for _ in range(2_000):
        exclude = set(rng.choice(60, 10).tolist())
        chosen, n = int(rng.integers(0, 60)), int(rng.integers(1, 9))
        want: list[int] = []
        for _ in range(4 * n + 4):
            pick, position = numbers[taken], numbers[taken + 1]
            taken += 2
            item = int(position * 60) if pick < 0.5 else ring[int(position * len(ring))]
            if item != chosen and item not in exclude:
                want.append(item)
                if len(want) == n:
                    break
        assert sampler.sample(n, exclude, n_items=60, chosen=chosen) == want
    assert taken > 2 * _BLOCK  # the blocks were topped up on the way
