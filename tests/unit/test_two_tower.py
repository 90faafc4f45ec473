"""The two-tower model: its written-out backward pass against finite differences, and that it
learns who likes what."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.model.two_tower import TwoTower

USERS = [{"user=a": 1.0, "device=tv": 1.0}, {"user=b": 1.0}, {"user=c": 1.0, "prev=x": 0.7}]
ITEMS = [{"item=x": 1.0, "tag=1": 0.7}, {"item=y": 1.0}, {"item=z": 1.0, "tag=1": 0.7}]


def _loss(model: TwoTower, log_q: np.ndarray | None = None) -> float:
    return model.loss_and_grads(USERS, ITEMS, log_q)[0]


@pytest.mark.parametrize("log_q", [None, np.log([0.6, 0.3, 0.1])], ids=["plain", "logQ"])
def test_the_backward_pass_matches_finite_differences(log_q) -> None:
    model = TwoTower(dim=5, hidden=7, seed=3)
    _, grads = model.loss_and_grads(USERS, ITEMS, log_q)  # creates the rows, then freeze them
    for tower in (model.users, model.items):  # a non-zero second layer, so all of it counts
        tower.w2 += np.random.default_rng(4).normal(0, 0.3, tower.w2.shape)
    _, grads = model.loss_and_grads(USERS, ITEMS, log_q)
    eps = 1e-6
    for tower, grad in zip((model.users, model.items), grads, strict=True):
        for name in ("w1", "b1", "w2"):
            param = getattr(tower, name)
            numeric = np.zeros_like(param)
            for index in np.ndindex(param.shape):
                keep = param[index]
                param[index] = keep + eps
                up = _loss(model, log_q)
                param[index] = keep - eps
                down = _loss(model, log_q)
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
                up = _loss(model, log_q)
                tower.embedding[row, col] = keep - eps
                down = _loss(model, log_q)
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


def test_the_sampling_correction_ranks_the_favourite_first() -> None:
    """Users of taste 0 choose item 0 six times in ten, items 2 and 4 twice each; taste 1 the
    odd items alike. In-batch negatives are drawn by popularity, so uncorrected the model
    learns ``log p(i | u) - log q(i)``, equal for 0, 2 and 4 (0.6 / 0.3 = 0.2 / 0.1); with the
    log q correction (Yi et al. 2019) it learns ``log p(i | u)``: item 0 first."""
    rng = np.random.default_rng(1)
    choices = np.array([0.6, 0.2, 0.2])
    q = np.array([0.3, 0.3, 0.1, 0.1, 0.1, 0.1])  # each item's share of all positives

    def favourite_first(correct: bool) -> float:
        model = TwoTower(dim=8, hidden=16, lr=0.05, seed=0)
        for _ in range(400):
            users = rng.integers(40, size=32)
            items = 2 * rng.choice(3, size=32, p=choices) + users % 2
            log_q = np.log(q[items]) if correct else None
            model.step(
                [{f"user={u}": 1.0} for u in users], [{f"item={i}": 1.0} for i in items], log_q
            )
        zu = model.users.forward([{f"user={u}": 1.0} for u in range(40)])
        zi = model.items.forward([{f"item={i}": 1.0} for i in range(6)])
        return float(np.mean(np.argmax(zu @ zi.T, axis=1) == np.arange(40) % 2))

    assert favourite_first(correct=True) > 0.9
    assert favourite_first(correct=False) < 0.7
