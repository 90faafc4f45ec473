"""The two-tower model: its written-out backward pass against finite differences, and that it
learns who likes what."""

from __future__ import annotations

import numpy as np

from streamer.model.two_tower import TwoTower

USERS = [{"user=a": 1.0, "device=tv": 1.0}, {"user=b": 1.0}, {"user=c": 1.0, "prev=x": 0.7}]
ITEMS = [{"item=x": 1.0, "tag=1": 0.7}, {"item=y": 1.0}, {"item=z": 1.0, "tag=1": 0.7}]


def _loss(model: TwoTower) -> float:
    return model.loss_and_grads(USERS, ITEMS)[0]


def test_the_backward_pass_matches_finite_differences() -> None:
    model = TwoTower(dim=5, hidden=7, seed=3)
    _, grads = model.loss_and_grads(USERS, ITEMS)  # creates the rows, then freeze them
    for tower in (model.users, model.items):  # a non-zero second layer, so all of it counts
        tower.w2 += np.random.default_rng(4).normal(0, 0.3, tower.w2.shape)
    _, grads = model.loss_and_grads(USERS, ITEMS)
    eps = 1e-6
    for tower, grad in zip((model.users, model.items), grads, strict=True):
        for name in ("w1", "b1", "w2"):
            param = getattr(tower, name)
            numeric = np.zeros_like(param)
            for index in np.ndindex(param.shape):
                keep = param[index]
                param[index] = keep + eps
                up = _loss(model)
                param[index] = keep - eps
                down = _loss(model)
                param[index] = keep
                numeric[index] = (up - down) / (2 * eps)
            np.testing.assert_allclose(grad[name], numeric, rtol=1e-4, atol=1e-7)
        rows, row_grads = grad["embedding"]
        total = np.zeros_like(tower.embedding)
        np.add.at(total, rows, row_grads)
        for row in np.unique(rows):
            for col in range(tower.dim):
                keep = tower.embedding[row, col]
                tower.embedding[row, col] = keep + eps
                up = _loss(model)
                tower.embedding[row, col] = keep - eps
                down = _loss(model)
                tower.embedding[row, col] = keep
                assert abs(total[row, col] - (up - down) / (2 * eps)) < 1e-6


def test_it_learns_two_tastes_from_micro_batches() -> None:
    rng = np.random.default_rng(0)
    model = TwoTower(dim=8, hidden=16, lr=0.1, seed=0)
    losses = []
    for _ in range(300):  # even users like even items
        users = rng.integers(40, size=16)
        items = 2 * rng.integers(10, size=16) + users % 2
        bags = [{f"user={u}": 1.0} for u in users], [{f"item={i}": 1.0} for i in items]
        losses.append(model.step(*bags))
    # from ln 16 (no idea) towards ln 8 (the right half of the batch, nothing more to know)
    assert losses[0] > np.log(16) - 0.05 and np.mean(losses[-20:]) < np.log(8) + 0.15
    zu = model.users.forward([{f"user={u}": 1.0} for u in range(40)])
    zi = model.items.forward([{f"item={i}": 1.0} for i in range(20)])
    top = np.argmax(zu @ zi.T, axis=1)
    assert np.mean(top % 2 == np.arange(40) % 2) > 0.9
