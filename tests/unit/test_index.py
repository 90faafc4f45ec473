"""Approximate search against exact search, on data with a known answer."""

import numpy as np
import pytest

from index import ExactIndex, HNSWIndex, IVFIndex, load_index, make_index


def brute_force(vectors, queries, k, exclude=None):
    scores = queries @ vectors.T
    if exclude is not None:
        for row, skip in enumerate(exclude):
            scores[row, list(skip)] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(3000, 16)).astype(np.float32), rng.normal(size=(50, 16)).astype(
        np.float32
    )


def test_exact_equals_brute_force(data):
    vectors, queries = data
    index = ExactIndex(16)
    index.upsert(np.arange(len(vectors)), vectors)
    exclude = [set(range(q, q + 40)) for q in range(len(queries))]
    got = index.search(queries, 10, exclude=exclude)
    want = brute_force(vectors, queries, 10, exclude)
    assert (got.ids == want).all()
    assert (np.diff(got.scores, axis=1) <= 1e-6).all()


def test_exact_upsert_replaces_and_remove_forgets():
    index = ExactIndex(2)
    index.upsert(np.array([1, 2]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    index.upsert(np.array([1]), np.array([[0.0, 5.0]]))
    assert len(index) == 2
    assert index.search(np.array([[0.0, 1.0]]), 2).ids.tolist() == [[1, 2]]
    index.remove(np.array([1, 99]))
    assert index.search(np.array([[0.0, 1.0]]), 2).ids.tolist() == [[2, -1]]


def test_exact_rewrites_removes_and_adds_in_any_order_like_a_dict(data):
    """Upserts rewrite rows in place and removals move rows: searches still equal brute force
    over what a plain dict of the same writes holds."""
    _, queries = data
    rng = np.random.default_rng(3)
    index, truth = ExactIndex(16), {}
    for step in range(30):
        ids = rng.integers(0, 400, size=50)
        new = rng.normal(size=(50, 16)).astype(np.float32)
        index.upsert(ids, new)
        truth.update(zip(ids.tolist(), new, strict=True))  # last write wins, as in upsert
        if step % 4 == 3:
            gone = rng.integers(0, 400, size=20)
            index.remove(gone)
            for i in gone.tolist():
                truth.pop(i, None)
    keys = np.array(sorted(truth))
    got = index.search(queries, 10)
    want = keys[brute_force(np.stack([truth[i] for i in keys]), queries, 10)]
    assert len(index) == len(truth)
    assert (got.ids == want).all()


def test_exact_rejects_bad_vectors():
    index = ExactIndex(2)
    with pytest.raises(ValueError, match="dimension 3"):
        index.upsert(np.array([1]), np.ones((1, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        index.upsert(np.array([1]), np.array([[np.nan, 1.0]]))


@pytest.mark.parametrize("backend", [HNSWIndex, IVFIndex])
def test_recall_against_exact(data, backend):
    vectors, queries = data
    index = backend(16, background=False, rebuild_min=100)
    index.upsert(np.arange(len(vectors)), vectors)
    assert index.built_size == len(vectors)
    got = index.search(queries, 20).ids
    want = brute_force(vectors, queries, 20)
    recall = np.mean([len(set(g) & set(w)) / 20 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95


@pytest.mark.parametrize("backend", [HNSWIndex, IVFIndex])
def test_fresh_vectors_found_before_the_rebuild(data, backend):
    vectors, queries = data
    index = backend(16, background=False, rebuild_min=100)
    index.upsert(np.arange(len(vectors)), vectors)  # built
    index.rebuild_min = 10_000  # no rebuild from here on
    moved = vectors.copy()
    target = 123
    moved[target] = queries[0] * 10  # now the best answer to query 0
    index.upsert(np.array([target]), moved[target : target + 1])
    assert index.built_size == len(vectors) and len(index) == len(vectors)
    assert index.search(queries[:1], 1).ids[0, 0] == target
    index.remove(np.array([target]))
    assert target not in index.search(queries[:1], 50).ids[0]
    ids = index.search(queries, 20).ids
    assert all(len(set(row)) == len(row) for row in ids)  # no item twice


@pytest.mark.parametrize("backend", [HNSWIndex, IVFIndex])
def test_background_rebuild_swaps(data, backend):
    vectors, _ = data
    index = backend(16, background=True, rebuild_min=500, rebuild_fraction=0.0)
    index.upsert(np.arange(1000), vectors[:1000])
    index.wait()
    assert index.rebuilds >= 1
    index.upsert(np.arange(1000, 1600), vectors[1000:1600])
    index.wait()
    ids = index.search(vectors[1500:1501], 1).ids
    assert len(index) == 1600 and ids[0, 0] == 1500


def test_ivf_is_updated_in_place_and_retrained_when_its_vectors_drift(data):
    """Rewrites go into the live IVF (no side index); once every vector has been rewritten
    since the centroids were fitted, they are fitted again, and recall is back."""
    vectors, queries = data
    rng = np.random.default_rng(1)
    start = rng.normal(size=vectors.shape).astype(np.float32) * 0.01 + 1.0  # one blob
    drifting, stale = (IVFIndex(16, background=False, rebuild_min=100, nprobe=16) for _ in "ab")
    for index in (drifting, stale):
        index.upsert(np.arange(len(start)), start)
    stale.rebuild_min = 10**9  # never retrains again
    recalls = []
    for index in (drifting, stale):
        for part in np.array_split(np.arange(len(vectors)), 10):  # the catalogue moves
            index.upsert(part, vectors[part])
            assert index.built_size == len(vectors)  # in the live index, not beside it
        got = index.search(queries, 20).ids
        want = brute_force(vectors, queries, 20)
        recalls.append(np.mean([len(set(g) & set(w)) / 20 for g, w in zip(got, want, strict=True)]))
    assert drifting.rebuilds > stale.rebuilds
    assert recalls[0] > recalls[1] + 0.05 and recalls[0] > 0.8  # 0.84 vs 0.77 here


def test_factory_and_save_load(tmp_path, data):
    vectors, queries = data
    for backend in ("exact", "ivf", "hnsw"):
        index = make_index(backend, 16)
        index.upsert(np.arange(500), vectors[:500])
        path = tmp_path / f"{backend}.npz"
        index.save(path)
        restored = load_index(path)
        assert restored.kind == backend and len(restored) == 500
        # the same vectors, so the same answers: saving loses nothing
        ids, stored = index.all_items()
        back_ids, back_stored = restored.all_items()
        order, back_order = np.argsort(ids), np.argsort(back_ids)
        np.testing.assert_array_equal(ids[order], back_ids[back_order])
        np.testing.assert_array_equal(stored[order], back_stored[back_order])
        assert (restored.search(queries, 5).ids == index.search(queries, 5).ids).all()


@pytest.mark.parametrize("backend", [ExactIndex, IVFIndex])
def test_excluded_items_crowding_the_top_are_searched_past(data, backend):
    """A user whose history holds their 40 best items still gets the next 10 (re-searched)."""
    vectors, queries = data
    index = backend(16) if backend is ExactIndex else backend(16, background=False, nprobe=256)
    index.upsert(np.arange(len(vectors)), vectors)
    exclude = [set(row.tolist()) for row in brute_force(vectors, queries, 40)]
    exclude[1] = set()  # rows without exclusions in the same call
    got = index.search(queries, 10, exclude=exclude).ids
    want = brute_force(vectors, queries, 10, exclude)
    # every list probed (nprobe >= lists): the approximate backend is exact here too
    assert (got == want).all()


@pytest.mark.parametrize("backend", [HNSWIndex, IVFIndex])
def test_a_stale_copy_in_the_built_index_is_never_returned(data, backend):
    vectors, queries = data
    best = vectors.copy()
    best[5] = queries[0] * 10  # item 5 is query 0's best in the built index
    index = backend(16, background=False, rebuild_min=100)
    index.upsert(np.arange(len(best)), best)
    index.rebuild_min = 10_000
    index.upsert(np.array([5]), -queries[:1] * 10)  # now its worst
    assert 5 not in index.search(queries[:1], 20).ids[0]


@pytest.mark.parametrize("backend", [HNSWIndex, IVFIndex])
def test_an_item_removed_while_a_rebuild_ran_stays_removed(data, backend):
    vectors, queries = data
    index = backend(16, background=False, rebuild_min=100)
    index.upsert(np.arange(len(vectors)), vectors)
    ids, snapshot, seq = index._store.snapshot()  # what a background build starts from
    best = int(index.search(queries[:1], 1).ids[0, 0])
    index.remove(np.array([best]))
    index._build_and_swap(ids, snapshot, seq)  # and it finishes after the removal
    assert best not in index.search(queries[:1], 50).ids[0]
    assert len(index) == len(vectors) - 1


@pytest.mark.parametrize("backend", ["exact", "ivf", "hnsw"])
def test_all_items_are_the_latest_vectors_of_the_live_ids(data, backend):
    vectors, _ = data
    index = make_index(backend, 16)
    index.upsert(np.arange(600), vectors[:600])
    index.upsert(np.arange(0, 600, 2), vectors[1000:1300])  # rewrite the even ids
    index.remove(np.arange(0, 30))
    ids, stored = index.all_items()
    order = np.argsort(ids)
    expected = vectors[:600].copy()
    expected[0:600:2] = vectors[1000:1300]
    np.testing.assert_array_equal(ids[order], np.arange(30, 600))
    np.testing.assert_array_equal(stored[order], expected[30:])


@pytest.mark.parametrize("backend", ["exact", "ivf", "hnsw"])
def test_vectors_of_ids_are_the_stored_ones_and_zeros_for_unknown_ids(data, backend):
    vectors, _ = data
    index = make_index(backend, 16)
    index.upsert(np.arange(600), vectors[:600])
    index.upsert(np.array([5]), vectors[700:701])  # rewritten
    index.remove(np.array([7]))
    got = index.vectors(np.array([5, 7, 3, 9999, 599]))
    np.testing.assert_array_equal(got[0], vectors[700])
    np.testing.assert_array_equal(got[[1, 3]], np.zeros((2, 16), np.float32))
    np.testing.assert_array_equal(got[[2, 4]], vectors[[3, 599]])
    got[2] = 1.0  # a copy: the index is not written through it
    np.testing.assert_array_equal(index.vectors(np.array([3]))[0], vectors[3])


@pytest.mark.parametrize("backend", ["exact", "ivf", "hnsw"])
def test_sparse_ids_among_dense_ones_and_no_negative_ids(data, backend):
    vectors, queries = data
    index = make_index(backend, 16)
    ids = np.concatenate([np.arange(100), [10**12, 5_000]])
    index.upsert(ids, vectors[: len(ids)])
    if backend != "exact":
        index.rebuild()  # the far id in the built index too
        index.wait()
    with pytest.raises(ValueError, match="item ids must be >= 0"):
        index.upsert(np.array([7, -1]), vectors[:2])
    index.upsert(np.array([10**12, 3]), vectors[500:502])  # rewritten, far and near
    index.remove(np.array([0, 5_000]))  # (exact: the rows after them move up)
    got = index.vectors(np.array([10**12, 3, 5_000, -1, 0, 99, 101]))
    np.testing.assert_array_equal(got[:2], vectors[500:502])
    np.testing.assert_array_equal(got[[2, 3, 4, 6]], np.zeros((4, 16), np.float32))
    np.testing.assert_array_equal(got[5], vectors[99])
    expected = np.concatenate([vectors[1:3], vectors[501:502], vectors[4:100]])
    np.testing.assert_array_equal(index.vectors(np.arange(1, 100)), expected)
    live = np.concatenate([np.arange(1, 100), [10**12]])
    truth = live[np.argsort(-(index.vectors(live) @ queries[0]), kind="stable")[:5]]
    assert set(index.search(queries[:1], 5).ids[0].tolist()) <= set(live.tolist())
    if backend == "exact":
        np.testing.assert_array_equal(index.search(queries[:1], 5).ids[0], truth)


def test_exact_index_vectors_follow_any_sequence_of_writes_and_removals():
    """The exact index's lookups (a dense array over small ids, a dict beyond) against a plain
    dict, over random upserts and removals of ids near and far, the catalogue growing and
    shrinking under them."""
    rng = np.random.default_rng(7)
    index, truth = ExactIndex(4), {}
    for _ in range(300):
        n = int(rng.integers(1, 3_000 if rng.random() < 0.1 else 60))  # now and then, many
        near = rng.integers(0, 3 * len(truth) + 3_000, n)
        far = rng.integers(10**6, 10**12, n)
        ids = np.unique(np.where(rng.random(n) < 0.9, near, far))
        if rng.random() < 0.1:  # most of what is there goes
            ids = np.array(sorted(truth)[: int(0.9 * len(truth))], np.int64)
            index.remove(ids)
            for i in ids.tolist():
                del truth[i]
        elif rng.random() < 0.7:
            vectors = rng.normal(size=(len(ids), 4)).astype(np.float32)
            index.upsert(ids, vectors)
            truth.update(zip(ids.tolist(), vectors, strict=True))
        else:
            index.remove(ids)
            for i in ids.tolist():
                truth.pop(i, None)
        some = rng.choice(list(truth) or [0], 20)
        for asked in (ids, some, np.sort(some), np.array([-1, 10**13]), np.arange(5_000)):
            want = [truth.get(i, np.zeros(4, np.float32)) for i in asked.tolist()]
            np.testing.assert_array_equal(index.vectors(asked), np.array(want).reshape(-1, 4))
        assert len(index) == len(truth)
